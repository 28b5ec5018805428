"""What a study writes into its run directory (the layout: :mod:`bncompare.rundir`), written as the study goes,
so a rerun resumes.

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

from bncompare import rundir
from bncompare.metrics.summary import CELL
from bncompare.studies.spec import EstimatorSpec, StudySpec

CELL_FORMAT = 4  # the layout of a cell file and the meaning of its metrics


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
    """A short hash of a cell's inputs: part of its file name, so changed inputs name another file."""
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
        self.dir = Path(out_dir) / rundir.CELLS
        self.dir.mkdir(parents=True, exist_ok=True)
        for junk in self.dir.glob("*.tmp"):  # a cell killed while being written
            junk.unlink(missing_ok=True)

    def path(self, estimator: str, context_len: int, key: str) -> Path:
        """Where the cell (estimator, context length) of inputs hashed to ``key`` is kept."""
        return self.dir / rundir.cell_name(estimator, context_len, key)

    def load(self, estimator: str, context_len: int, key: str) -> pd.DataFrame | None:
        """The cell's rows when its file is there AND reads back whole, else None; a damaged file is logged
        and removed (its cell is computed again)."""
        path = self.path(estimator, context_len, key)
        if not path.is_file():
            return None
        try:
            return rundir.read_cell(path)
        except Exception as e:  # noqa: BLE001  any failure to read back means: compute it again
            log.warning("damaged cell file %s (%s): computing it again", path, " ".join(str(e).split())[:200])
            path.unlink(missing_ok=True)
            return None

    def write(self, estimator: str, context_len: int, key: str, frame: pd.DataFrame) -> None:
        """Keep a computed cell (its per-episode rows), atomically."""
        rundir.write_table(self.path(estimator, context_len, key), frame)

    def stale(self, keep: set[Path]) -> list[Path]:
        """Cell files other than ``keep``: cells of settings or code that changed (ignored, never mixed in)."""
        return [p for p in self.dir.glob("*.csv.gz") if p not in keep]


def write_manifest(out_dir: Path, config: dict, graph: dict, truth: dict, estimators: dict) -> None:
    """What the run is, for a reader that has only the folder: config.yaml, graph.json, truth.json,
    estimators.json."""
    out = Path(out_dir)
    rundir.write_config(out / rundir.CONFIG, config)
    rundir.write_json(out / rundir.GRAPH, graph)
    rundir.write_json(out / rundir.TRUTH, truth)
    rundir.write_json(out / rundir.ESTIMATORS, estimators)


def write_results(out_dir: Path, summaries: list[pd.DataFrame]) -> Path:
    """results.csv from the summaries of the cells done so far (an empty table with its header when none)."""
    frame = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=rundir.RESULT_COLUMNS)
    return rundir.write_table(Path(out_dir) / rundir.RESULTS, frame)


def write_episodes(out_dir: Path, cells: list[tuple[str, int, pd.DataFrame]], graph: str, seed: int) -> Path:
    """episodes.csv.gz: the per-episode rows of every ``(estimator, context_len, frame)`` cell."""
    parts = []
    for estimator, context_len, frame in cells:
        f = frame[frame["episode"] != CELL].copy()  # one row per episode; cell statistics are in results.csv
        f.insert(0, "context_len", context_len)
        f.insert(0, "estimator", estimator)
        f.insert(0, "seed", seed)
        f.insert(0, "graph", graph)
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=rundir.EPISODE_COLUMNS)
    return rundir.write_table(Path(out_dir) / rundir.EPISODES, frame[rundir.EPISODE_COLUMNS])


OUTPUTS = ".outputs.json"  # what results.csv and episodes.csv.gz were last written from (read by no report page)


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes; None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def cell_digests(cells: list[Path]) -> list[list]:
    """[file name, sha256] of every cell file, in run order (None for one that cannot be read)."""
    return [[p.name, file_digest(p)] for p in cells]


def outputs_record(out_dir: Path, digests: list[list], inputs: dict) -> dict:
    """What a finished run's tables were computed from: every cell file (in run order) with its sha256
    (:func:`cell_digests`), ``inputs`` (the code version, graph, seed), and the sha256 of results.csv and
    episodes.csv.gz as written."""
    out = Path(out_dir)
    inputs = json.loads(json.dumps(inputs, sort_keys=True, default=str))  # as the JSON file holds them
    return {"cells": digests, "inputs": inputs,
            "tables": {name: file_digest(out / name) for name in (rundir.RESULTS, rundir.EPISODES)}}


def read_outputs(out_dir: Path) -> dict:
    """The record :func:`write_outputs` left ({} when there is none or it does not read)."""
    try:
        record = json.loads((Path(out_dir) / OUTPUTS).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_outputs(out_dir: Path, record: dict) -> Path:
    """Keep :func:`outputs_record` beside the tables (written last: a run killed before it leaves the old one,
    which then no longer matches)."""
    return rundir.write_json(Path(out_dir) / OUTPUTS, record)


def outputs_current(out_dir: Path, digests: list[list], inputs: dict, record: dict) -> bool:
    """Whether results.csv and episodes.csv.gz are exactly what these cells (their :func:`cell_digests`) and
    inputs give: the last run wrote them from the same cell files, byte for byte, and nothing touched them since."""
    return bool(record) and record == outputs_record(out_dir, digests, inputs)


def read_meta(out_dir: Path) -> dict:
    """meta.json as a dict; a missing or damaged one (logged) reads as {} and is rewritten at the end of the run."""
    try:
        return rundir.read_json(Path(out_dir) / rundir.META)
    except rundir.DamagedFile as e:
        log.warning("%s: writing it again", e)
        return {}


def write_meta(out_dir: Path, meta: dict) -> Path:
    """meta.json (versions, device, cell inputs, one entry per invocation of the run)."""
    return rundir.write_json(Path(out_dir) / rundir.META, meta)


def history_damaged(out_dir: Path, name: str) -> bool:
    """Whether ``extras/history_<name>.csv`` is there but does not read as a table (logged)."""
    path = rundir.history_path(out_dir, name)
    if not path.is_file():
        return False
    try:
        rundir.read_history(path)
        return False
    except rundir.DamagedFile:
        log.warning("damaged training history %s: writing it again", path)
        return True


def artifacts_missing(out_dir: Path, name: str) -> bool:
    """Whether ``extras/artifacts_<name>.json`` is absent or does not read as a JSON object (logged if damaged)."""
    path = rundir.artifacts_path(out_dir, name)
    if not path.is_file():
        return True
    try:
        rundir.read_artifacts(path)
        return False
    except rundir.DamagedFile:
        log.warning("damaged artifacts file %s: writing it again", path)
        return True


def write_artifacts(out_dir: Path, name: str, artifacts: dict) -> Path:
    """``extras/artifacts_<name>.json``: what the estimator ``name`` shows the report (e.g. its weights)."""
    return rundir.write_artifacts(rundir.artifacts_path(out_dir, name), artifacts)


def write_history(out_dir: Path, name: str, history: list[dict]) -> Path:
    """``extras/history_<name>.csv``: the training curve of the estimator ``name``."""
    return rundir.write_history(rundir.history_path(out_dir, name), history)
