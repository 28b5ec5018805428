"""The random-DAG prior writes each task's DAG CPTs onto the complete graph."""
import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import Graph, get_graph, sample, select
from bncompare.networks.priors import RandomDAGPrior


def test_rows_depend_only_on_the_drawn_parents():
    graph = get_graph("complete-5")
    prior = RandomDAGPrior(0.1, 0.9, max_parents=2)
    cpts, adj = prior.sample(graph, 6, torch.Generator().manual_seed(0), return_parents=True)
    assert adj.sum(1).max() <= 2
    for g in range(6):
        dag = Graph.from_edges(graph.names, [(graph.names[i], graph.names[j]) for i, j in adj[g].nonzero().tolist()])
        x = sample(graph, select(cpts, g), 500, torch.Generator().manual_seed(g))[0]
        for m in range(graph.n_nodes):
            rows = cpts[m][g][graph.config_index(x, m)]
            code = dag.config_index(x, m)
            for c in code.unique():
                same = rows[code == c]
                assert torch.equal(same, same[:1].expand_as(same))


def test_edge_probability_range_is_respected():
    graph = get_graph("complete-6")
    _, dense = RandomDAGPrior(1.0, 1.0).sample(graph, 4, torch.Generator().manual_seed(0), return_parents=True)
    _, empty = RandomDAGPrior(0.0, 0.0).sample(graph, 4, torch.Generator().manual_seed(0), return_parents=True)
    assert dense.sum().item() == 4 * 15 and empty.sum().item() == 0


def test_needs_the_complete_graph():
    with pytest.raises(BNError, match="complete graph"):
        RandomDAGPrior().sample(get_graph("chain-5"), 2)
