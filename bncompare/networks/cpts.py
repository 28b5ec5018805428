"""A CPT batch: many CPT sets of one graph, one tensor of shape ``(G, n_configs[m], cards[m])`` per node.

Kept apart from :mod:`bncompare.networks.network` so that the sampler, which
needs only this, does not import the network class that uses the sampler.
"""
from __future__ import annotations

from bncompare.errors import BNError
from bncompare.networks.graph import Graph

CPTBatch = list  # list[torch.Tensor], one (G, n_configs, card) tensor per node


def check_cpt_batch(graph: Graph, cpts: CPTBatch) -> CPTBatch:
    if len(cpts) != graph.n_nodes:
        raise BNError(f"got {len(cpts)} CPT tensors for {graph.n_nodes} nodes")
    G = cpts[0].shape[0]
    for m, c in enumerate(cpts):
        want = (G, graph.n_configs[m], graph.cards[m])
        if tuple(c.shape) != want:
            raise BNError(f"CPT batch for node {graph.names[m]!r} has shape {tuple(c.shape)}, expected {want}")
    return cpts


def select(cpts: CPTBatch, index) -> CPTBatch:
    """Pick CPT sets from a batch (an int keeps the batch axis with size 1)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return [c[index] for c in cpts]
