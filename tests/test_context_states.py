"""The context rows' states are computed once and reused by every chunk of queries (and every later call):
the same bits as computing everything in one forward pass."""
import pytest
import torch

from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.transformer import TransformerEstimator, construct_model
from bncompare.transformer.encoding import encode
from bncompare.transformer.train import TrainConfig, build_model
from bncompare.transformer.trained import PAPER

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = {
    "trained": lambda g: build_model(g, TrainConfig()),
    "paper (full attention)": lambda g: build_model(g, TrainConfig(**PAPER)),
    "evidence readout": lambda g: build_model(g, TrainConfig(model={"output": "evidence"})),
    "constructed": lambda g: construct_model(g, "dirichlet"),
}


@pytest.fixture(scope="module")
def task():
    g = get_graph("tree-7")
    gen = torch.Generator().manual_seed(0)
    cpts = DirichletPrior(1.0).sample(g, 6, gen)
    return g, sample(g, cpts, 120, gen), sample(g, cpts, 30, gen)


@pytest.mark.parametrize("name", MODELS)
def test_a_forward_pass_on_cached_context_states_gives_the_same_bits(task, name):
    g, contexts, queries = task
    model = MODELS[name](g).eval()
    tokens = encode(g, contexts, queries, range(g.n_nodes), next(model.parameters()).dtype, view=model.cfg.query_view)
    with torch.no_grad():
        whole = model(tokens, contexts.shape[1])
        cached = model(tokens, contexts.shape[1], seen=model.context_states(tokens, contexts.shape[1]))
    assert torch.equal(whole, cached)


@pytest.mark.parametrize("name", ["trained", "paper (full attention)"])
def test_answers_do_not_depend_on_chunks_or_on_earlier_calls(task, name):
    g, contexts, queries = task
    model = MODELS[name](g).eval()
    one = TransformerEstimator(model, max_query_tokens=10_000).fit(g, contexts).predict_proba(queries)
    est = TransformerEstimator(model, batch_size=4, max_query_tokens=8).fit(g, contexts)  # many chunks
    est.predict_proba(queries[:, :3], [2])  # an earlier call leaves the contexts' states behind
    again = est.predict_proba(queries)
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    other = sample(g, DirichletPrior(1.0).sample(g, 6, torch.Generator().manual_seed(1)), 120)
    refit = est.fit(g, other).predict_proba(queries)  # a new fit forgets the old contexts' states
    fresh = TransformerEstimator(model).fit(g, other).predict_proba(queries)
    assert all(torch.equal(a, b) for a, b in zip(refit, fresh))
