"""The rows of a cell on a linear-Gaussian network (the :class:`~bncompare.studies.evaluate.MetricSet` of
``variables="gaussian"``). Every prediction is a Student-t ``(df, loc, scale)`` per query (df = inf: Normal).

Per episode and node (and ``all``, the mean over nodes), each a mean over the episode's queries:

- ``cond_kl``: KL(true conditional || prediction) at the query's parents, in nats (as for discrete networks);
- ``query_nll``: minus the log density of the query's value (nats per value), ``crps``: the continuous
  ranked probability score (in the variable's units);
- ``cover50`` / ``cover90``: the share of query values inside the central 50% / 90% predictive interval;
- ``param_err``: relative error of the fitted regression weights (estimators with a fitted network only).

Per cell (``episode = CELL``): the PIT histogram, ``pit_count@b`` for bins of width 1/PIT_BINS.
Joint: ``joint_kl``, KL(true joint Normal || the joint Normal of the fitted network), closed form.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bncompare.metrics import gaussian as gm
from bncompare.metrics.summary import CELL
from bncompare.networks.gaussian import LOC, SCALE, joint_gaussian, true_conditional
from bncompare.networks.graph import Graph
from bncompare.studies.frames import per_node, scalar

PIT_BINS = 10


def width(graph: Graph, m: int) -> int:
    return 3


def batch_rows(est, graph: Graph, batch, preds: list[torch.Tensor]) -> list[pd.DataFrame]:
    x, ids, names = batch.queries, batch.episodes, graph.names
    truth = [true_conditional(graph, batch.cpts, x, m) for m in range(graph.n_nodes)]
    kl = torch.stack([gm.kl_true_normal(t[..., LOC], t[..., SCALE], p) for t, p in zip(truth, preds)], -1)
    nll = torch.stack([-gm.log_density(p, x[..., m]) for m, p in enumerate(preds)], -1)  # (B, Q, M)
    crps = torch.stack([gm.crps(p, x[..., m]) for m, p in enumerate(preds)], -1)
    pit = torch.stack([gm.cdf(p, x[..., m]) for m, p in enumerate(preds)], -1)
    rows = [per_node(names, "cond_kl", ids, kl.mean(1), kl.mean((1, 2))),
            per_node(names, "query_nll", ids, nll.mean(1), nll.mean((1, 2))),
            per_node(names, "crps", ids, crps.mean(1), crps.mean((1, 2)))]
    for level in (50, 90):
        tail = (1 - level / 100) / 2
        inside = ((pit >= tail) & (pit <= 1 - tail)).to(torch.float64)
        rows.append(per_node(names, f"cover{level}", ids, inside.mean(1), inside.mean((1, 2))))
    return rows


def fit_rows(est, graph: Graph, part) -> list[pd.DataFrame]:
    """``param_err`` of the network just fitted on ``part``'s contexts (estimators that have one)."""
    network = est.network_
    if network is None:
        return []
    err = torch.stack([gm.param_err(t, e.to("cpu", torch.float64)) for t, e in zip(part.cpts, network)], -1)
    return [per_node(graph.names, "param_err", part.episodes, err, err.mean(1))]


def cell_sums(est, graph: Graph, batch, preds: list[torch.Tensor]) -> np.ndarray:
    """PIT counts per episode and node: (B, M, PIT_BINS)."""
    x = batch.queries
    pit = torch.stack([gm.cdf(p, x[..., m]) for m, p in enumerate(preds)], 1)  # (B, M, Q)
    bins = (pit * PIT_BINS).long().clamp(0, PIT_BINS - 1)
    return torch.nn.functional.one_hot(bins, PIT_BINS).sum(2).numpy().astype(np.float64)


def cell_rows(names, sums: np.ndarray) -> list[pd.DataFrame]:
    """The pooled PIT histogram of the cell, as shares of the query values (1/PIT_BINS each if calibrated)."""
    pooled = sums.sum((0, 1))
    share = pooled / pooled.sum() if pooled.sum() else np.full(PIT_BINS, np.nan)
    return [pd.DataFrame({"episode": CELL, "node": "all", "metric": [f"pit_share@{b}" for b in range(PIT_BINS)],
                          "value": share.astype(np.float64)})]


def agreement_rows(graph: Graph, batch, preds: list[torch.Tensor], other: list[torch.Tensor]) -> list[pd.DataFrame]:
    """How far two estimators' predictions are apart: mean |loc difference| per node (``agree_loc``), and the
    largest absolute difference of loc or scale (``agree_max_abs``)."""
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
    true_mean, true_cov = joint_gaussian(graph, batch.cpts)
    mean, cov = joint_gaussian(graph, [p.to("cpu", torch.float64) for p in network])
    return [scalar("joint_kl", batch.episodes, gm.joint_kl(true_mean, true_cov, mean, cov))]
