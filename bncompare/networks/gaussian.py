"""Linear-Gaussian Bayesian networks: each node ``x_j = b_j + sum_i w_ij x_i + sigma_j * eps_j``.

The structure is a :class:`Graph` with ``variables="gaussian"`` (card 1 everywhere).
Like a CPT batch for discrete networks, a *parameter batch* holds G parameter sets of
one graph: a list with one tensor of shape ``(G, k_m + 2)`` per node ``m`` with ``k_m``
parents, laid out as ``[intercept, w_1 .. w_k (the graph's parent order), sigma]``.
The truth of a study, a fitted estimator's network (``network_``) and a prior's draws
all use this layout, so samplers, metrics and estimators read one format.

A predicted conditional is a Student-t per query, ``(..., 3)`` = ``(df, loc, scale)``;
``df = inf`` is a Normal (:func:`normal`). So the MLE's Normal and the Bayes
predictive's Student-t share one layout, and the metrics read both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bncompare.errors import BNError
from bncompare.networks.graph import Graph

GaussianBatch = list  # list[torch.Tensor], one (G, k_m + 2) tensor per node: [intercept, weights..., sigma]
DF, LOC, SCALE = 0, 1, 2  # the columns of a predicted conditional (..., 3)


# ----- the parameter layout ----------------------------------------------------------------

def pack(intercept: torch.Tensor, weights: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(G,), (G, k), (G,) -> one node's (G, k + 2) parameters."""
    return torch.cat([intercept[:, None], weights, sigma[:, None]], -1)


def unpack(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One node's (G, k + 2) parameters -> intercept (G,), weights (G, k), sigma (G,)."""
    return params[..., 0], params[..., 1:-1], params[..., -1]


def check_gaussian_batch(graph: Graph, params: GaussianBatch, what: str = "parameters") -> GaussianBatch:
    """Shapes, finiteness and sigma > 0 of a parameter batch (one line naming the node)."""
    if graph.variables != "gaussian":
        raise BNError(f"{what}: the graph's variables are {graph.variables}, not gaussian")
    if len(params) != graph.n_nodes:
        raise BNError(f"got {len(params)} parameter tensors for {graph.n_nodes} nodes")
    G = params[0].shape[0]
    for m, p in enumerate(params):
        name, k = graph.names[m], len(graph.parents[m])
        if tuple(p.shape) != (G, k + 2):
            raise BNError(f"{what} of node {name!r} have shape {tuple(p.shape)}, expected {(G, k + 2)} "
                          "(intercept, one weight per parent, sigma)")
        if not torch.isfinite(p).all():
            raise BNError(f"{what} of node {name!r} are not all finite (NaN or inf weight, intercept or sigma)")
        if not (p[:, -1] > 0).all():
            raise BNError(f"node {name!r}: sigma must be > 0, got {float(p[:, -1].min()):.3g}")
    return params


def normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A Normal prediction in the Student-t layout (df = inf): (..., 3)."""
    return torch.stack([torch.full_like(loc, math.inf), loc, scale], -1)


def student_t(df: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.as_tensor(df, dtype=loc.dtype).expand_as(loc), loc, scale], -1)


# ----- conditionals, sampling, the joint -----------------------------------------------------

def conditional_mean(graph: Graph, params: GaussianBatch, x: torch.Tensor, m: int) -> torch.Tensor:
    """E[x_m | parents] at each row of ``x`` (G, N, M): (G, N)."""
    b, w, _ = unpack(params[m].to(x.device, torch.float64))
    pa = list(graph.parents[m])
    mean = b[:, None].expand(x.shape[0], x.shape[1]).clone()
    if pa:
        mean = mean + (x[..., pa].to(torch.float64) * w[:, None, :]).sum(-1)
    return mean


def true_conditional(graph: Graph, params: GaussianBatch, x: torch.Tensor, m: int) -> torch.Tensor:
    """The true conditional of node ``m`` at each row's parents, as a prediction: (G, N, 3), Normal."""
    sigma = unpack(params[m].to(x.device, torch.float64))[2]
    mean = conditional_mean(graph, params, x, m)
    return normal(mean, sigma[:, None].expand_as(mean))


def sample_with_normals(graph: Graph, params: GaussianBatch, z: torch.Tensor) -> torch.Tensor:
    """Ancestral samples driven by standard normals ``z`` (G, N, M): (G, N, M) float64."""
    check_gaussian_batch(graph, params)
    cols: list[torch.Tensor] = []
    for m in range(graph.n_nodes):
        b, w, sigma = unpack(params[m].to(z.device, torch.float64))
        x = b[:, None] + sigma[:, None] * z[..., m]
        for j, p in enumerate(graph.parents[m]):
            x = x + w[:, j : j + 1] * cols[p]
        cols.append(x)
    return torch.stack(cols, -1)


def sample_gaussian(graph: Graph, params: GaussianBatch, n: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` rows from each of the G parameter sets: (G, n, M) float64."""
    G = params[0].shape[0]
    z = torch.randn(G, n, graph.n_nodes, generator=generator, dtype=torch.float64).to(params[0].device)
    return sample_with_normals(graph, params, z)


def joint_gaussian(graph: Graph, params: GaussianBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The joint Normal of each parameter set: mean (G, M), covariance (G, M, M).

    With B the weight matrix (B[m, p] = w_pm), x = b + B x + S eps, so
    x = A (b + S eps) with A = (I - B)^-1: mean A b, covariance A S^2 A'.
    """
    G, M = params[0].shape[0], graph.n_nodes
    dtype, device = torch.float64, params[0].device
    B = torch.zeros(G, M, M, dtype=dtype, device=device)
    b = torch.zeros(G, M, dtype=dtype, device=device)
    s2 = torch.zeros(G, M, dtype=dtype, device=device)
    for m in range(M):
        icpt, w, sigma = unpack(params[m].to(dtype))
        b[:, m], s2[:, m] = icpt, sigma**2
        for j, p in enumerate(graph.parents[m]):
            B[:, m, p] = w[:, j]
    A = torch.linalg.solve_triangular(torch.eye(M, dtype=dtype, device=device) - B,
                                      torch.eye(M, dtype=dtype, device=device).expand(G, M, M), upper=False)
    return (A @ b[..., None])[..., 0], A @ (s2[..., None] * A.transpose(-1, -2))


def check_real_data(graph: Graph, x, what: str = "data", variables: str = "gaussian") -> torch.Tensor:
    """Validate real-valued rows ``x`` of shape ``(..., M)`` of a network of ``variables``: a finite float64
    tensor."""
    if graph.variables != variables:
        raise BNError(f"{what}: this estimator reads real values, but the network's variables are "
                      f"{graph.variables} (use an estimator made for them)")
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise BNError(f"{what} must hold real values, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != graph.n_nodes:
        raise BNError(f"{what} has shape {tuple(x.shape)}; the last axis must have {graph.n_nodes} columns, "
                      "one per node")
    x = x.to(torch.float64)
    # a finite sum proves every value finite (NaN and inf propagate) and costs a read, not a 40 MB
    # temporary; only a non-finite sum (or an overflow of finite values) needs the elementwise check
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise BNError(f"{what} contains NaN or inf")
    return x


# ----- one network ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class GaussianNet:
    """One linear-Gaussian network: per node an intercept, one weight per parent (graph order), and sigma."""

    graph: Graph
    intercepts: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]
    sigmas: tuple[float, ...]

    def __post_init__(self):
        g = self.graph
        if g.variables != "gaussian":
            raise BNError(f"a GaussianNet needs a graph with variables='gaussian', got {g.variables!r}")
        for what, seq in (("intercepts", self.intercepts), ("weights", self.weights), ("sigmas", self.sigmas)):
            if len(seq) != g.n_nodes:
                raise BNError(f"got {len(seq)} {what} for {g.n_nodes} nodes")
        for m, w in enumerate(self.weights):
            if len(w) != len(g.parents[m]):
                raise BNError(f"node {g.names[m]!r} has {len(w)} weights for {len(g.parents[m])} parents")
        object.__setattr__(self, "intercepts", tuple(float(v) for v in self.intercepts))
        object.__setattr__(self, "weights", tuple(tuple(float(v) for v in w) for w in self.weights))
        object.__setattr__(self, "sigmas", tuple(float(v) for v in self.sigmas))
        check_gaussian_batch(g, self.params(), "parameters")

    @property
    def names(self) -> tuple[str, ...]:
        return self.graph.names

    def params(self, device=None) -> GaussianBatch:
        """The parameters as a parameter batch with G = 1."""
        return [torch.tensor([[b, *w, s]], dtype=torch.float64, device=device)
                for b, w, s in zip(self.intercepts, self.weights, self.sigmas)]

    def parameter_batch(self) -> GaussianBatch:
        """The network's parameters as a batch of one (what a study's truth holds)."""
        return self.params()

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` rows as a float64 tensor (n, M) (columns in ``self.names`` order)."""
        return sample_gaussian(self.graph, self.params(), n, torch.Generator().manual_seed(seed))[0]

    def joint(self) -> tuple[np.ndarray, np.ndarray]:
        """The joint Normal's mean (M,) and covariance (M, M)."""
        mean, cov = joint_gaussian(self.graph, self.params())
        return mean[0].numpy(), cov[0].numpy()

    def __repr__(self) -> str:
        return f"GaussianNet({self.graph!r})"


def from_params(graph: Graph, params: GaussianBatch, index: int = 0) -> GaussianNet:
    """Parameter set ``index`` of a batch as a GaussianNet."""
    rows = [unpack(p[index].to(torch.float64).cpu()) for p in params]
    return GaussianNet(graph, tuple(float(b) for b, _, _ in rows), tuple(tuple(w.tolist()) for _, w, _ in rows),
                       tuple(float(s) for _, _, s in rows))
