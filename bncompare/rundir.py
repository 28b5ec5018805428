"""The run directory: its file names, the columns of its tables, and how each file is read and written.

A study writes one folder that describes itself, so a report renders from it alone, on any machine.
The study (:mod:`bncompare.studies.store`) writes it; the report, ``compare`` and ``merge``
(:mod:`bncompare.reports.data`) read it, all through this module::

    config.yaml          the resolved study config
    graph.json           the DAG: node names, cardinalities, parents
    truth.json           what the truth of an episode is, the CPT prior, the distance of real CPTs from it
    estimators.json      per estimator: kind, class, label, tags, settings (get_params), subset, mirrors
    cells/               one gzipped CSV per finished cell (estimator, N): its per-episode rows
    results.csv          tidy summary: graph, seed, estimator, context_len, node, metric, mean, sem, n
    episodes.csv.gz      every per-episode row of the study (written at the end)
    extras/              history_<estimator>.csv: training curves of estimators tagged has_history;
                         artifacts_<estimator>.json: what estimators tagged has_artifacts show (weights)
    meta.json            package versions, code version, each estimator's cell inputs, device, wall times
    report.pdf           written by the report command (python -m bncompare.reports.report <dir>)
    run.log, .hydra/     Hydra's log of the run and its record of the command line

Metrics (``node`` is a node name or ``all``, the mean over nodes)::

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

Every write is atomic (:mod:`bncompare.files`): a reader, or a killed run, sees the old file or
the new one. Every table is read with its text columns kept as text (a node called ``NA`` stays
``NA``, an estimator called ``1`` stays ``1``); a file that does not read back is a one-line
:class:`DamagedFile` naming it.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pandas as pd
import yaml

from bncompare.csvtext import escaped, unescaped
from bncompare.errors import BNError
from bncompare.files import atomic_write, atomic_write_text

CONFIG = "config.yaml"
GRAPH = "graph.json"
TRUTH = "truth.json"
ESTIMATORS = "estimators.json"
META = "meta.json"
RESULTS = "results.csv"
EPISODES = "episodes.csv.gz"
CELLS = "cells"
EXTRAS = "extras"
REPORT = "report.pdf"
RUN_LOG = "run.log"  # written by Hydra (the job is called "run")
HYDRA = ".hydra"  # Hydra's record of the run: config.yaml, overrides.yaml

RESULT_COLUMNS = ["graph", "seed", "estimator", "context_len", "node", "metric", "mean", "sem", "n"]
CELL_COLUMNS = ["episode", "node", "metric", "value"]
EPISODE_COLUMNS = ["graph", "seed", "estimator", "context_len", "episode", "node", "metric", "value"]
# Columns that hold names: read as text, so that no name turns into a number or a missing value.
TEXT_COLUMNS = ("graph", "estimator", "node", "metric")
HISTORY_PREFIX = "history_"
ARTIFACTS_PREFIX = "artifacts_"


class DamagedFile(BNError):
    """A file of a run directory that is there but does not read back (its message names it)."""


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


# ----- names -----------------------------------------------------------------------------------

def cell_name(estimator: str, context_len: int, key: str) -> str:
    """The file name of a cell in ``cells/``; ``key`` hashes everything that determines its numbers."""
    return f"{estimator}__N{context_len}__{key}.csv.gz"


def history_path(run_dir, estimator: str) -> Path:
    """``extras/history_<estimator>.csv``: the training curve of an estimator tagged has_history."""
    return Path(run_dir) / EXTRAS / f"{HISTORY_PREFIX}{estimator}.csv"


def history_paths(run_dir) -> dict[str, Path]:
    """Estimator name -> its training history file, for every history in ``extras/``."""
    return {p.stem[len(HISTORY_PREFIX):]: p for p in sorted((Path(run_dir) / EXTRAS).glob(f"{HISTORY_PREFIX}*.csv"))}


def artifacts_path(run_dir, estimator: str) -> Path:
    """``extras/artifacts_<estimator>.json``: what an estimator tagged has_artifacts shows (e.g. its weights)."""
    return Path(run_dir) / EXTRAS / f"{ARTIFACTS_PREFIX}{estimator}.json"


def artifacts_paths(run_dir) -> dict[str, Path]:
    """Estimator name -> its artifacts file, for every one in ``extras/``."""
    return {p.stem[len(ARTIFACTS_PREFIX):]: p
            for p in sorted((Path(run_dir) / EXTRAS).glob(f"{ARTIFACTS_PREFIX}*.json"))}


def find_runs(paths) -> list[Path]:
    """Run directories (those holding results.csv) at or below each path, each once."""
    found = []
    for p in map(Path, paths):
        if (p / RESULTS).is_file():
            found.append(p)
        elif p.is_dir():
            below = sorted(q.parent for q in p.rglob(RESULTS))
            if not below:
                raise BNError(f"{str(p)!r} holds no study run (no {RESULTS} at or below it)")
            found += below
        else:
            raise BNError(f"{str(p)!r} is not a study output directory (no {RESULTS}) nor a folder of them")
    return list(dict.fromkeys(found))


# ----- JSON and YAML ---------------------------------------------------------------------------

def write_json(path, obj) -> Path:
    """``obj`` as indented JSON; values JSON cannot hold (a torch dtype, a dataclass) become text."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def json_object(text: str, where) -> dict:
    """``text`` parsed as a JSON object; anything else is a DamagedFile naming ``where``."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise DamagedFile(f"{where} is damaged ({_short(e)})") from None
    if not isinstance(value, dict):
        raise DamagedFile(f"{where} is damaged (not a JSON object)")
    return value


def read_json(path) -> dict:
    """A JSON object as a dict; ``{}`` when the file is missing, DamagedFile when it is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DamagedFile(f"{path} is damaged ({_short(e)})") from None
    return json_object(text, path)


def write_config(path, config: dict) -> Path:
    """The resolved study config as YAML, keys in the config's order."""
    return atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def read_config(path) -> dict:
    """The study config (data only: yaml.safe_load); ``{}`` when missing, DamagedFile when not a mapping."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        value = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DamagedFile(f"{path} is damaged ({_short(e)})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DamagedFile(f"{path} is damaged (not a mapping of settings)")
    return value


# ----- tables ----------------------------------------------------------------------------------

def write_table(path, frame: pd.DataFrame) -> Path:
    """``frame`` as CSV without its index, gzipped when ``path`` ends in .gz."""
    path = Path(path)
    if path.suffix == ".gz":  # level 6, not gzip's 9: a third of the time for files 1% larger (episodes.csv.gz)
        gz = {"method": "gzip", "compresslevel": 6}
        return atomic_write(path, lambda tmp: escaped(frame).to_csv(tmp, index=False, compression=gz))
    return atomic_write_text(path, escaped(frame).to_csv(index=False))


def read_table(source, columns: list[str] | None = None, what: str = "table", where=None) -> pd.DataFrame:
    """A CSV table (a path, gzipped or not, or a text buffer) with its name columns kept as text.

    ``columns``: the header it must have. Anything that does not read as such a table is a
    DamagedFile naming ``where`` (default: the path) and ``what`` it should be.
    """
    where = where if where is not None else source
    try:
        frame = pd.read_csv(source, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(TEXT_COLUMNS, str))
    except (ValueError, EOFError, OSError, zlib.error) as e:  # empty, ragged, not UTF-8, a broken gzip stream
        raise DamagedFile(f"{where} is not a {what} ({_short(e)})") from None
    if columns is not None and list(frame.columns) != list(columns):
        raise DamagedFile(f"{where} has columns {list(frame.columns)}, expected {list(columns)}")
    return unescaped(frame)


def read_results(path) -> pd.DataFrame:
    """results.csv (RESULT_COLUMNS); a damaged one is a one-line DamagedFile."""
    return read_table(path, RESULT_COLUMNS, "results table")


def read_cell(path) -> pd.DataFrame:
    """A cell file: CELL_COLUMNS, at least one row, numeric values; anything else is a DamagedFile."""
    frame = read_table(path, CELL_COLUMNS, "cell file")
    if frame.empty or frame["value"].dtype.kind not in "fi":
        raise DamagedFile(f"{path} has no rows or values that are not numbers")
    return frame


def read_history(path) -> pd.DataFrame:
    """A training history: one row per training step (a ``step`` column); anything else is a DamagedFile."""
    try:
        frame = unescaped(pd.read_csv(path))
    except (ValueError, EOFError, OSError) as e:
        raise DamagedFile(f"{path} is not a training history ({_short(e)})") from None
    if "step" not in frame.columns:
        raise DamagedFile(f"{path} is not a training history (no 'step' column)")
    return frame


def write_history(path, history: list[dict]) -> Path:
    """A training history (one dict per logged step) as CSV; creates ``extras/`` when needed."""
    path = Path(path)
    path.parent.mkdir(exist_ok=True)
    return atomic_write_text(path, escaped(pd.DataFrame(history)).to_csv(index=False))


def write_artifacts(path, artifacts: dict) -> Path:
    """An estimator's artifacts (a JSON-able dict) as JSON; creates ``extras/`` when needed."""
    path = Path(path)
    path.parent.mkdir(exist_ok=True)
    return atomic_write_text(path, json.dumps(artifacts, indent=1, allow_nan=True))


def read_artifacts(path) -> dict:
    """An estimator's artifacts: a JSON object; anything else is a DamagedFile."""
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, OSError) as e:
        raise DamagedFile(f"{path} is not an artifacts file ({_short(e)})") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"{path} is not an artifacts file (not a JSON object)")
    return data
