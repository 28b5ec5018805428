"""What a report is made of, read back from one or more finished run directories.

A report never recomputes anything and needs nothing but the directory (no
study code, no model cache): ``results.csv``, ``config.yaml``, ``meta.json``,
``graph.json``, ``truth.json``, ``estimators.json``, ``extras/history_*.csv``
and, for per-episode scatter plots, ``episodes.csv.gz`` (the layout is
described in :mod:`bncompare.studies.store`). Several directories (a multirun)
give one report with every graph; several seeds of a graph are combined: the
mean of the per-seed means, with the standard error across seeds.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from bncompare.errors import BNError
from bncompare.metrics.summary import RESULT_COLUMNS, combine_seeds
from bncompare.networks.graph import Graph


@dataclass
class Run:
    dir: Path
    graph: str
    seed: int
    config: dict
    meta: dict
    dag: Graph | None = None  # from graph.json
    truth: dict = field(default_factory=dict)  # truth.json
    estimators: dict = field(default_factory=dict)  # estimators.json: name -> declaration
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class ReportData:
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
            path = r.dir / "episodes.csv.gz"
            if path.is_file():
                f = pd.read_csv(path, keep_default_na=False, na_values=[""],
                                dtype={"node": str, "metric": str, "graph": str})
                parts.append(f[f["metric"].isin(metrics)])
        return pd.concat(parts, ignore_index=True) if parts else None

    def combined(self, graph: str) -> pd.DataFrame:
        """Results of ``graph`` with seeds combined: one row per (estimator, context_len, node, metric)."""
        return combine_seeds(self.results[self.results["graph"] == graph])


def truth_prior(config: dict) -> dict:
    """The CPT prior the episodes' truth was drawn from: ``eval_prior`` when set, else the training ``prior``."""
    return config.get("eval_prior") or config.get("prior") or {"kind": "dirichlet", "params": {"alpha": 1.0}}


def optimal_here(entry: dict, config: dict) -> str:
    """The loss an estimator minimizes (its ``reference_for``) when the study's truth prior is exactly the prior
    it declares (``optimal_prior``); '' otherwise. Run folders older than that declaration compare the kind only."""
    tags = entry.get("tags") or {}
    want = truth_prior(config)
    if "optimal_prior" in entry:
        have = entry["optimal_prior"] or {}
        params = want.get("params") or {}
        ok = bool(have) and have.get("kind") == want.get("kind") and all(
            k in params and math.isclose(float(v), float(params[k]), rel_tol=1e-9)
            for k, v in (have.get("params") or {}).items())
    else:
        ok = tags.get("optimal_under") == want.get("kind")
    return (tags.get("reference_for") or "") if ok else ""


def read_results(path) -> pd.DataFrame:
    """results.csv with node names kept as text (a node called 'NA' stays 'NA'); a damaged one is a BNError."""
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""],
                            dtype={"graph": str, "node": str, "metric": str, "estimator": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise BNError(f"{path} is not a results table ({' '.join(str(e).split()) or type(e).__name__})") from None
    if list(frame.columns) != RESULT_COLUMNS:
        raise BNError(f"{path} has columns {list(frame.columns)}, expected {RESULT_COLUMNS}")
    return frame


def find_runs(paths) -> list[Path]:
    """Run directories (those holding results.csv) at or below each path."""
    found = []
    for p in map(Path, paths):
        if (p / "results.csv").is_file():
            found.append(p)
        elif p.is_dir():
            below = sorted(q.parent for q in p.rglob("results.csv"))
            if not below:
                raise BNError(f"{str(p)!r} holds no study run (no results.csv at or below it)")
            found += below
        else:
            raise BNError(f"{str(p)!r} is not a study output directory (no results.csv) nor a folder of them")
    return list(dict.fromkeys(found))


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BNError(f"{path} is damaged ({' '.join(str(e).split())}); rerun the study to rewrite it") from None
    if not isinstance(value, dict):
        raise BNError(f"{path} is damaged (not a JSON object); rerun the study to rewrite it")
    return value


def _histories(path: Path) -> dict[str, pd.DataFrame]:
    """Training histories; one that does not read as a table is left out with a warning (the page says so)."""
    out = {}
    for h in sorted((path / "extras").glob("history_*.csv")):
        try:
            frame = pd.read_csv(h)
            if "step" not in frame.columns:
                raise ValueError("no 'step' column")
            out[h.stem[len("history_"):]] = frame
        except Exception as e:  # noqa: BLE001  a damaged extra never blocks the report
            print(f"warning: skipping damaged training history {h} ({e})", file=sys.stderr)
    return out


def _graph(record: dict) -> Graph | None:
    if not record:
        return None
    edges = [(p, child) for child, ps in zip(record["names"], record["parents"]) for p in ps]
    parent_order = dict(zip(record["names"], record["parents"]))  # keeps the CPT layout's parent order
    return Graph.from_edges(record["names"], edges, record["cards"], parent_order)


def load_run(path: Path) -> tuple[Run, pd.DataFrame]:
    path = Path(path)
    results = read_results(path / "results.csv")
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    graph = str(results["graph"].iloc[0]) if len(results) else (config.get("graph") or {}).get("name", "?")
    seed = int(results["seed"].iloc[0]) if len(results) else int(config.get("seed", 0))
    histories = _histories(path)
    run = Run(path, graph, seed, config, _json(path / "meta.json"), _graph(_json(path / "graph.json")),
              _json(path / "truth.json"), _json(path / "estimators.json"), histories)
    return run, results


def load(paths) -> ReportData:
    runs, frames, seen = [], [], {}
    for p in find_runs(paths if isinstance(paths, (list, tuple)) else [paths]):
        run, results = load_run(p)
        for key in {(str(g), int(s)) for g, s in zip(results["graph"], results["seed"])} or {(run.graph, run.seed)}:
            if key in seen:  # the same draws twice: keeping one would hide the other
                raise BNError(f"{seen[key]} and {p} are both graph {key[0]} seed {key[1]}; merge one of them")
            seen[key] = p
        runs.append(run)
        frames.append(results)
    results = pd.concat(frames, ignore_index=True).drop_duplicates(
        ["graph", "seed", "estimator", "context_len", "node", "metric"], keep="last")
    return ReportData(results, runs)
