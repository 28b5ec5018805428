"""What a kind of variable (``Graph.variables``) brings: how rows are drawn from a parameter batch.

A parameter batch is a CPT batch for discrete networks (:mod:`bncompare.networks.cpts`) and a
linear-Gaussian parameter batch for Gaussian ones (:mod:`bncompare.networks.gaussian`); both are a
list with one ``(G, ...)`` tensor per node, so batches of either are selected and joined alike.
"""
from __future__ import annotations

import torch

from bncompare.networks.gaussian import sample_gaussian
from bncompare.networks.graph import Graph
from bncompare.networks.sampling import sample

SAMPLERS = {"discrete": sample, "gaussian": sample_gaussian}


def sample_rows(graph: Graph, params: list, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` rows from each of the G parameter sets of ``params``: (G, n, M), long or float64 by the variables."""
    return SAMPLERS[graph.variables](graph, params, n, generator)
