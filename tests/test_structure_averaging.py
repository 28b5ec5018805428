"""The structure-agnostic Bayes predictor (averaging over parent sets), against brute force."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from bncompare.errors import BNError
from bncompare.estimators import DirichletPosterior
from bncompare.estimators.structure_averaging import StructureAveraging
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.networks.graph import Graph
from bncompare.networks.priors import RandomDAGPrior

M = 4
EDGES = list(itertools.combinations(range(M), 2))


def kept_dag(draw: tuple[bool, ...], max_parents) -> tuple[bool, ...]:
    """The sampler's rule on one raw draw of the edges: keep the latest max_parents parents of each node."""
    kept = dict(zip(EDGES, draw))
    if max_parents is not None:
        for v in range(M):
            mine = [u for u in range(v) if kept[(u, v)]]
            for u in mine[: max(0, len(mine) - max_parents)]:
                kept[(u, v)] = False
    return tuple(kept[e] for e in EDGES)


def dag_priors(max_parents) -> dict:
    """For every DAG, the raw draws that give it, as (edges drawn, edges not drawn): P(DAG | p) = sum p^a (1-p)^b."""
    out = {}
    for draw in itertools.product([False, True], repeat=len(EDGES)):
        out.setdefault(kept_dag(draw, max_parents), []).append((sum(draw), len(draw) - sum(draw)))
    return out


def family_ml(x: np.ndarray, cards, v: int, parents, alpha: float) -> float:
    d = cards[v]
    ml = 1.0
    for config in itertools.product(*(range(cards[u]) for u in parents)):
        rows = np.all(x[:, list(parents)] == config, axis=1) if parents else np.ones(len(x), bool)
        n = np.bincount(x[rows, v], minlength=d)
        ml *= math.exp(math.lgamma(alpha * d) - math.lgamma(alpha * d + n.sum())
                       + sum(math.lgamma(alpha + k) - math.lgamma(alpha) for k in n))
    return ml


def brute_force(x, q, cards, v, lo, hi, max_parents, alpha):
    """P(x_v | q's earlier values, D): every DAG on M nodes, p integrated by quadrature."""
    d = cards[v]
    num, den = np.zeros(d), 0.0
    for present, draws in dag_priors(max_parents).items():
        parents = {w: tuple(u for u in range(w) if dict(zip(EDGES, present))[(u, w)]) for w in range(M)}
        weight = integrate.quad(lambda p, draws=draws: sum(p**a * (1 - p) ** b for a, b in draws), lo, hi)[0]
        ml = math.prod(family_ml(x, cards, w, parents[w], alpha) for w in range(M))
        pa = parents[v]
        rows = np.all(x[:, list(pa)] == q[list(pa)], axis=1) if pa else np.ones(len(x), bool)
        n = np.bincount(x[rows, v], minlength=d)
        weight /= hi - lo
        num += weight * ml * (n + alpha) / (n.sum() + alpha * d)
        den += weight * ml
    return num / den


@pytest.mark.parametrize("max_parents", [None, 1])
def test_averaging_equals_brute_force_over_every_dag(max_parents):
    """Four nodes: 64 DAGs, and Gauss-Legendre weights that differ, with more contexts than grid points."""
    graph = Graph.from_edges(list("ABCD"), [(u, v) for u, v in itertools.combinations("ABCD", 2)],
                             {"A": 2, "B": 3, "C": 2, "D": 2})
    gen = torch.Generator().manual_seed(4)
    cpts = DirichletPrior(1.0).sample(graph, 5, gen)
    contexts, queries = sample(graph, cpts, 12, gen), sample(graph, cpts, 2, gen)
    est = StructureAveraging(p_low=0.2, p_high=0.9, max_parents=max_parents, alpha=0.7).fit(graph, contexts)
    probs = est.predict_proba(queries)
    for b in range(5):
        for j in range(2):
            for v in range(M):
                want = brute_force(contexts[b].numpy(), queries[b, j].numpy(), graph.cards, v, 0.2, 0.9,
                                   max_parents, 0.7)
                assert np.allclose(probs[v][b, j].numpy(), want, atol=1e-9)


def test_every_edge_present_is_the_posterior_mean_on_the_complete_graph():
    graph = get_graph("complete-4")
    gen = torch.Generator().manual_seed(0)
    cpts = DirichletPrior(1.0).sample(graph, 3, gen)
    contexts, queries = sample(graph, cpts, 30, gen), sample(graph, cpts, 5, gen)
    got = StructureAveraging(p_low=1.0, p_high=1.0, max_parents=None).fit(graph, contexts).predict_proba(queries)
    want = DirichletPosterior(1.0).fit(graph, contexts).predict_proba(queries)
    for g, w in zip(got, want):
        assert torch.allclose(g, w.double(), atol=1e-12)


def test_with_many_rows_it_finds_the_true_parents():
    """Rows from one random DAG: the weight of its true parent set approaches 1, and the answers those of
    the posterior mean given the true graph."""
    graph = get_graph("complete-5")
    gen = torch.Generator().manual_seed(1)
    dag_prior = RandomDAGPrior(0.3, 0.7, 1.0, 3)
    cpts, adj = dag_prior.sample(graph, 1, gen, return_parents=True)
    contexts, queries = sample(graph, cpts, 4000, gen), sample(graph, cpts, 20, gen)
    est = StructureAveraging(0.3, 0.7, 3).fit(graph, contexts)
    truth = Graph.from_edges(graph.names, [(graph.names[u], graph.names[v]) for u, v in adj[0].nonzero().tolist()],
                             list(graph.cards))
    want = DirichletPosterior(1.0).fit(truth, contexts).predict_proba(queries)
    for got, w in zip(est.predict_proba(queries), want):
        assert (got - w.double()).abs().max() < 0.02


def test_bad_settings_and_big_graphs_are_one_line_errors():
    with pytest.raises(BNError, match="p_low <= p_high"):
        StructureAveraging(p_low=0.8, p_high=0.2)
    graph = get_graph("complete-16")
    contexts = torch.zeros(1, 3, 16, dtype=torch.long)
    with pytest.raises(BNError, match="candidate parent sets"):
        StructureAveraging(max_parents=None).fit(graph, contexts)
