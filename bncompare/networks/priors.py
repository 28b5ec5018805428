"""Priors over CPTs: draw G CPT sets for one graph in one call.

- ``DirichletPrior(alpha)``: every CPT row ~ Dirichlet(alpha, ..., alpha)
  independently (Beta(alpha, alpha) for binary nodes). Under this prior the
  Bayes-optimal in-context predictor is the posterior mean (n_v + alpha) / (n + d alpha).
- ``UniformRangePrior(low, high)``: the paper's U[0.1, 0.9] rows. For a binary
  node the row is (p, 1 - p) with p ~ U[low, high]; for d > 2 states every entry
  is drawn from U[low, high] and the row is normalized.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from bncompare.errors import BNError
from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch


@dataclass(frozen=True)
class DirichletPrior:
    variables = "discrete"  # the kind of network it draws parameters for (Graph.variables)
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

    @property
    def dirichlet_alpha(self) -> float:
        """Every CPT row ~ Dirichlet(alpha): the posterior mean with this alpha is Bayes-optimal (log loss)."""
        return float(self.alpha)

    def describe(self) -> str:
        return f"Dirichlet({self.alpha:g}) rows"


@dataclass(frozen=True)
class UniformRangePrior:
    variables = "discrete"
    dirichlet_alpha = None  # not a Dirichlet prior: no closed-form Bayes predictor
    low: float = 0.1
    high: float = 0.9

    def __post_init__(self):
        if not 0 <= self.low < self.high <= 1:
            raise BNError(f"uniform-range prior needs 0 <= low < high <= 1, got [{self.low}, {self.high}]")

    def sample(self, graph: Graph, n_sets: int, generator: torch.Generator | None = None) -> CPTBatch:
        out = []
        for q, d in zip(graph.n_configs, graph.cards):
            u = torch.rand(n_sets, q, d if d > 2 else 1, generator=generator, dtype=torch.float64)
            u = self.low + (self.high - self.low) * u
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


@dataclass(frozen=True)
class NIGPrior:
    """The conjugate Normal-inverse-gamma prior of a linear-Gaussian node, independently per node.

    sigma^2 ~ InvGamma(a, b); given sigma^2, (intercept, weights) ~ N(mean, sigma^2 / precision * I).
    Under it the exact posterior predictive of each node is a Student-t
    (:class:`bncompare.estimators.gaussian.NIGPosterior`): the log-loss and KL reference.
    """

    variables = "gaussian"
    dirichlet_alpha = None  # not a CPT prior
    mean: float = 0.0
    precision: float = 1.0
    a: float = 3.0
    b: float = 2.0

    def __post_init__(self):
        for name in ("precision", "a", "b"):
            if not getattr(self, name) > 0:
                raise BNError(f"NIG prior {name} must be > 0, got {getattr(self, name)}")

    def sample(self, graph: Graph, n_sets: int, generator: torch.Generator | None = None) -> list:
        """G parameter sets (a parameter batch, :mod:`bncompare.networks.gaussian`)."""
        if graph.variables != "gaussian":
            raise BNError(f"prior nig draws linear-Gaussian parameters; the graph's variables are {graph.variables}")
        out = []
        for pa in graph.parents:
            g = _standard_gamma(torch.full((n_sets,), float(self.a), dtype=torch.float64), generator)
            s2 = self.b / g  # InvGamma(a, b): b / Gamma(a, 1)
            z = torch.randn(n_sets, len(pa) + 1, generator=generator, dtype=torch.float64)
            beta = self.mean + z * torch.sqrt(s2 / self.precision)[:, None]
            out.append(torch.cat([beta, torch.sqrt(s2)[:, None]], -1))
        return out

    def describe(self) -> str:
        return (f"NIG(mean {self.mean:g}, precision {self.precision:g}, sigma^2 ~ InvGamma({self.a:g}, {self.b:g}))"
                " per node")


def prior_class(kind: str):
    """The prior class of ``kind`` (its class attribute ``variables`` says what networks it draws for)."""
    from bncompare.networks.autoregressive import ARPrior

    kinds = {"dirichlet": DirichletPrior, "uniform": UniformRangePrior, "random_dag": RandomDAGPrior,
             "nig": NIGPrior, "autoregressive": ARPrior}
    if kind not in kinds:
        raise BNError(f"unknown prior {kind!r}; choose one of {sorted(kinds)}")
    return kinds[kind]


def make_prior(kind: str = "dirichlet", **kw):
    kinds = {kind: prior_class(kind)}
    if kind not in kinds:
        raise BNError(f"unknown prior {kind!r}; choose one of {sorted(kinds)}")
    allowed = sorted(f.name for f in fields(kinds[kind]))
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise BNError(f"prior {kind!r}: unknown parameters {unknown}; allowed: {allowed}")
    for name, value in kw.items():
        if value is None and name in ("max_parents", "spectral_radius"):
            continue
        if name in ("law", "start"):  # the autoregressive prior's choices: ARPrior checks them
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BNError(f"prior parameter {name} must be a finite number, got {value!r}")
    return kinds[kind](**kw)


@dataclass(frozen=True)
class RandomDAGPrior:
    """A fresh Erdos-Renyi DAG AND fresh Dirichlet(alpha) CPTs for every task.

    Used to train a transformer that is never told the graph. All tasks share
    the node order and cardinalities, so their CPTs are written on the COMPLETE
    graph of that size (node m's "parents" = every earlier node): a row for a
    full prefix configuration copies the DAG's row for the prefix restricted to
    the DAG's parents. Edge i -> j (i < j) appears with probability p, and p is
    drawn per task from U[p_low, p_high]. ``max_parents`` keeps the latest ones.
    """

    variables = "discrete"
    p_low: float = 0.2
    p_high: float = 0.8
    alpha: float = 1.0
    max_parents: int | None = None

    def __post_init__(self):
        if not 0 <= self.p_low <= self.p_high <= 1:
            raise BNError("edge-probability range must satisfy 0 <= low <= high <= 1, "
                          f"got [{self.p_low}, {self.p_high}]")
        DirichletPrior(self.alpha)

    @property
    def dirichlet_alpha(self) -> float:
        """The CPT rows are Dirichlet(alpha) given the (random) parents."""
        return float(self.alpha)

    def sample_parents(self, n_nodes: int, n_sets: int, generator=None) -> torch.Tensor:
        """Adjacency (G, M, M) bool: [g, i, j] is the edge i -> j."""
        p = self.p_low + (self.p_high - self.p_low) * torch.rand(n_sets, 1, 1, generator=generator, dtype=torch.float64)
        adj = torch.rand(n_sets, n_nodes, n_nodes, generator=generator, dtype=torch.float64) < p
        adj &= torch.ones(n_nodes, n_nodes, dtype=torch.bool).triu(1)
        if self.max_parents is not None:  # keep the latest max_parents parents of each node
            from_right = adj.flip(1).cumsum(1).flip(1)
            adj &= from_right <= self.max_parents
        return adj

    def sample(self, graph: Graph, n_sets: int, generator=None, return_parents: bool = False):
        M = graph.n_nodes
        for m in range(M):
            if graph.parents[m] != tuple(range(m)):
                raise BNError("RandomDAGPrior draws CPTs on a complete graph (get_graph('complete-N'))")
        adj = self.sample_parents(M, n_sets, generator)
        full = DirichletPrior(self.alpha).sample(graph, n_sets, generator)
        cpts = []
        for m in range(M):
            prefix = torch.as_tensor(graph.configs(m))  # (rows, m): every prefix configuration
            strides = torch.as_tensor(graph.strides[m], dtype=torch.long)
            kept = prefix[None] * adj[:, :m, m][:, None, :]  # zero out non-parents: rows sharing parents collapse
            code = (kept * strides).sum(-1)  # (G, rows)
            cpts.append(torch.gather(full[m], 1, code[..., None].expand(-1, -1, graph.cards[m])))
        return (cpts, adj) if return_parents else cpts

    def describe(self) -> str:
        cap = f", at most {self.max_parents} parents" if self.max_parents is not None else ""
        return f"random DAG (edge prob ~ U[{self.p_low:g}, {self.p_high:g}]{cap}) with Dirichlet({self.alpha:g}) rows"
