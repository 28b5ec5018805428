"""Proper scores of a predicted distribution against the value that occurred, and calibration.

``q`` is the estimate ``(..., d)`` and ``x`` the observed value ``(...)`` (long),
e.g. each node's prediction at a query row and that row's own value.

- ``log_loss(q, x) = -log q[x]`` in nats (natural log). ``q[x] = 0`` gives ``+inf``:
  the estimator ruled out what happened. Kept, never clipped; summaries report the
  share. Its expectation under the truth p is H(p) + KL(p || q).
- ``brier(q, x) = sum_k (q_k - [x = k])^2`` in [0, 2]: the multi-class Brier score.

Both are proper: in expectation they are minimized by the true distribution, and
under a prior by the posterior predictive (for CPT rows: the posterior mean).

Calibration is classwise: every predicted probability ``q_k`` is a forecast of the
event ``x = k``. Forecasts are binned by value (``BINS`` equal bins on [0, 1]);
a bin's mean forecast against the observed frequency of its events is the
reliability diagram, and the expected calibration error is
``ECE = sum_b (n_b / n) |mean forecast_b - frequency_b|``. ECE is a statistic of a
whole cell (pooled over its episodes), not a mean of per-episode values, so its
standard error comes from a bootstrap over episodes (:func:`ece_with_se`).
"""
from __future__ import annotations

import numpy as np
import torch

BINS = 10


def observed_prob(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``q[..., x]``: the probability the estimate gave the value that occurred."""
    return q.gather(-1, x.unsqueeze(-1).to(torch.long)).squeeze(-1)


def log_loss(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log q[x]`` in nats, ``+inf`` where ``q[x] = 0``."""
    return -torch.log(observed_prob(q.to(torch.float64), x))


def brier(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_k (q_k - [x = k])^2``: 0 for a sure right answer, 2 for a sure wrong one."""
    q = q.to(torch.float64)
    onehot = torch.nn.functional.one_hot(x.to(torch.long), q.shape[-1]).to(torch.float64)
    return ((q - onehot) ** 2).sum(-1)


def calibration_sums(q: torch.Tensor, x: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Per leading index: (count, sum of forecasts, sum of outcomes) in each bin -> ``(B, 3, bins)``.

    ``q`` is ``(B, Q, d)`` and ``x`` ``(B, Q)``: every ``q[b, i, k]`` is one forecast of ``x[b, i] = k``.
    """
    q = q.to(torch.float64)
    B, d = q.shape[0], q.shape[-1]
    hit = torch.nn.functional.one_hot(x.to(torch.long), d).to(torch.float64).reshape(B, -1)
    q = q.reshape(B, -1)
    index = (q * bins).long().clamp(0, bins - 1)  # a forecast of exactly 1 goes to the last bin
    out = torch.zeros(B, 3, bins, dtype=torch.float64)
    out[:, 0].scatter_add_(1, index, torch.ones_like(q))
    out[:, 1].scatter_add_(1, index, q)
    out[:, 2].scatter_add_(1, index, hit)
    return out


def ece(sums: np.ndarray) -> np.ndarray:
    """ECE of pooled bin sums ``(..., 3, bins)`` -> ``(...)``."""
    count, pred, hit = sums[..., 0, :], sums[..., 1, :], sums[..., 2, :]
    total = count.sum(-1)
    gap = np.abs(pred - hit)  # n_b * |mean forecast - frequency| = |sum forecasts - sum outcomes|
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, gap.sum(-1) / total, np.nan)


def ece_with_se(per_episode: np.ndarray, replicates: int = 200, seed: int = 0) -> tuple[float, float]:
    """ECE of the pooled episodes ``(B, 3, bins)`` and its bootstrap standard error over episodes.

    The resampling generator is fixed, so the same episodes always give the same figures.
    """
    B = per_episode.shape[0]
    value = float(ece(per_episode.sum(0)))
    if B < 2:
        return value, float("nan")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(B, np.full(B, 1.0 / B), size=replicates).astype(np.float64)  # (R, B)
    pooled = np.einsum("rb,bkn->rkn", weights, per_episode)
    return value, float(np.std(ece(pooled), ddof=1))
