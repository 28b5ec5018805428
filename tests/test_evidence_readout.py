"""The evidence readout: hypotheses about a target's parents, weighed by their leave-one-out likelihood.

Each test writes the readout's own small layers by hand (the blocks below it are left as initialized),
so the expected answers are counting formulas.
"""
import math

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, sample
from bncompare.networks.graph import Graph
from bncompare.transformer.encoding import encode
from bncompare.transformer.model import InContextTransformer
from bncompare.transformer.train import TrainConfig, train

CHAIN = Graph.from_edges(["A", "B", "C"], [("A", "B"), ("B", "C")], {"A": 2, "B": 3, "C": 2})


def readout_model(graph: Graph, guess: list[float], plausible: list[float], log_lambda: float = 0.0,
                  rounds: int = 1) -> InContextTransformer:
    """A model whose readout proposes the same gains for every target: ``guess`` (pre-sigmoid, per node),
    a huge gain level (a row that misses an included node weighs nothing), Dirichlet(1) prior weight and a
    uniform prior over the target's states, and hypothesis prior log-odds ``plausible`` (guess, edit A, ...)."""
    cfg = TrainConfig(d_model=16, d_ff=32, output="evidence", evidence_rounds=rounds).model_config(graph)
    model = InContextTransformer(cfg, seed=0).eval()
    r = model.readout
    with torch.no_grad():
        for layer in (r.guess, r.level, r.strength, r.plausible, r.prior):
            layer.weight.zero_()
            layer.bias.zero_()
        r.guess.bias.copy_(torch.tensor(guess) + 2.0)  # the readout starts from guess - 2
        r.level.bias.fill_(40.0)
        r.plausible.bias.copy_(torch.tensor(plausible))
        r.log_lambda.fill_(log_lambda)
    return model


def answers(model, graph, contexts, queries, node: int) -> torch.Tensor:
    with torch.no_grad():
        out = model(encode(graph, contexts, queries, [node]), contexts.shape[1])
    return model.probabilities(out[..., : graph.cards[node]]).double()


def posterior_mean_given(contexts, queries, parent: int, node: int, card: int, alpha: float = 1.0):
    """Dirichlet(alpha) posterior mean of ``node`` among the context rows sharing the query's value of ``parent``."""
    same = (contexts[:, None, :, parent] == queries[:, :, None, parent]).double()  # (B, Q, N)
    counts = same @ torch.nn.functional.one_hot(contexts[..., node], card).double()  # (B, Q, card)
    return (counts + alpha) / (counts.sum(-1, keepdim=True) + alpha * card)


def test_a_sure_hypothesis_gives_the_posterior_mean_given_its_parents():
    """Gains on B alone, and every edit ruled out: the answer for C is Dirichlet(1)'s posterior mean given B."""
    model = readout_model(CHAIN, guess=[-50.0, 50.0, 0.0], plausible=[50.0, -50.0, -50.0, -50.0])
    gen = torch.Generator().manual_seed(2)
    cpts = DirichletPrior(1.0).sample(CHAIN, 3, gen)
    contexts, queries = sample(CHAIN, cpts, 40, gen), sample(CHAIN, cpts, 5, gen)
    want = posterior_mean_given(contexts, queries, parent=1, node=2, card=2)
    assert torch.allclose(answers(model, CHAIN, contexts, queries, 2), want, atol=1e-5)


def test_without_rows_the_answer_is_the_prior():
    model = readout_model(CHAIN, guess=[0.0, 0.0, 0.0], plausible=[0.0] * 4, rounds=2)
    queries = sample(CHAIN, DirichletPrior(1.0).sample(CHAIN, 2, torch.Generator().manual_seed(1)), 3)
    for node, card in enumerate(CHAIN.cards):
        got = answers(model, CHAIN, queries[:, :0], queries, node)
        assert torch.allclose(got, torch.full_like(got, 1 / card))


def test_the_evidence_adds_the_parent_the_data_show():
    """C copies B 90% of the time; A is independent noise. The guess says "no parents"; of its one-node edits,
    "B is a parent" has by far the highest leave-one-out likelihood, so the answer becomes the posterior mean
    given B. Without the evidence (lambda ~ 0) the three hypotheses are mixed equally, which is far from it."""
    graph = Graph.from_edges(["A", "B", "C"], [("B", "C")], {"A": 2, "B": 2, "C": 2})
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(2, 2, 400, generator=gen) < 0.5).long()
    c = torch.where(torch.rand(2, 400, generator=gen) < 0.9, b, 1 - b)
    rows = torch.stack([a, b, c], -1)
    contexts, queries = rows[:, :360], rows[:, 360:]
    want = posterior_mean_given(contexts, queries, parent=1, node=2, card=2)
    searched = readout_model(graph, [-50.0] * 3, [0.0] * 4)
    assert torch.allclose(answers(searched, graph, contexts, queries, 2), want, atol=1e-4)
    blind = readout_model(graph, [-50.0] * 3, [0.0] * 4, log_lambda=-30.0)
    assert (answers(blind, graph, contexts, queries, 2) - want).abs().max() > 0.1


def test_the_evidence_is_the_leave_one_out_log_likelihood():
    """For hard hypotheses the evidence is a count formula: each row's target value predicted by the other
    rows in its parents' cell, with the prior's weight exp(beta) (= 2 rows here)."""
    model = readout_model(CHAIN, guess=[0.0, 0.0, 0.0], plausible=[0.0] * 4)
    r = model.readout
    gen = torch.Generator().manual_seed(5)
    contexts = sample(CHAIN, DirichletPrior(1.0).sample(CHAIN, 2, gen), 30, gen)
    rows = encode(CHAIN, contexts, contexts[:, :1], [0])[:, 1:31, : r.n_slots]
    big = 200.0
    hyp = torch.tensor([[0.0, 0.0], [big, 0.0], [0.0, big], [big, big]]).expand(2, 4, 2)  # C's parents: -, A, B, AB
    beta = torch.full((2, 1), math.log(2.0))
    log_prior = torch.log(torch.tensor([0.5, 0.5, 1e-30])).expand(2, 3)
    for count_configs in (False, True):  # 12 configurations of (A, B, C) < 30 rows: counted into them
        r.count_configs = count_configs
        basis, counts, _ = r._count(rows, r.configs_2)
        assert basis.shape[1] == (12 if count_configs else 30)
        got = r._loo_loglik(hyp, beta, log_prior, *r._context_table(basis, counts, 2))  # (2, 4)
        for s, parents in enumerate([[], [0], [1], [0, 1]]):
            for b in range(2):
                x = contexts[b]
                want = 0.0
                for i in range(30):
                    cell = torch.ones(30, dtype=torch.bool) if not parents else (x[:, parents] == x[i, parents]).all(-1)
                    cell[i] = False
                    want += math.log(((x[cell, 2] == x[i, 2]).sum() + 1.0) / (cell.sum() + 2.0))
                assert got[b, s].item() == pytest.approx(want, abs=1e-3)


def test_counting_configurations_changes_nothing():
    """A context longer than the number of joint configurations is counted into them; the answers equal
    the row-by-row computation."""
    cfg = TrainConfig(d_model=16, d_ff=32, output="evidence", evidence_rounds=2).model_config(CHAIN)
    model = InContextTransformer(cfg, seed=1).eval()
    gen = torch.Generator().manual_seed(4)
    cpts = DirichletPrior(1.0).sample(CHAIN, 2, gen)
    contexts, queries = sample(CHAIN, cpts, 50, gen), sample(CHAIN, cpts, 3, gen)
    tokens = encode(CHAIN, contexts, queries, range(3))
    assert model.readout.configs_2.shape[0] == 12 < 50
    with torch.no_grad():
        counted = model(tokens, 50)
        model.readout.count_configs = False
        by_row = model(tokens, 50)
    assert torch.allclose(counted, by_row, atol=1e-4)


def test_evidence_needs_the_prefix_view_and_a_round():
    with pytest.raises(BNError, match="output='evidence' needs query_view='prefix'"):
        TrainConfig(output="evidence", query_view="parents")
    with pytest.raises(BNError, match="evidence_rounds must be >= 1"):
        TrainConfig(output="evidence", evidence_rounds=0)


def test_a_model_with_the_evidence_readout_trains():
    cfg = TrainConfig(d_model=16, n_head=2, d_ff=32, n_layer=1, batch_size=4, length_groups=2, n_context_max=30,
                      n_queries=2, warmup=2, steps=6, eval_every=0, output="evidence", evidence_rounds=2)
    model, history = train(CHAIN, DirichletPrior(1.0), cfg, progress=False)
    assert len(history) == 6 and all(math.isfinite(h["loss"]) for h in history)
    assert model.readout.guess.weight.grad is not None
