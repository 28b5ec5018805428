"""A trained transformer that is never told the graph.

It trains on a fresh Erdos-Renyi DAG AND fresh Dirichlet CPTs for every task
(:class:`~bncompare.networks.priors.RandomDAGPrior`), with the nodes of the
study graph in their order and with their cardinalities. The encoding never
shows parents to any transformer; what differs from the structure-aware
:class:`TrainedTransformer` is only the task distribution: that one sees a
single structure, so it can store the parents in its weights; this one must
find, in context, which earlier variables matter.

Every graph with the same node count and cardinalities (chain-7, tree-7,
general-7, random-7, ...) shares one training task, hence one cached model:
that is what makes the generalization comparison fair.
"""
from __future__ import annotations

from bncompare.errors import BNError
from bncompare.estimators.base import SettingsTags, Tags
from bncompare.networks.graph import Graph
from bncompare.networks.priors import RandomDAGPrior
from bncompare.transformer.train import TrainConfig
from bncompare.transformer.trained import TrainedTransformer, computed_parts


def complete_graph_like(graph: Graph) -> Graph:
    """Same nodes, order and cardinalities as ``graph``, every earlier node a parent."""
    names = [f"X{m}" for m in range(graph.n_nodes)]  # names are not seen by the model; keep one cache entry per layout
    edges = [(u, v) for i, v in enumerate(names) for u in names[:i]]
    return Graph.from_edges(names, edges, list(graph.cards))


class StructureAgnosticTransformer(TrainedTransformer):
    name = "transformer_agnostic"
    tags = SettingsTags(Tags(family="trained", graph_agnostic=True, has_attention=True, has_history=True),
                        computed_parts(TrainConfig().model))

    def __init__(self, train_cfg=None, p_low: float = 0.2, p_high: float = 0.8, max_parents: int | None = 3,
                 cache_dir=None, progress: bool = True, batch_size: int = 256, at_fraction: float | None = None,
                 recipe: str = "default"):
        super().__init__(train_cfg, cache_dir, progress, batch_size, at_fraction, recipe)
        self.p_low, self.p_high, self.max_parents = p_low, p_high, max_parents

    def training_task(self, graph: Graph, prior) -> tuple[Graph, RandomDAGPrior]:
        alpha = prior.dirichlet_alpha
        if alpha is None:
            raise BNError(f"{self.name} trains on Dirichlet CPT rows; the study prior {prior!r} "
                          "is not a Dirichlet prior")
        return complete_graph_like(graph), RandomDAGPrior(self.p_low, self.p_high, float(alpha), self.max_parents)

    def check_graph(self, graph: Graph) -> None:
        # Any graph with the same layout is fine: the parents are never used.
        if tuple(graph.cards) != tuple(self.prepared_graph_.cards):
            raise BNError(f"{self.name}: model was trained for cardinalities {list(self.prepared_graph_.cards)}, "
                          f"got {list(graph.cards)}")
