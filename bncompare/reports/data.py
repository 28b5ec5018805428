"""What a report is made of, read back from one or more finished run directories.

A report never recomputes anything and needs nothing but the directory (no
study code, no model cache): ``results.csv``, ``config.yaml``, ``meta.json``,
``graph.json``, ``truth.json``, ``estimators.json``, ``extras/history_*.csv``, ``extras/artifacts_*.json``
and, for per-episode scatter plots, ``episodes.csv.gz`` (the layout and the
readers are in :mod:`bncompare.rundir`). Several directories (a multirun)
give one report with every graph; several seeds of a graph are combined: the
mean of the per-seed means, with the standard error across seeds.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bncompare import rundir
from bncompare.errors import BNError
from bncompare.metrics.summary import combine_seeds
from bncompare.networks.graph import Graph
from bncompare.rundir import read_results


@dataclass
class Run:
    """One finished run directory, read back whole (what the report, compare and merge use)."""

    dir: Path
    graph: str
    seed: int
    config: dict
    meta: dict
    results: pd.DataFrame  # results.csv
    dag: Graph | None = None  # from graph.json
    truth: dict = field(default_factory=dict)  # truth.json
    estimators: dict = field(default_factory=dict)  # estimators.json: name -> declaration
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)  # extras/artifacts_*.json: name -> its dict

    @property
    def study(self) -> str:
        """The study preset's name (``study_name`` in config.yaml), '?' when the config does not say."""
        return str(self.config.get("study_name", "?"))


@dataclass
class ReportData:
    """The runs of one report: every results row, and each run as it was read back."""

    results: pd.DataFrame
    runs: list[Run]

    @property
    def graphs(self) -> list[str]:
        return list(dict.fromkeys(self.results["graph"]))

    def runs_of(self, graph: str) -> list[Run]:
        return [r for r in self.runs if r.graph == graph]

    def config_of(self, graph: str) -> dict:
        return self.runs_of(graph)[0].config

    def estimators_of(self, graph: str) -> list[str]:
        """In config order (the reference first), limited to those with results."""
        have = set(self.results.loc[self.results["graph"] == graph, "estimator"])
        order = []
        for r in self.runs_of(graph):
            order += [e for e in r.estimators if e in have and e not in order]
        return order + sorted(have - set(order))

    def entry(self, graph: str, estimator: str) -> dict:
        """The estimator's declaration (kind, label, tags, params, subset, context_lens, mirrors)."""
        return self.runs_of(graph)[0].estimators.get(estimator, {}) or {}

    def tag(self, graph: str, estimator: str, name: str):
        return (self.entry(graph, estimator).get("tags") or {}).get(name)

    def label(self, graph: str, estimator: str) -> str:
        return self.entry(graph, estimator).get("label") or estimator

    def reference(self, graph: str) -> str | None:
        return self.config_of(graph).get("reference")

    def episodes(self, graph: str, metrics: list[str]) -> pd.DataFrame | None:
        """Per-episode rows of ``metrics`` for every run of ``graph`` (None when no run kept them)."""
        parts = []
        for r in self.runs_of(graph):
            path = r.dir / rundir.EPISODES
            if path.is_file():
                f = checked_numbers(rundir.read_table(path, what="table of episodes"), path)
                parts.append(f[f["metric"].isin(metrics)])
        return pd.concat(parts, ignore_index=True) if parts else None

    def combined(self, graph: str) -> pd.DataFrame:
        """Results of ``graph`` with seeds combined: one row per (estimator, context_len, node, metric)."""
        return combine_seeds(self.results[self.results["graph"] == graph])


def truth_prior(config: dict) -> dict:
    """The CPT prior the episodes' truth was drawn from: ``eval_prior`` when set, else the training ``prior``."""
    return config.get("eval_prior") or config.get("prior") or {"kind": "dirichlet", "params": {"alpha": 1.0}}


def _same(a, b) -> bool:
    """Two prior parameters are equal: numbers to rounding, anything else (a law's name, null) exactly."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return math.isclose(float(a), float(b), rel_tol=1e-9) if numbers else a == b


def optimal_here(entry: dict, config: dict) -> str:
    """The loss an estimator minimizes (its ``reference_for``) when the study's truth prior is exactly the prior
    it declares (``optimal_prior``); '' otherwise. Run folders older than that declaration compare the kind only."""
    tags = entry.get("tags") or {}
    want = truth_prior(config)
    if "optimal_prior" in entry:
        have = entry["optimal_prior"] or {}
        params = want.get("params") or {}
        ok = bool(have) and have.get("kind") == want.get("kind") and all(
            k in params and _same(v, params[k]) for k, v in (have.get("params") or {}).items())
    else:
        ok = tags.get("optimal_under") == want.get("kind")
    return (tags.get("reference_for") or "") if ok else ""


def _histories(path: Path) -> dict[str, pd.DataFrame]:
    """Training histories; one that does not read as a table is left out with a warning (the page says so)."""
    out = {}
    for name, history in rundir.history_paths(path).items():
        try:
            out[name] = rundir.read_history(history)
        except rundir.DamagedFile as e:  # a damaged extra never blocks the report
            print(f"warning: {e}; the report leaves it out", file=sys.stderr)
    return out


def _artifacts(path: Path) -> dict[str, dict]:
    """Estimators' artifacts; a damaged file is left out with a warning (the page says so)."""
    out = {}
    for name, file in rundir.artifacts_paths(path).items():
        try:
            out[name] = rundir.read_artifacts(file)
        except rundir.DamagedFile as e:  # a damaged extra never blocks the report
            print(f"warning: {e}; the report leaves it out", file=sys.stderr)
    return out


# What the reports take from each file, by type: a value of another type means the file is damaged (a missing
# key or null is fine: older run folders lack some). A list's items must be mappings.
SHAPES = {
    rundir.CONFIG: {"graph": dict, "prior": dict, "eval_prior": dict, "process": dict, "study_name": str,
                    "reference": str, "tv_reference": str, "seed": int},
    rundir.META: {"runs": list, "versions": dict, "code_version": dict},
    rundir.TRUTH: {"truth": str, "headline": str},
}
WHOLE_COLUMNS = ("seed", "context_len", "n", "episode")  # counts and labels: whole numbers, none missing
NUMBER_COLUMNS = ("mean", "sem", "value")  # measured values: numbers (NaN and inf are values)


def _damaged(path, why: str) -> BNError:
    return BNError(f"{path} is damaged ({why}); rerun the study to rewrite it")


def checked_shape(record: dict, path: Path) -> dict:
    """``record`` (read from ``path``) when every key of SHAPES[path.name] it has is of its declared type."""
    for key, kind in SHAPES.get(path.name, {}).items():
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _damaged(path, f"{key} is {type(value).__name__}, not {kind.__name__}")
        if kind is list and not all(isinstance(v, dict) for v in value):
            raise _damaged(path, f"{key} holds an item that is not a mapping")
    return record


def checked_numbers(frame: pd.DataFrame, path) -> pd.DataFrame:
    """``frame`` (a table read from ``path``) when its count columns hold whole numbers and its value columns
    numbers; otherwise a one-line BNError naming the file and the column."""
    for col in frame.columns:
        if col in WHOLE_COLUMNS:
            values = pd.to_numeric(frame[col], errors="coerce")
            if values.isna().any() or not (values == values.round()).all():
                raise _damaged(path, f"column {col!r} holds a value that is not a whole number")
            if frame[col].dtype.kind not in "iu":
                frame[col] = values.astype("int64")
        elif col in NUMBER_COLUMNS and frame[col].dtype.kind not in "fiu":
            raise _damaged(path, f"column {col!r} holds a value that is not a number")
    return frame


def _json(path: Path) -> dict:
    try:
        return checked_shape(rundir.read_json(path), path)
    except rundir.DamagedFile as e:
        raise BNError(f"{e}; rerun the study to rewrite it") from None


def _estimators(path: Path) -> dict:
    """estimators.json: estimator name -> its declaration (a mapping)."""
    record = _json(path)
    for name, entry in record.items():
        if not isinstance(entry, dict):
            raise _damaged(path, f"the entry of {name!r} is not a mapping")
    return record


def _dag(path: Path) -> Graph | None:
    record = _json(path)
    if not record:
        return None
    try:
        return Graph.from_dict(record)
    except (KeyError, TypeError, ValueError) as e:  # a BNError (a cycle, a bad cardinality) is a ValueError
        raise BNError(f"{path} is damaged (not a graph: {' '.join(str(e).split())}); rerun the study to rewrite "
                      "it") from None


def read_run(path) -> Run:
    """The run directory ``path`` (holding results.csv), every file read once; a damaged file is a one-line
    BNError naming it."""
    path = Path(path)
    results = checked_numbers(read_results(path / rundir.RESULTS), path / rundir.RESULTS)
    config = checked_shape(rundir.read_config(path / rundir.CONFIG), path / rundir.CONFIG)
    graph = str(results["graph"].iloc[0]) if len(results) else (config.get("graph") or {}).get("name", "?")
    seed = int(results["seed"].iloc[0]) if len(results) else int(config.get("seed", 0))
    return Run(path, graph, seed, config, _json(path / rundir.META), results, _dag(path / rundir.GRAPH),
               _json(path / rundir.TRUTH), _estimators(path / rundir.ESTIMATORS), _histories(path), _artifacts(path))


def load_run(path) -> tuple[Run, pd.DataFrame]:
    """:func:`read_run` and the run's results, as a pair."""
    run = read_run(path)
    return run, run.results


def load(paths) -> ReportData:
    """Every run directory at or below ``paths`` (one path or a list), as one report's data."""
    runs, seen = [], {}
    for p in rundir.find_runs(paths if isinstance(paths, (list, tuple)) else [paths]):
        run = read_run(p)
        keys = {(str(g), int(s)) for g, s in zip(run.results["graph"], run.results["seed"])}
        for key in keys or {(run.graph, run.seed)}:
            if key in seen:  # the same draws twice: keeping one would hide the other
                raise BNError(f"{seen[key]} and {p} are both graph {key[0]} seed {key[1]}; merge one of them")
            seen[key] = p
        runs.append(run)
    results = pd.concat([r.results for r in runs], ignore_index=True).drop_duplicates(
        ["graph", "seed", "estimator", "context_len", "node", "metric"], keep="last")
    return ReportData(results, runs)
