"""Vectorized counting estimators: B contexts x N rows in one call.

All of them count ``n[b, config, v]``, the number of rows of context ``b``
whose parents are in ``config`` and whose node takes value ``v`` (one bincount
per node over mixed-radix codes), then add pseudo-counts ``a``:

    p(v | config) = (n_v + a_v) / (n + sum a)

- ``MLE``: a = 0; an unseen configuration (n = 0) gets the uniform row, as in pgmpy.
- ``DirichletPosterior(alpha)``: a = alpha in every cell. The Bayes-optimal
  predictor when the CPT rows were drawn from Dirichlet(alpha).
- ``BDeu(ess)``: a = ess / (d * q) with q the node's number of parent configurations.
- ``K2``: a = 1.
- ``NaiveMLE``: ignores the graph; MLE of x_m given ALL earlier variables (the
  paper's graph-agnostic baseline), same uniform fallback.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, TableEstimator, Tags
from bncompare.networks.sampling import draw_categorical


def count_tables(graph, contexts: torch.Tensor) -> list[torch.Tensor]:
    """Counts of every node per context and parent configuration: list of (B, n_configs, d), float64.

    One bincount per node over the code (context, parent configuration, value).
    Columns are first copied into contiguous (B, N) planes: reading them out of
    the (B, N, M) tensor with a stride made counting several times slower.
    """
    B = contexts.shape[0]
    # int32 halves the memory traffic whenever every code fits in it.
    fits = B * max(q * d for q, d in zip(graph.n_configs, graph.cards)) < 2**31
    itype = torch.int32 if fits else torch.long
    planes = contexts.permute(2, 0, 1).to(itype).contiguous()  # (M, B, N)
    context_id = torch.arange(B, device=contexts.device, dtype=itype)[:, None]
    out = []
    for m in range(graph.n_nodes):
        q, d = graph.n_configs[m], graph.cards[m]
        code = planes[m] + context_id * (q * d)
        for p, s in zip(graph.parents[m], graph.strides[m]):
            code = code + planes[p] * (s * d)
        out.append(torch.bincount(code.reshape(-1), minlength=B * q * d).reshape(B, q, d).to(torch.float64))
    return out


def mle_rows(counts: torch.Tensor, card: int) -> torch.Tensor:
    """Counts (..., d) -> MLE rows; a row with no count (unseen parent configuration) is uniform, as in pgmpy."""
    total = counts.sum(-1, keepdim=True)
    return torch.where(total > 0, counts / total.clamp_min(1), torch.full_like(counts, 1.0 / card))


class CountingEstimator(TableEstimator):
    """Shared fit for the counting family; subclasses say what pseudo-count each cell gets."""

    def pseudo_count(self, graph, m: int) -> float:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        self.counts_, self.cpts_ = count_tables(graph, contexts), []
        for m, n in enumerate(self.counts_):
            a = self.pseudo_count(graph, m)
            if a > 0:
                self.cpts_.append((n + a) / (n.sum(-1, keepdim=True) + a * graph.cards[m]))
            else:
                self.cpts_.append(mle_rows(n, graph.cards[m]))
        return self

    def unseen(self, queries, nodes=None) -> list[torch.Tensor]:
        """For each node, a (B, Q) bool mask: the query's parent configuration never occurs in the context."""
        queries, nodes = self._check_queries(queries, nodes)
        queries = queries.to(self.counts_[0].device)
        batch = torch.arange(queries.shape[0], device=queries.device)[:, None]
        return [self.counts_[m][batch, self.graph_.config_index(queries, m)].sum(-1) == 0 for m in nodes]


class MLE(CountingEstimator):
    name = "mle"

    def pseudo_count(self, graph, m):
        return 0.0


def positive_alpha(alpha) -> float:
    """A Dirichlet pseudo-count, checked: > 0."""
    if not alpha > 0:
        raise BNError(f"Dirichlet pseudo-count alpha must be > 0, got {alpha}")
    return float(alpha)


class DirichletPosterior(CountingEstimator):
    """Posterior mean under symmetric Dirichlet(alpha) rows ("bayes" when alpha matches the prior)."""

    name = "dirichlet"
    tags = Tags(reference_for="KL (log loss) under Dirichlet(alpha) rows", optimal_under="dirichlet")

    def __init__(self, alpha: float = 1.0):
        self.alpha = positive_alpha(alpha)

    def pseudo_count(self, graph, m):
        return self.alpha

    def optimal_prior(self):
        return {"kind": "dirichlet", "params": {"alpha": self.alpha}}


class K2(DirichletPosterior):
    name = "k2"
    tags = Tags()  # Dirichlet(1) whatever the prior: a reference only by coincidence

    def __init__(self):
        super().__init__(1.0)

    def optimal_prior(self):
        return None


class BDeu(CountingEstimator):
    name = "bdeu"

    def __init__(self, ess: float = 1.0):
        if not ess > 0:
            raise BNError(f"BDeu equivalent sample size must be > 0, got {ess}")
        self.ess = float(ess)

    def pseudo_count(self, graph, m):
        return self.ess / (graph.cards[m] * graph.n_configs[m])


PREFIX_BLOCK = 1 << 24  # NaiveMLE compares about this many context-query-column entries per tensor op


class NaiveMLE(Estimator):
    """MLE of x_m given the whole prefix x_<m, found by matching rows (no tables: prefixes can be huge)."""

    name = "naive"
    tags = Tags(graph_agnostic=True)

    def fit(self, graph, contexts):
        self.contexts_ = self._start_fit(graph, contexts)
        return self

    def _predict_proba(self, queries, nodes):
        ctx = self.contexts_
        queries = queries.to(ctx.device)
        B, Q, M = queries.shape
        N = ctx.shape[1]
        match = torch.ones(B, Q, N, dtype=torch.float64, device=ctx.device)
        # the prefix columns between two requested nodes are compared a block at a time, not one by one:
        # generation asks one node per call, so a per-column loop made munin's generation ~M^2/2 tensor ops
        width = max(1, PREFIX_BLOCK // max(1, B * Q * N))
        out, done = {}, 0  # match covers the columns before ``done``
        for m in sorted(set(nodes)):
            for s in range(done, m, width):
                e = min(m, s + width)
                match = match * (ctx[:, None, :, s:e] == queries[:, :, None, s:e]).all(-1)
            done = m
            out[m] = self._rows_given(match, m)
        return [out[m] for m in nodes]

    def _rows_given(self, match: torch.Tensor, m: int) -> torch.Tensor:
        """MLE rows of node m from ``match`` (B, Q, N): which context rows agree with each query's prefix."""
        card = self.graph_.cards[m]
        onehot = torch.nn.functional.one_hot(self.contexts_[..., m].to(match.device), card).to(torch.float64)
        return mle_rows(match @ onehot, card)  # counts of matching rows per value

    def _generate(self, x, u):
        # Which context rows agree with each sample on the columns drawn so far, carried from node to node:
        # the per-node prediction compares the whole prefix again, O(M^2) columns per sample for M nodes.
        ctx = self.contexts_.to(x.device)
        match = torch.ones(x.shape[0], x.shape[1], ctx.shape[1], dtype=torch.float64, device=x.device)
        for m in range(self.graph_.n_nodes):
            x[..., m] = draw_categorical(self._rows_given(match, m).to(u.device), u[..., m])
            match = match * (ctx[:, None, :, m] == x[:, :, None, m])

    def unseen(self, queries, nodes=None) -> list[torch.Tensor]:
        queries, nodes = self._check_queries(queries, nodes)
        ctx = self.contexts_
        eq = ctx[:, None, :, :] == queries[:, :, None, :]
        return [~eq[..., :m].all(-1).any(-1) for m in nodes]
