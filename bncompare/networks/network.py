"""A Bayesian network: a :class:`Graph` plus one conditional probability table per node.

``cpts[m]`` has shape ``(n_configs[m], cards[m])``: one row per parent
configuration (last parent fastest), one column per state of node ``m``.
That is pgmpy's ``TabularCPD.get_values()`` transposed.

Studies work with many CPT sets for one graph at once ("a CPT batch"): a list
with one tensor of shape ``(G, n_configs[m], cards[m])`` per node.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bncompare.errors import BNError
from bncompare.networks.cpts import CPTBatch, check_cpt_batch, select  # noqa: F401  (re-exported)
from bncompare.networks.graph import Graph
from bncompare.networks.sampling import sample

ROW_SUM_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class BayesNet:
    graph: Graph
    cpts: tuple[np.ndarray, ...]
    state_names: tuple[tuple[str, ...], ...] | None = field(default=None)

    def __post_init__(self):
        g = self.graph
        if len(self.cpts) != g.n_nodes:
            raise BNError(f"got {len(self.cpts)} CPTs for {g.n_nodes} nodes")
        cpts = tuple(np.asarray(c, dtype=np.float64) for c in self.cpts)
        for m, c in enumerate(cpts):
            check_cpt(c, g.names[m], (g.n_configs[m], g.cards[m]))
        object.__setattr__(self, "cpts", cpts)
        if self.state_names is not None:
            for m, states in enumerate(self.state_names):
                if len(states) != g.cards[m]:
                    raise BNError(f"node {g.names[m]!r} has {len(states)} state names for cardinality {g.cards[m]}")

    @property
    def names(self) -> tuple[str, ...]:
        return self.graph.names

    def cpt_batch(self, device=None, dtype=torch.float64) -> CPTBatch:
        """The CPTs as a CPT batch with G = 1."""
        return [torch.as_tensor(c, dtype=dtype, device=device)[None] for c in self.cpts]

    def parameter_batch(self) -> CPTBatch:
        """The network's parameters as a batch of one (the layout of its variables: here a CPT batch)."""
        return self.cpt_batch()

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples as a long tensor of shape ``(n, M)`` (columns in ``self.names`` order)."""
        gen = torch.Generator().manual_seed(seed)
        return sample(self.graph, self.cpt_batch(), n, generator=gen)[0]

    def __repr__(self) -> str:
        return f"BayesNet({self.graph!r})"


def check_cpt(c: np.ndarray, name: str, shape: tuple[int, int]) -> None:
    if c.shape != shape:
        raise BNError(f"CPT of node {name!r} has shape {c.shape}, expected {shape} (parent configurations x states)")
    if not np.isfinite(c).all():
        raise BNError(f"CPT of node {name!r} has non-finite entries")
    if (c < 0).any():
        raise BNError(f"CPT of node {name!r} has negative entries (min {c.min():.3g})")
    sums = c.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > ROW_SUM_TOL:
        raise BNError(f"CPT of node {name!r}: row {worst} sums to {sums[worst]:.9g}, not 1 (tolerance {ROW_SUM_TOL:g})")
