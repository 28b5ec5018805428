"""The rows of a cell on an autoregressive process (the :class:`~bncompare.studies.evaluate.MetricSet` of
``variables="autoregressive"``). A cell at context length t shows each estimator the prefix s_1..s_t of every
episode's sequence; its prediction of each coordinate of s_(t+1) is a ``(df, loc, scale)`` triple.

Per episode:

- ``next_err``: the squared error of the predicted next state, ||loc - s_(t+1)||^2 (node ``all``: the sum
  over coordinates; node ``s<m>``: coordinate m's);
- ``next_rel_err``: the same over ||s_(t+1)||^2 (node ``all`` only), comparable across sequences whose
  states grow (gaussian law);
- ``W_err``: ||W_hat - W||_F of the fitted transition (estimators that have one, ``transition_``);
- with noise (sigma > 0), for estimators that predict a distribution (not ``tags.point_forecast``):
  ``query_nll`` (minus the log density of s_(t+1), nats per coordinate), ``cond_kl`` (KL of the true
  conditional N(W s_t, sigma^2) from the prediction, per coordinate) and their ``_inf_frac``. A scale at or
  below the estimator's declared floor (``zero_below_``) is the rule's point mass: infinite there.

Agreement with a mirrored estimator: ``agree_loc`` (mean absolute difference of the forecasts) and
``agree_max_abs`` (the largest). Nothing is pooled over the cell and there are no joint measures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bncompare.metrics import gaussian as gm
from bncompare.networks.autoregressive import noise_sd, transition
from bncompare.networks.gaussian import LOC, SCALE
from bncompare.networks.graph import Graph
from bncompare.studies.frames import per_node, scalar


def width(graph: Graph, m: int) -> int:
    return 3


def _density_rows(est, graph: Graph, batch, preds: list[torch.Tensor]) -> list[pd.DataFrame]:
    """Log-loss and KL of a predictive distribution, per coordinate (noise only: without it the truth is a point)."""
    x, ids = batch.queries, batch.episodes
    sigma = noise_sd(batch.cpts)
    mean = torch.einsum("bij,bj->bi", transition(batch.cpts), batch.contexts[:, -1])  # (B, d): W s_t
    pred = torch.stack(preds, 2)  # (B, Q, d, 3)
    true_loc, true_scale = mean[:, None].expand(x.shape), sigma[:, None, None].expand(x.shape)
    kl, nll = gm.kl_true_normal(true_loc, true_scale, pred), -gm.log_density(pred, x)
    if est.zero_below_ > 0:
        point = pred[..., SCALE] <= est.zero_below_
        kl = kl.masked_fill(point, float("inf"))
        nll = nll.masked_fill(point & (x != pred[..., LOC]), float("inf"))
    kl_inf, nll_inf = torch.isinf(kl).to(torch.float64), torch.isinf(nll).to(torch.float64)
    names = graph.names
    return [per_node(names, "query_nll", ids, nll.mean(1), nll.mean((1, 2))),
            per_node(names, "query_nll_inf_frac", ids, nll_inf.mean(1), nll_inf.mean((1, 2))),
            per_node(names, "cond_kl", ids, kl.mean(1), kl.mean((1, 2))),
            per_node(names, "cond_kl_inf_frac", ids, kl_inf.mean(1), kl_inf.mean((1, 2)))]


def batch_rows(est, graph: Graph, batch, preds: list[torch.Tensor]) -> list[pd.DataFrame]:
    x, ids = batch.queries, batch.episodes  # (B, 1, d): the next state
    loc = torch.stack([p[..., LOC] for p in preds], -1)  # (B, Q, d)
    sq = (loc - x) ** 2
    rows = [per_node(graph.names, "next_err", ids, sq.mean(1), sq.sum(-1).mean(1)),
            scalar("next_rel_err", ids, (sq.sum(-1) / (x**2).sum(-1)).mean(1))]
    if not est.tags.point_forecast and bool((noise_sd(batch.cpts) > 0).all()):
        rows += _density_rows(est, graph, batch, preds)
    return rows


def fit_rows(est, graph: Graph, part) -> list[pd.DataFrame]:
    """``W_err`` of the transition just fitted on ``part``'s prefixes (estimators that have one)."""
    fitted = est.transition_
    if fitted is None:
        return []
    gap = fitted.to("cpu", torch.float64) - transition(part.cpts)
    return [scalar("W_err", part.episodes, torch.linalg.matrix_norm(gap))]


def cell_sums(est, graph: Graph, batch, preds) -> np.ndarray:
    return np.zeros((batch.size, 0))  # nothing is pooled over a cell


def cell_rows(names, sums: np.ndarray) -> list[pd.DataFrame]:
    return []


def agreement_rows(graph: Graph, batch, preds: list[torch.Tensor], other: list[torch.Tensor]) -> list[pd.DataFrame]:
    """How far two estimators' forecasts are apart: mean absolute difference per coordinate, and the largest."""
    gap = torch.stack([(p[..., LOC] - o[..., LOC]).abs() for p, o in zip(preds, other)], -1)  # (B, Q, d)
    return [per_node(graph.names, "agree_loc", batch.episodes, gap.mean(1), gap.mean((1, 2))),
            scalar("agree_max_abs", batch.episodes, gap.amax((1, 2)))]


def fidelity_rows(est, graph: Graph, spec, batch, context_len: int) -> list[pd.DataFrame]:
    return []  # a prefix's measures are those of its next state (graph=autoregressive sets fidelity.episodes: 0)
