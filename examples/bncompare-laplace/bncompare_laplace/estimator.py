"""The Laplace-smoothed MLE: every count of a CPT row gets ``alpha`` added before normalizing.

    p(v | config) = (n_v + alpha) / (n + alpha * d)

``alpha = 1`` is Laplace's rule of succession; ``alpha -> 0`` approaches the MLE. It is written
against bncompare's public interface only (a ``TableEstimator`` fills ``cpts_``; predictions
are table look-ups), so it is what a third-party estimator looks like.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import TableEstimator, Tags


class LaplaceMLE(TableEstimator):
    name = "laplace"
    tags = Tags(family="counting")

    def __init__(self, alpha: float = 1.0):
        if not alpha > 0:
            raise BNError(f"laplace: alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)  # checks the data; sets graph_ and n_contexts_
        B = contexts.shape[0]
        batch = torch.arange(B)[:, None]
        self.cpts_ = []
        for m in range(graph.n_nodes):
            counts = torch.zeros(B, graph.n_configs[m], graph.cards[m], dtype=torch.float64)
            # one count per context row, at (its parent configuration, its value)
            counts.index_put_((batch.expand_as(contexts[..., m]), graph.config_index(contexts, m), contexts[..., m]),
                              torch.ones(contexts.shape[:2], dtype=torch.float64), accumulate=True)
            smoothed = counts + self.alpha
            self.cpts_.append(smoothed / smoothed.sum(-1, keepdim=True))
        return self
