"""The plugin passes bncompare's public estimator contract, and computes the add-alpha rule."""
import torch
from bncompare_laplace import LaplaceMLE

from bncompare.networks import get_graph
from bncompare.testing import parametrize_with_checks


@parametrize_with_checks([LaplaceMLE(), LaplaceMLE(alpha=0.5)])
def test_bncompare_contract(estimator, check):
    check(estimator)


def test_add_alpha_rule():
    graph = get_graph("chain-5")
    contexts = torch.zeros(1, 3, graph.n_nodes, dtype=torch.long)  # three rows, every variable 0
    est = LaplaceMLE(alpha=0.5).fit(graph, contexts)
    assert torch.allclose(est.cpts_[0][0, 0], torch.tensor([3.5 / 4, 0.5 / 4], dtype=torch.float64))
