"""Results on disk, written as the study goes, so a rerun resumes.

Layout of an output directory::

    config.yaml          the resolved study config
    cells/               one gzipped CSV per finished cell (estimator, N): its per-episode rows
    results.csv          tidy summary: graph, seed, estimator, context_len, node, metric, mean, sem, n
    episodes.csv.gz      every per-episode row of the study (written at the end)
    extras/              training curves of trained estimators
    meta.json            package versions, device, wall times of each invocation
    report.pdf

Metrics (``node`` is a node name or ``all``, the mean over nodes):

    cond_tv, cond_kl            error of the predicted conditional at the query's parents (KL in nats, inf kept)
    cond_kl_inf_frac            share of queries with infinite KL
    unseen_frac                 share of queries whose parent configuration is absent from the context
    joint_tv, joint_kl          exact distance of the implied joint (networks up to fidelity.max_exact_states)
    mc_pair_tv, mc_loglik_gap,  Monte Carlo fidelity of generated samples (larger networks)
      mc_impossible_frac
    <metric>_excess             paired difference to the reference estimator, same episodes
    agree_tv, agree_max_abs     agreement with the estimator it ``mirrors`` (same episodes)
    fit_/predict_/seconds_per_context   wall-clock cost
    attn_match, attn_other, attn_sink, attn_self, attn_null, attn_chance
                                attention shares of transformer estimators; node = "L<layer>.H<head>"

A cell file is named ``<estimator>__N<len>__<key>.csv.gz``; ``key`` hashes
everything that determines the cell's numbers (data settings, the estimator's
config, its mirror's). A cell is written to a temporary file and renamed, so a
killed run leaves either a whole cell or none; a rerun with the same settings
skips the cells it finds, and a rerun with changed settings recomputes only the
cells whose key changed (stale files are ignored, never mixed in).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bncompare.studies.spec import EstimatorSpec, StudySpec

CELL_FORMAT = 3  # bump when the metrics of a cell change meaning
RESULT_COLUMNS = ["graph", "seed", "estimator", "context_len", "node", "metric", "mean", "sem", "n"]
EPISODE_COLUMNS = ["graph", "seed", "estimator", "context_len", "episode", "node", "metric", "value"]
# Metrics whose paired difference to the reference estimator is reported as <metric>_excess.
EXCESS_OF = ("cond_tv", "cond_kl", "joint_tv", "joint_kl", "mc_loglik_gap", "mc_pair_tv")


def cell_key(spec: StudySpec, espec: EstimatorSpec, mirror: EstimatorSpec | None = None) -> str:
    payload = {"format": CELL_FORMAT, "data": spec.data_dict(), "estimator": espec.to_dict(),
               "mirror": mirror.to_dict() if mirror else None}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class CellStore:
    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir) / "cells"
        self.dir.mkdir(parents=True, exist_ok=True)
        for junk in self.dir.glob("*.tmp"):  # a cell killed while being written
            junk.unlink()

    def path(self, estimator: str, context_len: int, key: str) -> Path:
        return self.dir / f"{estimator}__N{context_len}__{key}.csv.gz"

    def has(self, estimator: str, context_len: int, key: str) -> bool:
        return self.path(estimator, context_len, key).is_file()

    def write(self, estimator: str, context_len: int, key: str, frame: pd.DataFrame) -> None:
        path = self.path(estimator, context_len, key)
        tmp = path.with_name(path.name + ".tmp")
        frame.to_csv(tmp, index=False, compression="gzip")
        os.replace(tmp, path)

    def read(self, estimator: str, context_len: int, key: str) -> pd.DataFrame:
        return pd.read_csv(self.path(estimator, context_len, key), keep_default_na=False, na_values=[""],
                           dtype={"node": str, "metric": str})

    def stale(self, keep: set[Path]) -> list[Path]:
        return [p for p in self.dir.glob("*.csv.gz") if p not in keep]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (node, metric): mean, standard error and n over episodes.

    An infinite value makes the mean inf and the standard error NaN (undefined);
    NaN values (nothing to measure) are left out of n.
    """
    frame = frame.dropna(subset=["value"])
    g = frame.groupby(["node", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    finite = g.apply(lambda v: bool(np.isfinite(v).all())).reset_index(drop=True)
    out["sem"] = np.where(finite & (out["n"] > 1), out["std"] / np.sqrt(out["n"].clip(lower=1)), np.nan)
    return out.drop(columns="std")


def excess(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Paired per-episode differences to the reference on the same episodes, as ``<metric>_excess`` rows."""
    keys = ["episode", "node", "metric"]
    a = frame[frame["metric"].isin(EXCESS_OF)]
    b = reference[reference["metric"].isin(EXCESS_OF)][keys + ["value"]]
    both = a.merge(b, on=keys, suffixes=("", "_ref"))
    with np.errstate(invalid="ignore"):
        diff = both["value"].to_numpy() - both["value_ref"].to_numpy()  # inf - inf = NaN: left out
    return pd.DataFrame({"episode": both["episode"], "node": both["node"],
                         "metric": both["metric"] + "_excess", "value": diff})


def cell_summary(frame: pd.DataFrame, reference: pd.DataFrame | None, graph: str, seed: int,
                 estimator: str, context_len: int) -> pd.DataFrame:
    parts = [summarize(frame)]
    if reference is not None:
        parts.append(summarize(excess(frame, reference)))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "context_len", context_len)
    out.insert(0, "estimator", estimator)
    out.insert(0, "seed", seed)
    out.insert(0, "graph", graph)
    return out[RESULT_COLUMNS]


def write_results(out_dir: Path, summaries: list[pd.DataFrame]) -> Path:
    path = Path(out_dir) / "results.csv"
    frame = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=RESULT_COLUMNS)
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def write_episodes(out_dir: Path, cells: list[tuple[str, int, pd.DataFrame]], graph: str, seed: int) -> Path:
    parts = []
    for estimator, context_len, frame in cells:
        f = frame.copy()
        f.insert(0, "context_len", context_len)
        f.insert(0, "estimator", estimator)
        f.insert(0, "seed", seed)
        f.insert(0, "graph", graph)
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EPISODE_COLUMNS)
    path = Path(out_dir) / "episodes.csv.gz"
    tmp = path.with_name(path.name + ".tmp")
    frame[EPISODE_COLUMNS].to_csv(tmp, index=False, compression="gzip")
    os.replace(tmp, path)
    return path


def read_results(path) -> pd.DataFrame:
    """results.csv with node names kept as text (a node called 'NA' stays 'NA')."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={"graph": str, "node": str, "metric": str, "estimator": str})
