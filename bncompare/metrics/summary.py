"""Mean and standard error that keep infinities honest.

An infinite value (e.g. KL of an estimator that ruled out a possible value)
makes the mean ``inf``; its standard error is then undefined (NaN). Callers
report the fraction of infinite values next to it. NaN values (nothing to
measure) are left out of n.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bncompare.rundir import RESULT_COLUMNS


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
EXCESS_OF = ("cond_tv", "cond_kl", "query_nll", "brier", "joint_tv", "joint_kl", "mc_loglik_gap", "mc_pair_tv", "crps",
             "next_err")
# Metrics whose paired difference to the mirrored estimator is reported as <metric>_vs_mirror.
VS_MIRROR_OF = EXCESS_OF
# Episode id of rows that describe a whole cell, not one episode: statistics of the pooled episodes (ECE and
# the reliability diagram). Such a row's value is the cell's figure; a row ``<metric>_sem`` may carry its
# standard error (e.g. a bootstrap over episodes). They never enter paired differences.
CELL = -1


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (node, metric): mean, standard error and n over episodes (the conventions of :func:`mean_sem`);
    cell rows (``episode == CELL``) keep their value, with n the cell's episode count."""
    frame = frame.dropna(subset=["value"])
    is_cell = frame["episode"] == CELL
    cell, frame = frame[is_cell], frame[~is_cell]
    g = frame.groupby(["node", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    finite = g.apply(lambda v: bool(np.isfinite(v).all())).reset_index(drop=True)
    out["sem"] = np.where(finite & (out["n"] > 1), out["std"] / np.sqrt(out["n"].clip(lower=1)), np.nan)
    out = out.drop(columns="std")
    return pd.concat([out, cell_statistics(cell, frame["episode"].nunique())], ignore_index=True) if len(cell) else out


def cell_statistics(cell: pd.DataFrame, n_episodes: int) -> pd.DataFrame:
    """Cell rows as summary rows: value as mean, ``<metric>_sem`` rows as their standard error."""
    sem = {(n, m[: -len("_sem")]): v for n, m, v in zip(cell["node"], cell["metric"], cell["value"])
           if m.endswith("_sem")}
    cell = cell[~cell["metric"].str.endswith("_sem")]
    return pd.DataFrame({"node": cell["node"].to_numpy(), "metric": cell["metric"].to_numpy(),
                         "mean": cell["value"].to_numpy(), "n": n_episodes,
                         "sem": [sem.get(k, np.nan) for k in zip(cell["node"], cell["metric"])]})


def paired(frame: pd.DataFrame, other: pd.DataFrame, metrics, suffix: str) -> pd.DataFrame:
    """Per-episode differences ``frame - other`` of ``metrics`` on the episodes both have, as ``<metric><suffix>``."""
    keys = ["episode", "node", "metric"]
    a = frame[frame["metric"].isin(metrics)]
    b = other[other["metric"].isin(metrics)][keys + ["value"]]
    both = a.merge(b, on=keys, suffixes=("", "_other"))
    with np.errstate(invalid="ignore"):
        diff = both["value"].to_numpy() - both["value_other"].to_numpy()  # inf - inf = NaN: left out
    return pd.DataFrame({"episode": both["episode"], "node": both["node"],
                         "metric": both["metric"] + suffix, "value": diff})


def excess(frame: pd.DataFrame, reference: pd.DataFrame, metrics=EXCESS_OF) -> pd.DataFrame:
    """Paired per-episode differences to the reference on the same episodes, as ``<metric>_excess`` rows."""
    return paired(frame, reference, metrics, "_excess")


def cell_summary(frame: pd.DataFrame, reference: pd.DataFrame | dict | None, graph: str, seed: int,
                 estimator: str, context_len: int, mirror: pd.DataFrame | None = None) -> pd.DataFrame:
    """The results.csv rows of one cell: its summary, plus paired differences on the same episodes.

    ``reference``: one frame (the reference of every metric) or ``{metric: frame}`` (e.g. the posterior
    median for ``cond_tv``, the posterior mean for the rest) -> ``<metric>_excess`` rows.
    ``mirror``: the frame of the estimator this one mirrors -> ``<metric>_vs_mirror`` rows, the honest
    way to compare an estimator run on a subset of episodes with one run on all of them.
    """
    parts = [summarize(frame)]
    if isinstance(reference, pd.DataFrame):
        reference = {m: reference for m in EXCESS_OF}
    groups: dict[int, tuple[pd.DataFrame, list[str]]] = {}
    for metric, ref in (reference or {}).items():
        if ref is not None:
            groups.setdefault(id(ref), (ref, []))[1].append(metric)
    diffs = [excess(frame, ref, metrics) for ref, metrics in groups.values()]
    if mirror is not None:
        diffs.append(paired(frame, mirror, VS_MIRROR_OF, "_vs_mirror"))
    parts += [summarize(d) for d in diffs if len(d)]
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "context_len", context_len)
    out.insert(0, "estimator", estimator)
    out.insert(0, "seed", seed)
    out.insert(0, "graph", graph)
    return out[RESULT_COLUMNS]


def combine_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv rows of several seeds -> one row per (estimator, context_len, node, metric).

    One seed keeps its mean and SE over episodes; several give the mean of the
    per-seed means with the standard error across seeds. ``half95`` is the
    half-width of a 95% interval and ``interval`` names how it was made (see
    :func:`interval_half_width`).
    """
    keys = ["estimator", "context_len", "node", "metric"]
    n_seeds = results.groupby(keys, sort=False)["seed"].transform("nunique")
    single = results[n_seeds == 1][keys + ["mean", "sem", "n"]].assign(seeds=1)
    multi = results[n_seeds > 1]
    if multi.empty:
        return with_interval(single.reset_index(drop=True))
    g = multi.groupby(keys, sort=False)
    agg = g.agg(mean=("mean", "mean"), std=("mean", "std"), n=("n", "sum"), seeds=("seed", "nunique")).reset_index()
    agg["sem"] = agg["std"] / np.sqrt(agg["seeds"])
    return with_interval(pd.concat([single, agg.drop(columns="std")], ignore_index=True))


# ----- 95% intervals of combined rows ------------------------------------------------------

NORMAL_Z = 1.96  # one seed: thousands of episodes, so the normal quantile is the t quantile to 3 digits
INTERVAL_OVER_EPISODES = "normal over episodes"
INTERVAL_OVER_SEEDS = "t over seeds"


def interval_half_width(sem, seeds) -> np.ndarray:
    """Half-width of the 95% interval of a combined mean.

    One seed: 1.96 x the SE over episodes. S > 1 seeds: the per-seed means are
    S draws, so the Student t quantile with S - 1 degrees of freedom (12.71 for
    2 seeds, 4.30 for 3, 2.78 for 5) times their SE; a normal quantile would
    cover far less than 95% with so few draws.
    """
    from scipy.stats import t

    sem = np.asarray(sem, dtype=np.float64)
    seeds = np.asarray(seeds, dtype=np.int64)
    quantile = np.where(seeds > 1, t.ppf(0.975, np.maximum(seeds - 1, 1)), NORMAL_Z)
    return quantile * sem


def with_interval(combined: pd.DataFrame) -> pd.DataFrame:
    """``combined`` (columns mean, sem, seeds) plus half95, ci_low, ci_high and the interval's method."""
    out = combined.copy()
    out["half95"] = interval_half_width(out["sem"], out["seeds"])
    with np.errstate(invalid="ignore"):
        out["ci_low"] = out["mean"] - out["half95"]
        out["ci_high"] = out["mean"] + out["half95"]
    out["interval"] = np.where(out["seeds"] > 1, INTERVAL_OVER_SEEDS, INTERVAL_OVER_EPISODES)
    return out
