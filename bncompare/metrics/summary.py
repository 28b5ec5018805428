"""Mean and standard error that keep infinities honest.

An infinite value (e.g. KL of an estimator that ruled out a possible value)
makes the mean ``inf``; its standard error is then undefined (NaN). Callers
report the fraction of infinite values next to it. NaN values (nothing to
measure) are left out of n.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def mean_sem(values) -> tuple[float, float, int]:
    """(mean, standard error of the mean, n) of finite-or-inf values; NaNs are dropped."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    if not np.isfinite(v).all():
        return float(v.mean()) if n else float("nan"), float("nan"), n
    sem = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(v.mean()), sem, n


# ----- per-episode frames (columns episode, node, metric, value) -> summaries ------------

# Metrics whose paired difference to the reference estimator is reported as <metric>_excess.
EXCESS_OF = ("cond_tv", "cond_kl", "joint_tv", "joint_kl", "mc_loglik_gap", "mc_pair_tv")
RESULT_COLUMNS = ["graph", "seed", "estimator", "context_len", "node", "metric", "mean", "sem", "n"]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (node, metric): mean, standard error and n over episodes (the conventions of :func:`mean_sem`)."""
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
    """The results.csv rows of one cell: its summary, plus the paired excess over ``reference`` when given."""
    parts = [summarize(frame)]
    if reference is not None:
        parts.append(summarize(excess(frame, reference)))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "context_len", context_len)
    out.insert(0, "estimator", estimator)
    out.insert(0, "seed", seed)
    out.insert(0, "graph", graph)
    return out[RESULT_COLUMNS]


def combine_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv rows of several seeds -> one row per (estimator, context_len, node, metric).

    One seed keeps its mean and SE over episodes; several give the mean of the
    per-seed means with the standard error across seeds.
    """
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
