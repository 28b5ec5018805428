"""The estimator contract, checked on every kind a study config may name (the registry's table).

fit returns the estimator; predictions are distributions (non-negative rows summing to 1) of the
right shapes; they do not depend on the order of the rows in a context, nor on how the contexts
are batched; predicting before fitting is a one-line BNError.
"""
import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.studies import registry

TINY_TRAIN = {"steps": 3, "eval_every": 0, "d_model": 16, "n_head": 2, "d_ff": 32, "n_context_max": 20,
              "batch_size": 4}
# Small settings, so every kind runs in a second or two. Pyro runs one inference per plate of contexts:
# plates of 2 make the batch split below fall on a plate boundary.
FAST = {
    "pyro_nuts": {"num_samples": 4, "warmup_steps": 4, "plate_size": 2},
    "pyro_svi": {"steps": 5, "num_draws": 5, "plate_size": 2},
    "trained": {"train_cfg": TINY_TRAIN, "progress": False},
    "transformer_agnostic": {"train_cfg": TINY_TRAIN, "progress": False},
}
TRAINED = {"trained", "transformer_agnostic"}
KINDS = sorted(registry.KINDS)  # the table as shipped (tests may register more at run time)
GRAPH = get_graph("tree-5")  # binary: every kind applies (the uniform-prior references are binary only)


def data(B=4, N=12, Q=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cpts = DirichletPrior(0.5).sample(GRAPH, B, gen)  # skewed rows: zeros and unseen configurations occur
    return sample(GRAPH, cpts, N, gen), sample(GRAPH, cpts, Q, gen)


def build(kind, tmp_path):
    params = dict(FAST.get(kind, {}))
    if kind in TRAINED:
        params["cache_dir"] = str(tmp_path)
    return registry.build(kind, params)


@pytest.mark.parametrize("kind", KINDS)
def test_estimator_contract(kind, tmp_path):
    contexts, queries = data()
    est = build(kind, tmp_path)
    with pytest.raises(BNError):
        est.predict_proba(queries)  # before fit
    est.prepare(GRAPH, DirichletPrior(1.0), seed=0)
    assert est.fit(GRAPH, contexts) is est
    probs = est.predict_proba(queries)
    assert len(probs) == GRAPH.n_nodes
    for m, p in enumerate(probs):
        assert p.shape == (4, 6, GRAPH.cards[m])
        assert (p >= 0).all() and torch.allclose(p.sum(-1).double(), torch.ones(4, 6, dtype=torch.float64),
                                                 atol=1e-6)

    # the order of the rows in a context changes nothing
    shuffled = contexts[:, torch.randperm(contexts.shape[1], generator=torch.Generator().manual_seed(1))]
    other = build(kind, tmp_path).prepare(GRAPH, DirichletPrior(1.0), seed=0)
    for a, b in zip(probs, other.fit(GRAPH, shuffled).predict_proba(queries)):
        assert torch.allclose(a.double(), b.double(), atol=1e-5, rtol=0), kind

    # nor does fitting the contexts in two batches instead of one
    halves = [build(kind, tmp_path).prepare(GRAPH, DirichletPrior(1.0), seed=0).fit(GRAPH, contexts[s])
              .predict_proba(queries[s]) for s in (slice(0, 2), slice(2, 4))]
    for m, a in enumerate(probs):
        assert torch.allclose(a.double(), torch.cat([h[m] for h in halves]).double(), atol=1e-5, rtol=0), kind
