"""Turn continuous columns into a few ordered levels (0 = lowest values).

Two methods, both deterministic:

- ``quantile``: each column on its own, cut at its empirical quantiles
  1/L, 2/L, ... (tertiles for L = 3). Levels hold about the same number of rows;
  tied values always share a level, so heavy ties can unbalance them a little.
- ``hartemink``: information-preserving discretization (A. Hartemink, PhD
  thesis, MIT 2001). Start from a fine quantile discretization of every column
  (``n_initial`` levels), then shrink all columns together: in each pass, every
  column that still has more than L levels merges the ONE pair of adjacent levels
  whose merge loses the least total pairwise mutual information with all the
  other columns (at their current levels). Passes repeat until every column has
  L levels. The result keeps the dependencies between columns, which is what a
  Bayesian network is meant to model, instead of each column's marginal shape.

Mutual information here is the plug-in estimate in nats. Merging levels a and
a+1 of column j changes only their rows of j's joint tables, so each candidate
merge is scored in closed form from counts (no re-counting of the data):
with h(s, t) = (s+t) log(s+t) - s log s - t log t >= 0,

    loss(a) = (p - 1) * h(P_j[a], P_j[a+1]) - sum_{k != j} sum_y h(P_jk[a, y], P_jk[a+1, y]).

Cost, measured on the Sachs table (7466 rows x 11 columns, 2-core CPU, wall
clock of ``discretize``): n_initial = 30 (default) ~0.05 s, 60 ~0.2 s, 100 ~1 s.
On Sachs the default keeps 6.03 nats of total pairwise MI, against 2.23 for
quantile tertiles and 1.3-3.3 for random groupings of the same 30 fine levels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import xlogy

from bncompare.errors import BNError

METHODS = ("quantile", "hartemink")


def discretize(df: pd.DataFrame, method: str = "quantile", n_levels: int = 3, n_initial: int = 30) -> pd.DataFrame:
    """Codes 0..n_levels-1 (int64) for every column of ``df``, same index and columns.

    ``method="quantile"`` cuts each column at its quantiles k / n_levels.
    ``method="hartemink"`` starts from ``n_initial`` quantile levels per column and
    greedily merges adjacent levels, keeping as much total pairwise mutual
    information between columns as it can (see the module docstring).
    """
    if method not in METHODS:
        raise BNError(f"unknown discretization method {method!r}; choose one of {list(METHODS)}")
    if int(n_levels) != n_levels or n_levels < 2:
        raise BNError(f"n_levels must be an integer >= 2, got {n_levels}")
    x = _numeric(df)
    if method == "quantile":
        codes = np.stack([quantile_codes(x[:, j], n_levels) for j in range(x.shape[1])], axis=1)
    else:
        if n_initial < n_levels:
            raise BNError(f"hartemink needs n_initial >= n_levels, got {n_initial} < {n_levels}")
        codes = hartemink_codes(x, n_levels, n_initial)
    for j, col in enumerate(df.columns):
        got = int(codes[:, j].max()) + 1
        if got != n_levels:
            raise BNError(f"column {col!r} has too many tied values for {n_levels} levels (got {got})")
    return pd.DataFrame(codes.astype(np.int64), index=df.index, columns=df.columns)


def _numeric(df: pd.DataFrame) -> np.ndarray:
    if not isinstance(df, pd.DataFrame) or df.shape[1] == 0 or len(df) == 0:
        raise BNError("discretize needs a non-empty pandas DataFrame")
    try:
        x = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise BNError("discretize needs numeric columns only") from None
    if not np.isfinite(x).all():
        bad = df.columns[~np.isfinite(x).all(axis=0)][0]
        raise BNError(f"column {bad!r} has NaN or infinite values")
    return x


def quantile_codes(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Level of each value: bins (t_{k-1}, t_k] at the quantiles k / n_levels; empty bins dropped."""
    cuts = np.unique(np.quantile(x, np.arange(1, n_levels) / n_levels))
    codes = np.searchsorted(cuts, x, side="left")
    # Ties can leave a bin empty (several equal cut points): renumber 0..L'-1.
    return np.unique(codes, return_inverse=True)[1].reshape(-1)


def _h(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Gain in sum of u log u when two cells s and t are pooled; >= 0."""
    return xlogy(s + t, s + t) - xlogy(s, s) - xlogy(t, t)


def hartemink_codes(x: np.ndarray, n_levels: int, n_initial: int = 30) -> np.ndarray:
    """Hartemink's greedy merging, on an (n, p) float array; returns (n, p) int codes."""
    n, p = x.shape
    codes = np.stack([quantile_codes(x[:, j], n_initial) for j in range(p)], axis=1)
    cards = [int(codes[:, j].max()) + 1 for j in range(p)]
    if p < 2:  # no other column to keep information with: plain quantiles
        return np.stack([quantile_codes(x[:, j], n_levels) for j in range(p)], axis=1)
    # joint[j][k]: (cards[j], cards[k]) probabilities, kept for both orientations.
    joint = [[None] * p for _ in range(p)]
    for j in range(p):
        for k in range(j + 1, p):
            c = np.bincount(codes[:, j] * cards[k] + codes[:, k], minlength=cards[j] * cards[k])
            joint[j][k] = c.reshape(cards[j], cards[k]) / n
            joint[k][j] = joint[j][k].T
    while max(cards) > n_levels:
        for j in range(p):
            if cards[j] <= n_levels:
                continue
            others = np.concatenate([joint[j][k] for k in range(p) if k != j], axis=1)
            marg = joint[j][(j + 1) % p].sum(axis=1)
            loss = (p - 1) * _h(marg[:-1], marg[1:]) - _h(others[:-1], others[1:]).sum(axis=1)
            a = int(np.argmin(loss))
            for k in range(p):
                if k != j:
                    t = joint[j][k]
                    t = np.concatenate([t[:a], t[a:a + 2].sum(axis=0, keepdims=True), t[a + 2:]], axis=0)
                    joint[j][k], joint[k][j] = t, t.T
            col = codes[:, j]
            col[col > a] -= 1  # level a+1 joins a; higher levels move down by one
            cards[j] -= 1
    return codes


def pairwise_mi(codes) -> np.ndarray:
    """Plug-in mutual information (nats) between every pair of integer-coded columns, (p, p)."""
    c = np.asarray(codes, dtype=np.int64)
    n, p = c.shape
    cards = c.max(axis=0) + 1
    out = np.zeros((p, p))
    for j in range(p):
        for k in range(j + 1, p):
            t = np.bincount(c[:, j] * cards[k] + c[:, k], minlength=cards[j] * cards[k]).reshape(cards[j], cards[k]) / n
            pj, pk = t.sum(1), t.sum(0)
            out[j, k] = out[k, j] = xlogy(t, t).sum() - xlogy(pj, pj).sum() - xlogy(pk, pk).sum()
    return out


def total_pairwise_mi(codes) -> float:
    """Sum of the mutual information over all unordered column pairs (nats)."""
    return float(np.triu(pairwise_mi(codes), 1).sum())
