"""Results on disk, written as the study goes, so a rerun resumes.

A run directory describes itself: a report renders from it alone, on any machine::

    config.yaml          the resolved study config
    graph.json           the DAG: node names, cardinalities, parents
    truth.json           what the truth of an episode is, the CPT prior, the distance of real CPTs from it
    estimators.json      per estimator: kind, class, label, tags, settings (get_params), subset, mirrors
    cells/               one gzipped CSV per finished cell (estimator, N): its per-episode rows
    results.csv          tidy summary: graph, seed, estimator, context_len, node, metric, mean, sem, n
    episodes.csv.gz      every per-episode row of the study (written at the end)
    extras/              history_<estimator>.csv: training curves of estimators tagged has_history
    meta.json            package versions, code version, each estimator's cell inputs, device, wall times
    report.pdf           written by the report command (python -m bncompare.reports.report <dir>)

Metrics (``node`` is a node name or ``all``, the mean over nodes):

    cond_tv, cond_kl            error of the predicted conditional at the query's parents (KL in nats, inf kept)
    cond_kl_inf_frac            share of queries with infinite KL
    unseen_frac                 share of queries whose parent configuration is absent from the context
    joint_tv, joint_kl          exact distance of the implied joint (networks up to fidelity.max_exact_states)
    mc_pair_tv, mc_loglik_gap,  Monte Carlo fidelity of generated samples (larger networks)
      mc_impossible_frac
    <metric>_excess             paired difference to the reference estimator, same episodes (cond_tv: the
                                tv_reference, the TV optimum; the rest: the reference, the KL optimum)
    <metric>_vs_mirror          paired difference to the estimator it ``mirrors``, same episodes (how an
                                estimator run on a subset of episodes compares)
    agree_tv, agree_max_abs     agreement with the estimator it ``mirrors`` (same episodes)
    fit_/predict_/seconds_per_context   wall-clock cost
    attn_match, attn_other, attn_sink, attn_self, attn_null, attn_chance
                                attention shares of transformer estimators; node = "L<layer>.H<head>"

A cell file is named ``<estimator>__N<len>__<key>.csv.gz``; ``key`` hashes
everything that determines the cell's numbers (:func:`cell_inputs`): the data
settings, the built estimator's effective parameters and its mirror's, and the
code version (package version + a hash of the source that computes the numbers).
``meta.json`` keeps these inputs per estimator, so a rerun that finds them changed
(an upgrade, a new default) logs what changed before computing the cells again.
A cell is written to a temporary file and renamed, so a killed run leaves either
a whole cell or none; a rerun with the same settings skips the cells it finds, and
a rerun with changed settings recomputes only the cells whose key changed (stale
files are ignored, never mixed in). A cell file that cannot be read back whole
(empty, truncated, garbage) is named in the log, removed and computed again; a
damaged ``meta.json`` or training history is rewritten. Only one run works in a
folder at a time (:func:`bncompare.files.lock_dir`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from bncompare.files import atomic_write, atomic_write_text
from bncompare.metrics.summary import CELL, RESULT_COLUMNS
from bncompare.studies.spec import EstimatorSpec, StudySpec

CELL_FORMAT = 4  # the layout of a cell file and the meaning of its metrics
CELL_COLUMNS = ["episode", "node", "metric", "value"]
EPISODE_COLUMNS = ["graph", "seed", "estimator", "context_len", "episode", "node", "metric", "value"]


def cell_inputs(spec: StudySpec, espec: EstimatorSpec, params: dict, mirror: EstimatorSpec | None = None,
                mirror_params: dict | None = None, source: str | None = None, code: dict | None = None) -> dict:
    """Everything that determines a cell's numbers, as plain data (what its key hashes, and what meta.json keeps).

    ``params``: the BUILT estimator's effective settings (``get_params()``, defaults included), so a changed
    default changes the key; ``code``: :func:`bncompare.codeversion.code_version`; ``source``: a hash of the
    network file the truth comes from (``graph=file``), so an edited file is new.
    """
    entry = {k: v for k, v in espec.to_dict().items() if k != "params"}
    payload = {"format": CELL_FORMAT, "data": spec.data_dict(), "estimator": dict(entry, params=params),
               "mirror": dict(mirror.to_dict(), params=mirror_params) if mirror else None, "code": code}
    if source is not None:
        payload["source"] = source
    return json.loads(json.dumps(payload, sort_keys=True, default=str))


def cell_key(inputs: dict) -> str:
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The leaves that differ between two nested dicts, as 'path: old -> new' (what the log says about a rerun)."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, path = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


log = logging.getLogger(__name__)


class CellStore:
    """The finished cells of a run directory. The caller holds the folder's lock, so leftover
    temporary files are a killed run's and can go."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir) / "cells"
        self.dir.mkdir(parents=True, exist_ok=True)
        for junk in self.dir.glob("*.tmp"):  # a cell killed while being written
            junk.unlink(missing_ok=True)

    def path(self, estimator: str, context_len: int, key: str) -> Path:
        return self.dir / f"{estimator}__N{context_len}__{key}.csv.gz"

    def has(self, estimator: str, context_len: int, key: str) -> bool:
        """True when the cell's file is there AND reads back whole; a damaged file is logged and removed."""
        path = self.path(estimator, context_len, key)
        if not path.is_file():
            return False
        try:
            self.read(estimator, context_len, key)
            return True
        except Exception as e:  # noqa: BLE001  any failure to read back means: compute it again
            log.warning("damaged cell file %s (%s): computing it again", path, " ".join(str(e).split())[:200])
            path.unlink(missing_ok=True)
            return False

    def write(self, estimator: str, context_len: int, key: str, frame: pd.DataFrame) -> None:
        atomic_write(self.path(estimator, context_len, key),
                     lambda tmp: frame.to_csv(tmp, index=False, compression="gzip"))

    def read(self, estimator: str, context_len: int, key: str) -> pd.DataFrame:
        frame = pd.read_csv(self.path(estimator, context_len, key), keep_default_na=False, na_values=[""],
                            dtype={"node": str, "metric": str})
        if list(frame.columns) != CELL_COLUMNS or frame.empty or frame["value"].dtype.kind not in "fi":
            raise ValueError(f"expected columns {CELL_COLUMNS} with numeric values, got {list(frame.columns)}")
        return frame

    def stale(self, keep: set[Path]) -> list[Path]:
        return [p for p in self.dir.glob("*.csv.gz") if p not in keep]


def write_results(out_dir: Path, summaries: list[pd.DataFrame]) -> Path:
    path = Path(out_dir) / "results.csv"
    frame = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=RESULT_COLUMNS)
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def write_episodes(out_dir: Path, cells: list[tuple[str, int, pd.DataFrame]], graph: str, seed: int) -> Path:
    parts = []
    for estimator, context_len, frame in cells:
        f = frame[frame["episode"] != CELL].copy()  # one row per episode; cell statistics are in results.csv
        f.insert(0, "context_len", context_len)
        f.insert(0, "estimator", estimator)
        f.insert(0, "seed", seed)
        f.insert(0, "graph", graph)
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EPISODE_COLUMNS)
    return atomic_write(Path(out_dir) / "episodes.csv.gz",
                        lambda tmp: frame[EPISODE_COLUMNS].to_csv(tmp, index=False, compression="gzip"))


def write_json(out_dir: Path, name: str, obj) -> Path:
    """``obj`` as ``<out_dir>/<name>``; values JSON cannot hold (a torch dtype, a dataclass) become text."""
    return atomic_write_text(Path(out_dir) / name, json.dumps(obj, indent=2, default=str))


def read_json(out_dir: Path, name: str) -> dict:
    """``<out_dir>/<name>`` as a dict; a missing or damaged file (logged) reads as {} and is rewritten later."""
    path = Path(out_dir) / name
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        value = e
    if not isinstance(value, dict):
        log.warning("damaged %s (%s): writing it again", path, " ".join(str(value).split())[:200])
        return {}
    return value


def history_damaged(out_dir: Path, name: str) -> bool:
    """Whether ``extras/history_<name>.csv`` is there but does not read as a table (logged)."""
    path = Path(out_dir) / "extras" / f"history_{name}.csv"
    if not path.is_file():
        return False
    try:
        if "step" in pd.read_csv(path).columns:  # one row per training step
            return False
    except Exception:  # noqa: BLE001, S110  empty, binary, ragged: all mean "write it again"
        pass
    log.warning("damaged training history %s: writing it again", path)
    return True


def write_history(out_dir: Path, name: str, history: list[dict]) -> Path:
    (Path(out_dir) / "extras").mkdir(exist_ok=True)
    text = pd.DataFrame(history).to_csv(index=False)
    return atomic_write_text(Path(out_dir) / "extras" / f"history_{name}.csv", text)
