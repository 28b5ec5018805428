"""Autoregressive generation: coupled with ancestral sampling, for every kind of estimator."""
import itertools

import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators import MLE, DirichletPosterior, NaiveMLE
from bncompare.estimators.generate import generate
from bncompare.networks import DirichletPrior, Graph, get_graph, sample, sample_with_uniforms
from bncompare.transformer import (
    ConstructedTransformer,
    InContextTransformer,
    TransformerConfig,
    TransformerEstimator,
    init_weights,
)
from bncompare.transformer.encoding import Layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MIXED = Graph(("A", "B", "C", "D", "E"), (3, 2, 4, 2, 3), ((), (0,), (0, 1), (2,), (1, 2, 3)))


def contexts_for(graph, B=4, N=60, seed=0):
    """Contexts from skewed CPTs (so several parent configurations are unseen), plus an empty context."""
    gen = torch.Generator().manual_seed(seed)
    return sample(graph, DirichletPrior(0.4).sample(graph, B, gen), N, gen), gen


@pytest.mark.parametrize("graph", [MIXED, get_graph("general-7")], ids=["mixed-cards", "general-7"])
def test_constructed_transformer_reproduces_ancestral_sampling_from_mle(graph):
    contexts, gen = contexts_for(graph)
    u = torch.rand(contexts.shape[0], 300, graph.n_nodes, generator=gen, dtype=torch.float64)
    mle = MLE().fit(graph, contexts)
    assert any(s.any() for s in mle.unseen(sample_with_uniforms(graph, mle.cpts_, u)))  # the fallback is exercised
    want = sample_with_uniforms(graph, mle.cpts_, u)
    got = generate(ConstructedTransformer("mle").fit(graph, contexts), 300, u=u)
    assert torch.equal(got, want)
    assert torch.equal(generate(mle, 300, u=u), want)
    assert torch.equal(generate(ConstructedTransformer("mle").fit(graph, contexts), 300, u=u, chunk_size=64), want)


def test_empty_context_generates_uniformly():
    contexts = torch.zeros(2, 0, MIXED.n_nodes, dtype=torch.long)
    u = torch.rand(2, 50, MIXED.n_nodes, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = generate(ConstructedTransformer("mle").fit(MIXED, contexts), 50, u=u)
    assert torch.equal(got, (u * torch.tensor(MIXED.cards)).long())


def test_counting_estimators_match_sample_with_same_seed():
    contexts, _ = contexts_for(MIXED)
    for est in (MLE(), DirichletPosterior(0.5)):
        est.fit(MIXED, contexts)
        got = generate(est, 200, generator=torch.Generator().manual_seed(7))
        want = sample(MIXED, est.cpts_, 200, torch.Generator().manual_seed(7))
        assert torch.equal(got, want)


def test_constructed_dirichlet_reproduces_posterior_sampling():
    contexts, gen = contexts_for(MIXED, seed=3)
    u = torch.rand(contexts.shape[0], 200, MIXED.n_nodes, generator=gen, dtype=torch.float64)
    post = DirichletPosterior(2.0).fit(MIXED, contexts)
    got = generate(ConstructedTransformer("dirichlet", alpha=2.0).fit(MIXED, contexts), 200, u=u)
    assert torch.equal(got, sample_with_uniforms(MIXED, post.cpts_, u))


def test_naive_mle_resamples_context_rows():
    # The whole-prefix MLE's joint is the empirical distribution: every generated row is a context row.
    contexts, gen = contexts_for(MIXED, B=3, N=25)
    x = generate(NaiveMLE().fit(MIXED, contexts), 100, generator=gen)
    for b in range(3):
        rows = {tuple(r) for r in contexts[b].tolist()}
        assert all(tuple(r) in rows for r in x[b].tolist())


def test_trained_style_model_generates_valid_deterministic_samples():
    # A model with random weights (no counting rule to fall back on): every generated value must be the
    # inverse-CDF draw of the model's OWN predictive distribution given the values drawn before it,
    # recomputed here node by node with plain Python, and the same uniforms must give the same rows.
    graph = MIXED
    lay = Layout(graph.cards)
    cfg = TransformerConfig(d_model=16, n_head=2, d_ff=32, context_attention="full", attn_scale="fixed", mlp="relu",
                            output="logits", match_scores=False).for_layout(lay)
    model = init_weights(InContextTransformer(cfg), seed=0)
    contexts, gen = contexts_for(graph, B=2, N=30)
    est = TransformerEstimator(model).fit(graph, contexts)
    u = torch.rand(2, 40, graph.n_nodes, generator=gen, dtype=torch.float64)
    x = generate(est, 40, u=u)
    assert x.shape == (2, 40, graph.n_nodes) and x.dtype == torch.long
    for m in range(graph.n_nodes):
        probs = est.predict_proba(x, [m])[0]  # values at m and later are ignored: the prefix is x[..., :m]
        for b, i in itertools.product(range(2), range(40)):
            cum, want = 0.0, graph.cards[m] - 1
            for v, p in enumerate(probs[b, i].tolist()):
                cum += p
                if u[b, i, m].item() < cum:
                    want = v
                    break
            assert x[b, i, m].item() == want, (m, b, i)
    assert len({tuple(r) for r in x.reshape(-1, graph.n_nodes).tolist()}) > 5  # not a constant sample
    again = TransformerEstimator(model).fit(graph, contexts)
    assert torch.equal(x, generate(again, 40, u=u))


def test_generated_joint_matches_estimated_network():
    # Generate many samples from the MLE of one context and compare their joint
    # frequencies with the joint the MLE CPTs define (exact enumeration).
    graph = get_graph("tree-5")
    contexts, gen = contexts_for(graph, B=1, N=40, seed=5)
    est = ConstructedTransformer("mle").fit(graph, contexts)
    n = 20000
    x = generate(est, n, generator=gen)[0]
    cpts = MLE().fit(graph, contexts).cpts_
    states = torch.tensor(list(itertools.product(*[range(c) for c in graph.cards])))
    joint = torch.ones(len(states), dtype=torch.float64)
    for m in range(graph.n_nodes):
        joint *= cpts[m][0, graph.config_index(states, m), states[:, m]]
    code = (x * torch.tensor([16, 8, 4, 2, 1])).sum(-1)
    freq = torch.bincount(code, minlength=len(states)).double() / n
    tv = 0.5 * (freq - joint).abs().sum().item()
    print(f"TV(generated, MLE joint) = {tv:.4f}")
    assert tv < 0.03, tv  # the sampling noise alone gives ~0.01 for 32 states at n = 20000
    assert freq[joint == 0].sum() == 0  # never a state the MLE gives probability 0


def test_generate_rejects_bad_input():
    contexts, _ = contexts_for(MIXED, B=2, N=10)
    est = MLE().fit(MIXED, contexts)
    with pytest.raises(BNError, match="call fit"):
        generate(MLE(), 5)
    with pytest.raises(BNError, match="shape"):
        generate(est, 5, u=torch.rand(2, 4, MIXED.n_nodes, dtype=torch.float64))
    with pytest.raises(BNError, match=r"\[0, 1\)"):
        generate(est, 5, u=torch.ones(2, 5, MIXED.n_nodes, dtype=torch.float64))
    with pytest.raises(BNError, match="integer >= 0"):
        generate(est, -1)
    assert generate(est, 0).shape == (2, 0, MIXED.n_nodes)
