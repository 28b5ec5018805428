"""The rows of a cell on a linear-Gaussian network (the :class:`~bncompare.studies.evaluate.MetricSet` of
``variables="gaussian"``). Every prediction is a Student-t ``(df, loc, scale)`` per query (df = inf: Normal).

Per episode and node (and ``all``, the mean over nodes), each a mean over the episode's queries:

- ``cond_kl``: KL(true conditional || prediction) at the query's parents, in nats (as for discrete networks);
- ``query_nll``: minus the log density of the query's value (nats per value), ``crps``: the continuous
  ranked probability score (in the variable's units);
- ``cover50`` / ``cover90``: the share of query values inside the central 50% / 90% predictive interval;
- ``param_err``: relative error of the fitted intercept and weights, ||beta_hat - beta|| / ||beta||, per node
  and (node ``all``) of all nodes' coefficients as one vector (estimators with a fitted network only);
- ``cond_kl_inf_frac`` / ``query_nll_inf_frac``: the share of queries where they are infinite.

A prediction whose scale is at or below the estimator's declared floor (``zero_below_``, tags
``floors_are_zeros``: least squares with zero residuals, N <= parents + 1) is the rule's point mass, and is
scored as one: infinite KL and log-loss, CRPS the absolute error of loc, PIT 0 or 1. So the MLE's answer at small N is
infinitely wrong, as it is for discrete networks, instead of finite only because of the floor.

Per cell (``episode = CELL``): the PIT histogram, ``pit_count@b`` for bins of width 1/PIT_BINS.
Joint: ``joint_kl``, KL(true joint Normal || the joint Normal of the fitted network), closed form by the
chain rule on the shared DAG (:func:`bncompare.metrics.gaussian.network_kl`); infinite when a fitted node
is a point mass.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bncompare.metrics import gaussian as gm
from bncompare.metrics.summary import CELL
from bncompare.networks.gaussian import LOC, SCALE, true_conditional
from bncompare.networks.graph import Graph
from bncompare.studies.frames import per_node, scalar

PIT_BINS = 10


def width(graph: Graph, m: int) -> int:
    return 3


def _point_mass(pred: torch.Tensor, zero_below: float) -> torch.Tensor:
    """Where the prediction is the rule's point mass: its scale is at or below the declared floor."""
    return pred[..., SCALE] <= zero_below if zero_below > 0 else torch.zeros(pred.shape[:-1], dtype=torch.bool)


def _pit(pred: torch.Tensor, x: torch.Tensor, zero_below: float) -> torch.Tensor:
    """F(x) under each prediction (a point mass: 0 below its location, 1 from it on)."""
    point = _point_mass(pred, zero_below)
    return torch.where(point, (x >= pred[..., LOC]).to(torch.float64), gm.cdf(pred, x))


def _scores(pred: torch.Tensor, x: torch.Tensor, true_loc, true_scale, zero_below: float):
    """(KL, log-loss, CRPS, PIT) of one node's predictions, point masses scored as such."""
    kl, nll, crps = gm.kl_true_normal(true_loc, true_scale, pred), -gm.log_density(pred, x), gm.crps(pred, x)
    point = _point_mass(pred, zero_below)
    if point.any():
        loc = pred[..., LOC]
        kl, nll = kl.masked_fill(point, float("inf")), nll.masked_fill(point & (x != loc), float("inf"))
        crps = torch.where(point, (x - loc).abs(), crps)
    return kl, nll, crps, _pit(pred, x, zero_below)


def batch_rows(est, graph: Graph, batch, preds: list[torch.Tensor]) -> list[pd.DataFrame]:
    x, ids, names = batch.queries, batch.episodes, graph.names
    truth = [true_conditional(graph, batch.cpts, x, m) for m in range(graph.n_nodes)]
    scored = [_scores(p, x[..., m], t[..., LOC], t[..., SCALE], est.zero_below_)
              for m, (t, p) in enumerate(zip(truth, preds))]
    kl, nll, crps, pit = (torch.stack(part, -1) for part in zip(*scored))  # (B, Q, M) each
    kl_inf, nll_inf = torch.isinf(kl).to(torch.float64), torch.isinf(nll).to(torch.float64)
    # an infinite value anywhere makes the episode's mean infinite: reported, not clipped
    rows = [per_node(names, "cond_kl", ids, kl.mean(1), kl.mean((1, 2))),
            per_node(names, "cond_kl_inf_frac", ids, kl_inf.mean(1), kl_inf.mean((1, 2))),
            per_node(names, "query_nll", ids, nll.mean(1), nll.mean((1, 2))),
            per_node(names, "query_nll_inf_frac", ids, nll_inf.mean(1), nll_inf.mean((1, 2))),
            per_node(names, "crps", ids, crps.mean(1), crps.mean((1, 2)))]
    for level in (50, 90):
        inside = gm.central_coverage(pit, level / 100).to(torch.float64)
        rows.append(per_node(names, f"cover{level}", ids, inside.mean(1), inside.mean((1, 2))))
    return rows


def fit_rows(est, graph: Graph, part) -> list[pd.DataFrame]:
    """``param_err`` of the network just fitted on ``part``'s contexts (estimators that have one)."""
    network = est.network_
    if network is None:
        return []
    fitted = [p.to("cpu", torch.float64) for p in network]
    err = gm.param_err(part.cpts, fitted)  # (B, M)
    # the network's: all intercepts and weights as one vector (a node whose true beta is near 0 would
    # dominate a mean of the nodes' ratios)
    gap = sum(((f[:, :-1] - t[:, :-1]) ** 2).sum(-1) for t, f in zip(part.cpts, fitted))
    size = sum((t[:, :-1] ** 2).sum(-1) for t in part.cpts)
    return [per_node(graph.names, "param_err", part.episodes, err, torch.sqrt(gap / size))]


def cell_sums(est, graph: Graph, batch, preds: list[torch.Tensor]) -> np.ndarray:
    """PIT counts per episode and node: (B, M, PIT_BINS)."""
    x, zero = batch.queries, est.zero_below_
    pit = [_pit(p, x[..., m], zero) for m, p in enumerate(preds)]
    return np.array([[gm.pit_histogram(v[b], PIT_BINS).numpy() for v in pit] for b in range(x.shape[0])],
                    dtype=np.float64)


def cell_rows(names, sums: np.ndarray) -> list[pd.DataFrame]:
    """The pooled PIT histogram of the cell, as shares of the query values (1/PIT_BINS each if calibrated)."""
    pooled = sums.sum((0, 1))
    share = pooled / pooled.sum() if pooled.sum() else np.full(PIT_BINS, np.nan)
    return [pd.DataFrame({"episode": CELL, "node": "all", "metric": [f"pit_share@{b}" for b in range(PIT_BINS)],
                          "value": share.astype(np.float64)})]


def agreement_rows(graph: Graph, batch, preds: list[torch.Tensor], other: list[torch.Tensor]) -> list[pd.DataFrame]:
    """How far two estimators' predictions are apart: the mean absolute difference of loc per node
    (``agree_loc``), and the largest absolute difference of loc or scale (``agree_max_abs``)."""
    gap = torch.stack([(p[..., LOC] - o[..., LOC]).abs() for p, o in zip(preds, other)], -1)  # (B, Q, M)
    worst = torch.stack([(p[..., LOC:] - o[..., LOC:]).abs().amax((1, 2)) for p, o in zip(preds, other)],
                        -1).amax(-1)
    return [per_node(graph.names, "agree_loc", batch.episodes, gap.mean(1), gap.mean((1, 2))),
            scalar("agree_max_abs", batch.episodes, worst)]


def fidelity_rows(est, graph: Graph, spec, batch, context_len: int) -> list[pd.DataFrame]:
    """``joint_kl`` of the fitted network's joint Normal (estimators without a fitted network: none)."""
    network = est.network_
    if network is None:
        return []
    fitted = [p.to("cpu", torch.float64) for p in network]
    kl = gm.network_kl(graph, batch.cpts, fitted)
    if est.zero_below_ > 0:  # a node at the declared sigma floor is a point mass: its joint is degenerate
        point = torch.stack([p[:, -1] <= est.zero_below_ for p in fitted], -1).any(-1)
        kl = kl.masked_fill(point, float("inf"))
    return [scalar("joint_kl", batch.episodes, kl)]
