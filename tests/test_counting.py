"""Counting estimators against pgmpy (to 1e-9) and against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators import K2, MLE, BDeu, DirichletPosterior, NaiveMLE, PgmpyBayes, PgmpyMLE
from bncompare.networks import BayesNet, DirichletPrior, Graph, load_network, sample


def contexts_of(net, B, N, seed):
    cpts = net.cpt_batch()
    x = sample(net.graph, [c.expand(B, -1, -1) for c in cpts], N, torch.Generator().manual_seed(seed))
    return x


PAIRS = [
    (lambda: MLE(), lambda: PgmpyMLE()),
    (lambda: DirichletPosterior(0.7), lambda: PgmpyBayes("dirichlet", pseudo_counts=0.7)),
    (lambda: BDeu(5.0), lambda: PgmpyBayes("BDeu", equivalent_sample_size=5.0)),
    (lambda: K2(), lambda: PgmpyBayes("K2")),
]


def unsorted_parents_net():
    """Multi-valued node whose parent order (Z, A) is not pgmpy's sorted evidence order."""
    g = Graph.from_edges(
        ["Z", "A", "B", "C"], [("Z", "C"), ("A", "C"), ("B", "C"), ("Z", "A")], {"Z": 3, "A": 2, "B": 4, "C": 3},
        parent_order={"C": ["Z", "B", "A"]},
    )
    cpts = DirichletPrior(0.5).sample(g, 1, torch.Generator().manual_seed(0))
    return BayesNet(g, tuple(c[0].numpy() for c in cpts))


CASES = {  # network, contexts B, rows N: small N leaves many parent configurations unseen
    "survey": (4, 25),
    "sachs": (3, 40),
    "child": (2, 60),
    "alarm": (2, 300),
    "unsorted": (3, 30),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counting_equals_pgmpy(case):
    net = unsorted_parents_net() if case == "unsorted" else load_network(case)
    B, N = CASES[case]
    g = net.graph
    x = contexts_of(net, B, N, seed=1)
    queries = contexts_of(net, B, 7, seed=2)
    for ours_f, ref_f in PAIRS:
        ours, ref = ours_f().fit(g, x), ref_f().fit(g, x)
        for m in range(g.n_nodes):
            assert ours.cpts_[m].shape == ref.cpts_[m].shape == (B, g.n_configs[m], g.cards[m])
            err = (ours.cpts_[m] - ref.cpts_[m]).abs().max().item()
            assert err < 1e-9, f"{ours.name} vs {ref.name}, node {g.names[m]}: {err}"
        for a, b in zip(ours.predict_proba(queries), ref.predict_proba(queries)):
            assert torch.allclose(a, b, rtol=0, atol=1e-9)
    if case == "child":
        # the unseen-configuration rows really are exercised, and MLE gives them the uniform row
        mle = MLE().fit(g, x)
        unseen = [(mle.counts_[m].sum(-1) == 0) for m in range(g.n_nodes)]
        assert sum(int(u.sum()) for u in unseen) > 0
        for m, u in enumerate(unseen):
            assert torch.allclose(mle.cpts_[m][u], torch.full_like(mle.cpts_[m][u], 1 / g.cards[m]))


def test_pgmpy_names_and_errors():
    assert PgmpyMLE().name == "pgmpy_mle"
    assert PgmpyBayes("BDeu").name == "pgmpy_bdeu"
    assert PgmpyBayes("k2").name == "pgmpy_k2"
    assert PgmpyBayes("dirichlet", pseudo_counts=1).name == "pgmpy_dirichlet"
    with pytest.raises(BNError, match="choose one of"):
        PgmpyBayes("laplace")
    with pytest.raises(BNError, match="pseudo_counts"):
        PgmpyBayes("dirichlet")
    with pytest.raises(BNError, match="equivalent_sample_size"):
        PgmpyBayes("BDeu", equivalent_sample_size=0)


def test_mle_converges_to_truth():
    net = load_network("survey")
    x = net.sample(100_000, seed=0)[None]
    mle = MLE().fit(net.graph, x)
    for m, c in enumerate(net.cpts):
        assert np.abs(mle.cpts_[m][0].numpy() - c).max() < 0.02


def brute_naive(g, ctx, queries, m):
    out = torch.empty(queries.shape[0], g.cards[m], dtype=torch.float64)
    seen = torch.empty(queries.shape[0], dtype=torch.bool)
    for q, row in enumerate(queries):
        hits = [r for r in ctx if all(r[k] == row[k] for k in range(m))]
        seen[q] = bool(hits)
        if hits:
            vals = torch.tensor([int(r[m]) for r in hits])
            out[q] = torch.bincount(vals, minlength=g.cards[m]).double() / len(hits)
        else:
            out[q] = 1 / g.cards[m]
    return out, ~seen


@pytest.mark.parametrize("name", ["survey", "asia"])
def test_naive_mle_brute_force(name):
    net = load_network(name)
    g = net.graph
    x = contexts_of(net, 2, 40, seed=3)
    queries = contexts_of(net, 2, 12, seed=4)
    queries[:, :3] = x[:, :3]  # some queries match a context prefix exactly
    est = NaiveMLE().fit(g, x)
    nodes = list(range(g.n_nodes))
    probs, unseen = est.predict_proba(queries, nodes), est.unseen(queries, nodes)
    for m in nodes:
        for b in range(2):
            want, want_unseen = brute_naive(g, x[b], queries[b], m)
            assert torch.allclose(probs[m][b], want, atol=1e-12)
            assert torch.equal(unseen[m][b], want_unseen)
    # a subset of nodes in any order gives the same answers
    sub = est.predict_proba(queries, [3, 1])
    assert torch.equal(sub[0], probs[3]) and torch.equal(sub[1], probs[1])
    # with a complete graph's order the first node's naive MLE is the plain marginal MLE
    assert torch.allclose(probs[0], MLE().fit(g, x).predict_proba(queries, [0])[0])


def test_unseen_mask_brute_force():
    net = load_network("sachs")
    g = net.graph
    x = contexts_of(net, 2, 15, seed=5)
    queries = contexts_of(net, 2, 20, seed=6)
    est = MLE().fit(g, x)
    masks = est.unseen(queries)
    total = 0
    for m in range(g.n_nodes):
        pa = list(g.parents[m])
        for b in range(2):
            for q in range(20):
                match = (x[b][:, pa] == queries[b, q, pa]).all(-1).any().item()
                assert masks[m][b, q].item() == (not match)
                total += not match
    assert total > 0  # the case is exercised


def test_zero_rows_give_uniform():
    net = load_network("survey")
    g = net.graph
    x = torch.zeros(3, 0, g.n_nodes, dtype=torch.long)
    queries = contexts_of(net, 3, 5, seed=0)
    for est in (MLE(), DirichletPosterior(0.3), BDeu(2.0), K2(), NaiveMLE(), PgmpyMLE(), PgmpyBayes("BDeu")):
        est.fit(g, x)
        for m, p in enumerate(est.predict_proba(queries)):
            assert torch.allclose(p, torch.full_like(p, 1 / g.cards[m])), est.name
    assert all(u.all() for u in MLE().fit(g, x).unseen(queries))
    assert all(u.all() for u in NaiveMLE().fit(g, x).unseen(queries))


def test_dirichlet_posterior_formula():
    g = Graph.from_edges(["A", "B"], [("A", "B")], {"A": 2, "B": 3})
    x = torch.tensor([[[0, 0], [0, 2], [0, 2], [1, 1]]])
    est = DirichletPosterior(0.5).fit(g, x)
    # A=0 rows: counts (1, 0, 2) -> (1.5, 0.5, 2.5) / 4.5
    assert torch.allclose(est.cpts_[1][0, 0], torch.tensor([1.5, 0.5, 2.5], dtype=torch.float64) / 4.5)
    bdeu = BDeu(6.0).fit(g, x)  # pseudo-count 6 / (3 * 2) = 1 per cell
    assert torch.allclose(bdeu.cpts_[1][0, 1], torch.tensor([1, 2, 1], dtype=torch.float64) / 4)


def test_bad_input():
    g = load_network("survey").graph
    with pytest.raises(BNError, match="outside"):
        MLE().fit(g, torch.full((1, 3, g.n_nodes), 5))
    with pytest.raises(BNError, match="shape"):
        MLE().fit(g, torch.zeros(3, g.n_nodes, dtype=torch.long))
    with pytest.raises(BNError, match="call fit before predict"):
        MLE().predict_proba(torch.zeros(1, 1, g.n_nodes, dtype=torch.long))
    est = MLE().fit(g, torch.zeros(2, 4, g.n_nodes, dtype=torch.long))
    with pytest.raises(BNError, match="queries must have shape"):
        est.predict_proba(torch.zeros(3, 1, g.n_nodes, dtype=torch.long))
    with pytest.raises(BNError, match="out of range"):
        est.predict_proba(torch.zeros(2, 1, g.n_nodes, dtype=torch.long), nodes=[g.n_nodes])
    with pytest.raises(BNError, match="NaN"):
        PgmpyMLE().fit(g, torch.full((1, 2, g.n_nodes), float("nan")))
    for bad in (lambda: DirichletPosterior(0), lambda: BDeu(-1)):
        with pytest.raises(BNError):
            bad()


@pytest.mark.parametrize("block", [1 << 24, 40 * 12 * 3, 1])  # all columns at once, 3 at a time, one by one
def test_naive_mle_one_node_at_a_time_as_generation_asks(block, monkeypatch):
    import bncompare.estimators.counting as counting

    net = load_network("asia")
    g = net.graph
    x, queries = contexts_of(net, 2, 40, seed=3), contexts_of(net, 2, 12, seed=4)
    queries[:, :5] = x[:, :5]
    monkeypatch.setattr(counting, "PREFIX_BLOCK", block)
    est = NaiveMLE().fit(g, x)
    for m in range(g.n_nodes):
        got = est.predict_proba(queries, [m])[0]
        for b in range(2):
            assert torch.equal(got[b], brute_naive(g, x[b], queries[b], m)[0])
