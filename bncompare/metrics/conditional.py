"""Distances between predictive distributions, one per query.

``p`` is the TRUE distribution and ``q`` the estimate, both ``(..., d)``.

- ``tv(p, q) = 1/2 sum |p - q|`` in [0, 1].
- ``kl(p, q) = sum p log(p / q)`` in nats. Terms with ``p = 0`` count 0; a value
  with ``p > 0`` and ``q = 0`` makes the KL ``+inf``. That is the honest answer
  for an estimator that rules out a possible value (MLE does at small N), so it
  is never clipped here; summaries say how often it happens.
"""
from __future__ import annotations

import torch

from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch


def tv(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p - q).abs().sum(-1)


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    p, q = p.to(torch.float64), q.to(torch.float64)
    pos = p > 0
    # log(p/q) only where p > 0: q = 0 there gives +inf, p = 0 terms are exactly 0.
    terms = torch.where(pos, p * (torch.log(p.where(pos, 1.0)) - torch.log(q.where(pos, 1.0))), 0.0)
    return terms.sum(-1)


def true_rows(graph: Graph, cpts: CPTBatch, x: torch.Tensor, m: int) -> torch.Tensor:
    """True conditional of node ``m`` at each sample's parent configuration: (B, Q, d_m)."""
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    return cpts[m].to(x.device)[batch, graph.config_index(x, m)]


def conditional_errors(graph: Graph, cpts: CPTBatch, queries: torch.Tensor, probs: list[torch.Tensor],
                       nodes=None) -> dict[str, torch.Tensor]:
    """Per-query TV and KL of each node's prediction against the truth.

    Returns ``{"cond_tv": (B, Q, T), "cond_kl": (B, Q, T)}`` for the T requested nodes.
    """
    nodes = list(range(graph.n_nodes)) if nodes is None else list(nodes)
    tvs, kls = [], []
    for j, m in enumerate(nodes):
        p = true_rows(graph, cpts, queries, m)
        q = probs[j].to(p.device, torch.float64)
        tvs.append(tv(p, q))
        kls.append(kl(p, q))
    return {"cond_tv": torch.stack(tvs, -1), "cond_kl": torch.stack(kls, -1)}


def unseen_mask(graph: Graph, contexts: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(B, Q, M) bool: the query's TRUE parent configuration of node m never occurs in the context.

    A property of the data, not of any estimator (roots are never unseen once N >= 1).
    """
    B = contexts.shape[0]
    batch = torch.arange(B, device=contexts.device)[:, None]
    out = []
    for m in range(graph.n_nodes):
        q = graph.n_configs[m]
        seen = torch.zeros(B, q, dtype=torch.bool, device=contexts.device)
        if contexts.shape[1]:
            seen[batch, graph.config_index(contexts, m)] = True
        out.append(~seen[batch, graph.config_index(queries, m)])
    return torch.stack(out, -1)
