"""What a report is made of, read back from one or more study output directories.

A report never recomputes anything: it reads ``results.csv``, ``config.yaml``,
``meta.json``, ``extras/history_*.csv`` and (for per-episode scatter plots)
``episodes.csv.gz``. Several directories (a multirun) give one report with every
graph; several seeds of a graph are combined: the mean of the per-seed means,
with the standard error across seeds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bncompare.errors import BNError
from bncompare.studies.store import read_results


@dataclass
class Run:
    dir: Path
    graph: str
    seed: int
    config: dict
    meta: dict
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def estimators(self) -> dict:
        return {k: v for k, v in (self.config.get("estimators") or {}).items() if v is not None}


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
        return self.runs_of(graph)[0].estimators.get(estimator, {}) or {}

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
                f = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"node": str, "metric": str, "graph": str})
                parts.append(f[f["metric"].isin(metrics)])
        return pd.concat(parts, ignore_index=True) if parts else None

    def combined(self, graph: str) -> pd.DataFrame:
        """Results of ``graph`` with seeds combined: one row per (estimator, context_len, node, metric)."""
        return combine_seeds(self.results[self.results["graph"] == graph])


def combine_seeds(results: pd.DataFrame) -> pd.DataFrame:
    keys = ["estimator", "context_len", "node", "metric"]
    n_seeds = results.groupby(keys, sort=False)["seed"].transform("nunique")
    single = results[n_seeds == 1][keys + ["mean", "sem", "n"]].assign(seeds=1)
    multi = results[n_seeds > 1]
    if multi.empty:
        return single.reset_index(drop=True)
    g = multi.groupby(keys, sort=False)
    agg = g.agg(mean=("mean", "mean"), std=("mean", "std"), n=("n", "sum"), seeds=("seed", "nunique")).reset_index()
    agg["sem"] = agg["std"] / np.sqrt(agg["seeds"])
    return pd.concat([single, agg.drop(columns="std")], ignore_index=True)


def find_runs(paths) -> list[Path]:
    """Study directories (those holding results.csv) at or below each path."""
    found = []
    for p in map(Path, paths):
        if (p / "results.csv").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(q.parent for q in p.rglob("results.csv"))
        else:
            raise BNError(f"{str(p)!r} is not a study output directory (no results.csv) nor a folder of them")
    if not found:
        raise BNError(f"no results.csv found under {[str(p) for p in paths]}")
    return list(dict.fromkeys(found))


def load_run(path: Path) -> tuple[Run, pd.DataFrame]:
    path = Path(path)
    results = read_results(path / "results.csv")
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
    graph = str(results["graph"].iloc[0]) if len(results) else (config.get("graph") or {}).get("name", "?")
    seed = int(results["seed"].iloc[0]) if len(results) else int(config.get("seed", 0))
    histories = {}
    for h in sorted((path / "extras").glob("history_*.csv")):
        histories[h.stem[len("history_"):]] = pd.read_csv(h)
    return Run(path, graph, seed, config, meta, histories), results


def load(paths) -> ReportData:
    runs, frames = [], []
    for p in find_runs(paths if isinstance(paths, (list, tuple)) else [paths]):
        run, results = load_run(p)
        runs.append(run)
        frames.append(results)
    results = pd.concat(frames, ignore_index=True).drop_duplicates(
        ["graph", "seed", "estimator", "context_len", "node", "metric"], keep="last")
    return ReportData(results, runs)
