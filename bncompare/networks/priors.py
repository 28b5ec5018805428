"""Priors over CPTs: draw G CPT sets for one graph in one call.

- ``DirichletPrior(alpha)``: every CPT row ~ Dirichlet(alpha, ..., alpha)
  independently (Beta(alpha, alpha) for binary nodes). Under this prior the
  Bayes-optimal in-context predictor is the posterior mean (n_v + alpha) / (n + d alpha).
- ``UniformRangePrior(low, high)``: the paper's U[0.1, 0.9] rows. For a binary
  node the row is (p, 1 - p) with p ~ U[low, high]; for d > 2 states every entry
  is drawn from U[low, high] and the row is normalized.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from bncompare.errors import BNError
from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch


@dataclass(frozen=True)
class DirichletPrior:
    alpha: float = 1.0

    def __post_init__(self):
        if not self.alpha > 0:
            raise BNError(f"Dirichlet alpha must be > 0, got {self.alpha}")

    def sample(self, graph: Graph, n_sets: int, generator: torch.Generator | None = None) -> CPTBatch:
        out = []
        for q, d in zip(graph.n_configs, graph.cards):
            # Gamma(alpha) draws normalized per row = Dirichlet(alpha); torch's
            # Dirichlet has no generator argument, so draw the gammas ourselves.
            g = _standard_gamma(torch.full((n_sets, q, d), float(self.alpha), dtype=torch.float64), generator)
            out.append(g / g.sum(-1, keepdim=True))
        return out

    def describe(self) -> str:
        return f"Dirichlet({self.alpha:g}) rows"


@dataclass(frozen=True)
class UniformRangePrior:
    low: float = 0.1
    high: float = 0.9

    def __post_init__(self):
        if not 0 <= self.low < self.high <= 1:
            raise BNError(f"uniform-range prior needs 0 <= low < high <= 1, got [{self.low}, {self.high}]")

    def sample(self, graph: Graph, n_sets: int, generator: torch.Generator | None = None) -> CPTBatch:
        out = []
        for q, d in zip(graph.n_configs, graph.cards):
            u = self.low + (self.high - self.low) * torch.rand(n_sets, q, d if d > 2 else 1, generator=generator, dtype=torch.float64)
            out.append(torch.cat([u, 1 - u], -1) if d == 2 else u / u.sum(-1, keepdim=True))
        return out

    def describe(self) -> str:
        return f"U[{self.low:g}, {self.high:g}] rows"


def _standard_gamma(alpha: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(alpha, 1) samples with an explicit generator (Marsaglia-Tsang, boosted for alpha < 1)."""
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha)
    d = a - 1.0 / 3
    c = 1.0 / torch.sqrt(9 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    while todo.any():
        z = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out[take] = (d * v)[take]
        todo &= ~ok
    if boost.any():
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
        out = torch.where(boost, out * u.clamp_min(1e-300) ** (1.0 / alpha), out)
    return out.clamp_min(1e-300)


def make_prior(kind: str = "dirichlet", **kw):
    kinds = {"dirichlet": DirichletPrior, "uniform": UniformRangePrior}
    if kind not in kinds:
        raise BNError(f"unknown prior {kind!r}; choose one of {sorted(kinds)}")
    return kinds[kind](**kw)
