"""The Bayes predictor that is not told the graph: an average over every parent set.

Under the random-DAG prior of the structure-agnostic transformer's training
tasks (:class:`~bncompare.networks.priors.RandomDAGPrior`: the node order is
known, edge u -> v appears with probability p, p ~ U[p_low, p_high] per DAG, at
most ``max_parents`` parents, the latest kept, Dirichlet(alpha) rows), the
posterior predictive of x_v given the query's earlier values is

    sum over p and parent sets S of v:  P(p | D) P(S | p, D) (n(x_v, x_S) + alpha) / (n(x_S) + alpha d_v)

- Given p, edges are independent, so each node's parent set is independent of
  the others' and P(S | p, D) is proportional to prior(S | p) times the
  Dirichlet-multinomial marginal likelihood of v's column given S.
- P(p | D) is proportional to the product over nodes of those sums. As a
  function of p it is a polynomial of degree at most M(M-1)/2, so Gauss-Legendre
  nodes integrate it exactly.
- One approximation, the usual one: the query's own earlier values are not used
  as evidence about the structure (they are one row among N).

This is the limit a structure-agnostic estimator trained on that prior can
reach. It enumerates parent sets, so it is for small graphs (a few thousand
candidate sets per node).
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, Tags

MAX_SETS = 4096  # candidate parent sets per node


def parent_sets(v: int, max_parents: int | None) -> list[tuple[int, ...]]:
    """Every parent set node v can have: subsets of 0..v-1 of size <= max_parents."""
    top = v if max_parents is None else min(v, max_parents)
    return [s for k in range(top + 1) for s in combinations(range(v), k)]


def set_prior_exponents(v: int, sets: list[tuple[int, ...]], max_parents: int | None) -> torch.Tensor:
    """(n_sets, 2): how many edges the set needs present and absent, so prior(S | p) = p^a (1 - p)^b.

    With the cap, a full set S is the parent set whenever its edges are drawn and no earlier node
    later than min(S) is: the nodes below min(S) may be drawn or not (the latest are kept)."""
    out = []
    for s in sets:
        if max_parents is not None and len(s) == max_parents and s:
            absent = sum(1 for u in range(s[0] + 1, v) if u not in s)
        else:
            absent = v - len(s)
        out.append((len(s), absent))
    return torch.tensor(out, dtype=torch.float64)


class StructureAveraging(Estimator):
    """Bayesian model averaging over the DAGs of a random-DAG prior (see the module docstring)."""

    name = "bayes_structures"
    tags = Tags(graph_agnostic=True,
                reference_for="KL (log loss) under the random-DAG prior with Dirichlet(alpha) rows")

    def __init__(self, p_low: float = 0.2, p_high: float = 1.0, max_parents: int | None = 4, alpha: float = 1.0):
        if not 0 <= p_low <= p_high <= 1:
            raise BNError(f"edge-probability range must satisfy 0 <= p_low <= p_high <= 1, got [{p_low}, {p_high}]")
        if max_parents is not None and int(max_parents) < 0:
            raise BNError(f"max_parents must be >= 0 or null, got {max_parents}")
        if not alpha > 0:
            raise BNError(f"alpha must be > 0, got {alpha}")
        self.p_low, self.p_high, self.alpha = float(p_low), float(p_high), float(alpha)
        self.max_parents = None if max_parents is None else int(max_parents)

    def _grid(self, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Points in [p_low, p_high] and log weights that integrate a polynomial of degree M(M-1)/2 exactly."""
        if self.p_low == self.p_high:
            return torch.tensor([self.p_low], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        n = (n_nodes * (n_nodes - 1) // 2 + 2) // 2  # n Gauss-Legendre points: exact up to degree 2n - 1
        x, w = np.polynomial.legendre.leggauss(n)
        half = (self.p_high - self.p_low) / 2
        return torch.as_tensor(self.p_low + half * (x + 1)), torch.as_tensor(np.log(w))

    def fit(self, graph, contexts):
        ctx = self._start_fit(graph, contexts)
        cards = graph.cards
        p, log_w = self._grid(graph.n_nodes)
        self.sets_, self.tables_, log_post_sets, log_evidence = [], [], [], log_w.to(ctx.device)[None]
        for v, d in enumerate(cards):
            sets = parent_sets(v, self.max_parents)
            if len(sets) > MAX_SETS:
                raise BNError(f"{self.name}: node {graph.names[v]} has {len(sets)} candidate parent sets (more "
                              f"than {MAX_SETS}); averaging over structures is for small graphs")
            a, b = set_prior_exponents(v, sets, self.max_parents).T
            log_prior = torch.special.xlogy(a, p[:, None]) + torch.special.xlogy(b, 1 - p[:, None])  # (G, S)
            tables, log_ml = [], []
            for s in sets:
                counts = self._counts(ctx, cards, s, v)  # (B, configs, d)
                tables.append(counts)
                log_ml.append(self._log_marginal(counts, d))
            joint = log_prior.to(ctx.device)[None] + torch.stack(log_ml, -1)[:, None]  # (B, G, S)
            z = torch.logsumexp(joint, -1)  # (B, G): log sum over S of prior(S | p) ML(S)
            log_post_sets.append(joint - z[..., None])
            log_evidence = log_evidence + z
            self.sets_.append(sets)
            self.tables_.append(tables)
        log_post_p = log_evidence - torch.logsumexp(log_evidence, -1, keepdim=True)  # (B, G)
        # P(S | D) per node: the set's posterior given p, averaged over P(p | D)
        self.set_weights_ = [torch.logsumexp(lp + log_post_p[..., None], 1).exp() for lp in log_post_sets]
        return self

    @staticmethod
    def _codes(x: torch.Tensor, cards, s: tuple[int, ...]) -> torch.Tensor:
        code = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
        for u in s:
            code = code * cards[u] + x[..., u]
        return code

    def _counts(self, ctx, cards, s, v) -> torch.Tensor:
        n_configs = math.prod(cards[u] for u in s)
        d = cards[v]
        flat = self._codes(ctx, cards, s) * d + ctx[..., v]  # (B, N)
        counts = torch.zeros(ctx.shape[0], n_configs * d, dtype=torch.float64, device=ctx.device)
        counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
        return counts.view(-1, n_configs, d)

    def _log_marginal(self, counts, d) -> torch.Tensor:
        """log of the Dirichlet-multinomial likelihood of the column given the set, (B,)."""
        a = self.alpha
        per_row = math.lgamma(a * d) - torch.lgamma(a * d + counts.sum(-1))
        per_value = (torch.lgamma(a + counts) - math.lgamma(a)).sum(-1)
        return (per_row + per_value).sum(-1)

    def _predict_proba(self, queries, nodes):
        queries = queries.to(self.set_weights_[0].device)
        batch = torch.arange(queries.shape[0], device=queries.device)[:, None]
        out = []
        for v in nodes:
            pred = 0
            for j, s in enumerate(self.sets_[v]):
                counts = self.tables_[v][j][batch, self._codes(queries, self.graph_.cards, s)]  # (B, Q, d)
                rows = (counts + self.alpha) / (counts.sum(-1, keepdim=True) + self.alpha * counts.shape[-1])
                pred = pred + self.set_weights_[v][:, j, None, None] * rows
            out.append(pred)
        return out
