"""In-context autoregression: sequences ``s_{k+1} = W s_k + sigma * eps_k`` of d-vectors, one W per sequence.

This is a linear-Gaussian dynamic Bayesian network: a chain of vector nodes sharing one transition W.
A study of it (``study=autoregressive``, ``variables="autoregressive"``) shows an estimator the prefix
``s_1 .. s_t`` of a sequence and asks for ``s_{t+1}``, at every t (Sander et al., arXiv 2402.05787;
Zheng et al. 2024).

- The graph (:func:`ar_graph`) has one node per coordinate of the state, ``s1 .. sd``, card 1. Their
  parents are the whole previous state (the transition), which a one-slice graph does not draw: every
  node lists no parents.
- A parameter batch (as for the other kinds of variables, a list with one ``(G, ...)`` tensor per
  node) holds for coordinate m the row ``[W[m, 0], ..., W[m, d-1], sigma]``: :func:`transition` and
  :func:`noise_sd` read it back.
- :class:`ARPrior` is the law of a sequence's W, noise and start state; ``sample`` draws parameter
  batches and ``sequences`` the states.

The laws of W (``law``):

- ``orthogonal``: Haar on the orthogonal group O(d) (scipy's ``ortho_group`` law), by the QR
  decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q;
- ``commuting``: block-diagonal in the standard basis, one 2x2 rotation by an angle ~ U(0, 2 pi) per
  pair of coordinates and, for odd d, a last 1x1 block of +1 or -1 (each with probability 1/2): every
  such matrix commutes with every other, the commuting orthogonal family of Sander et al.;
- ``gaussian``: entries i.i.d. N(0, 1/d); with ``spectral_radius`` = r, a draw whose spectral radius
  exceeds r is scaled down to r (then the law is no longer Gaussian, and ridge no longer its exact
  posterior mean).

The start state (``start``): ``fixed`` is the unit vector ``(1, ..., 1) / sqrt(d)`` (the papers');
``gaussian`` draws ``s_1 ~ N(0, I / d)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bncompare.errors import BNError
from bncompare.networks.gaussian import check_real_data
from bncompare.networks.graph import Graph

LAWS = ("orthogonal", "commuting", "gaussian")
STARTS = ("fixed", "gaussian")
MAX_DIMENSION = 1024


def ar_graph(d: int) -> Graph:
    """The graph of a d-dimensional autoregressive process: nodes s1..sd, card 1, no drawn parents."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise BNError(f"process.d (the state dimension) must be an integer >= 1, got {d!r}")
    if d > MAX_DIMENSION:
        raise BNError(f"process.d must be at most {MAX_DIMENSION}, got {d}")
    return Graph(tuple(f"s{i + 1}" for i in range(d)), (1,) * d, ((),) * d, variables="autoregressive")


def check_states(graph: Graph, x, what: str = "data") -> torch.Tensor:
    """Validate states ``x`` of shape ``(..., d)`` of ``graph``'s process: a finite float64 tensor."""
    return check_real_data(graph, x, what, variables="autoregressive")


def pack(W: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
    """A parameter batch from transitions (G, d, d) and noise sds (G,): row m of W, then sigma, per node."""
    G, d, _ = W.shape
    s = sigma.reshape(G, 1).to(W.dtype).expand(G, 1)
    return [torch.cat([W[:, m], s], -1) for m in range(d)]


def transition(params: list[torch.Tensor]) -> torch.Tensor:
    """The transitions W (G, d, d) of a parameter batch."""
    return torch.stack([p[:, :-1] for p in params], 1)


def noise_sd(params: list[torch.Tensor]) -> torch.Tensor:
    """The noise standard deviation sigma (G,) of a parameter batch."""
    return params[0][:, -1]


def haar_orthogonal(n: int, d: int, gen: torch.Generator | None) -> torch.Tensor:
    """(n, d, d) draws from the Haar law on O(d)."""
    z = torch.randn(n, d, d, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs[:, None, :]


def commuting_orthogonal(n: int, d: int, gen: torch.Generator | None) -> torch.Tensor:
    """(n, d, d) block-diagonal rotations (see the module docstring)."""
    W = torch.zeros(n, d, d, dtype=torch.float64)
    theta = 2 * math.pi * torch.rand(n, d // 2, generator=gen, dtype=torch.float64)
    c, s = torch.cos(theta), torch.sin(theta)
    for j in range(d // 2):
        a, b = 2 * j, 2 * j + 1
        W[:, a, a], W[:, a, b], W[:, b, a], W[:, b, b] = c[:, j], -s[:, j], s[:, j], c[:, j]
    if d % 2:
        W[:, d - 1, d - 1] = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return W


def gaussian_matrices(n: int, d: int, gen: torch.Generator | None, spectral_radius: float | None) -> torch.Tensor:
    """(n, d, d) matrices with N(0, 1/d) entries, scaled down to ``spectral_radius`` where it is exceeded."""
    W = torch.randn(n, d, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    if spectral_radius is not None:
        rho = torch.linalg.eigvals(W).abs().amax(-1)
        W = W * torch.clamp(spectral_radius / rho, max=1.0)[:, None, None]
    return W


@dataclass(frozen=True)
class ARPrior:
    """The law of one sequence: its transition W (``law``), noise sd ``sigma`` and start state (``start``)."""

    variables = "autoregressive"  # the kind of network it draws parameters for (Graph.variables)
    dirichlet_alpha = None  # not a CPT prior
    law: str = "orthogonal"
    sigma: float = 0.0
    start: str = "fixed"
    spectral_radius: float | None = None  # the gaussian law only: scale W down to this spectral radius

    def __post_init__(self):
        if self.law not in LAWS:
            raise BNError(f"process.law must be one of {', '.join(LAWS)}, got {self.law!r}")
        if self.start not in STARTS:
            raise BNError(f"process.start must be one of {', '.join(STARTS)}, got {self.start!r}")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not math.isfinite(self.sigma) \
                or self.sigma < 0:
            raise BNError(f"process.sigma (the noise sd) must be a finite number >= 0, got {self.sigma!r}")
        if self.spectral_radius is not None:
            r = self.spectral_radius
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
                raise BNError(f"process.spectral_radius must be a number > 0 (or null), got {r!r}")
            if self.law != "gaussian":
                raise BNError(f"process.spectral_radius applies to law=gaussian only (law={self.law} is orthogonal)")

    def draw_transitions(self, d: int, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """(n, d, d) transitions from the law."""
        if self.law == "orthogonal":
            return haar_orthogonal(n, d, gen)
        if self.law == "commuting":
            return commuting_orthogonal(n, d, gen)
        return gaussian_matrices(n, d, gen, self.spectral_radius)

    def sample(self, graph: Graph, n_sets: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """G = ``n_sets`` parameter sets of ``graph``'s process (a parameter batch, see the module docstring)."""
        if graph.variables != "autoregressive":
            raise BNError(f"prior autoregressive draws transitions of a process; the graph's variables are "
                          f"{graph.variables}")
        W = self.draw_transitions(graph.n_nodes, n_sets, generator)
        return pack(W, torch.full((n_sets,), float(self.sigma), dtype=torch.float64))

    def start_states(self, n: int, d: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """(n, d) first states s_1."""
        if self.start == "fixed":
            return torch.full((n, d), 1 / math.sqrt(d), dtype=torch.float64)
        return torch.randn(n, d, generator=gen, dtype=torch.float64) / math.sqrt(d)

    def sequences(self, params: list[torch.Tensor], length: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """(G, length, d) states s_1 .. s_length of each parameter set's sequence."""
        return roll_out(transition(params), noise_sd(params), self.start_states(len(params[0]), len(params), gen),
                        length, gen)

    def describe(self) -> str:
        law = {"orthogonal": "Haar orthogonal W", "commuting": "commuting orthogonal W (2x2 rotations)",
               "gaussian": "W with N(0, 1/d) entries"}[self.law]
        if self.spectral_radius is not None:
            law += f", spectral radius <= {self.spectral_radius:g}"
        start = "s_1 = 1/sqrt(d)" if self.start == "fixed" else "s_1 ~ N(0, I/d)"
        return f"s_(t+1) = W s_t + {self.sigma:g} eps: {law}, {start}"


def roll_out(W: torch.Tensor, sigma: torch.Tensor, s1: torch.Tensor, length: int,
             gen: torch.Generator | None = None) -> torch.Tensor:
    """(G, length, d) states from transitions W (G, d, d), noise sds (G,) and first states (G, d).

    The noise is drawn for every step, also when sigma is 0, so a sequence's draws do not depend on sigma."""
    G, d = s1.shape
    states = [s1]
    eps = torch.randn(G, max(length - 1, 0), d, generator=gen, dtype=torch.float64)
    for k in range(length - 1):
        states.append(torch.einsum("gij,gj->gi", W, states[-1]) + sigma[:, None] * eps[:, k])
    return torch.stack(states[:length], 1)
