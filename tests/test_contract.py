"""The estimator contract, checked on every kind a study config may name (the registry's table).

fit returns the estimator; predictions are distributions of the right shapes (discrete: non-negative
rows summing to 1; linear-Gaussian: Student-t parameters with df > 0, scale > 0; autoregressive: the
next state's (df, loc, scale), scale 0 for point forecasters); they do not depend on the order of the
rows in a context (a sequence's prefix is ordered: there, not on the query rows' values), nor on how the
contexts are batched; predicting before fitting is a one-line BNError. Each kind is checked on the
variables it declares (``tags.variables``).
"""
import math

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.networks.autoregressive import ARPrior, ar_graph
from bncompare.networks.gaussian import DF, LOC, SCALE, sample_gaussian
from bncompare.networks.priors import NIGPrior
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
    "pyro_gaussian_nuts": {"num_samples": 4, "warmup_steps": 4, "plate_size": 2},
    "pyro_gaussian_svi": {"steps": 5, "num_draws": 5, "plate_size": 2},
    "gaussian_trained": {"train_cfg": {"steps": 3, "eval_every": 0, "n_context_max": 20, "batch_size": 4},
                         "progress": False},
    "ar_trained": {"train_cfg": {"steps": 3, "eval_every": 0, "n_context_max": 12, "batch_size": 4},
                   "progress": False},
    "ar_trained_linear": {"horizon": 12, "steps": 3, "batch_size": 8, "eval_every": 0, "n_eval": 8,
                          "progress": False},
    "ar_one_step_gd": {"horizon": 12},
    "ar_constructed_linear": {"horizon": 12},
    "ar_pyro_nuts": {"num_samples": 4, "warmup_steps": 4, "plate_size": 2},
}
TRAINED = {"trained", "transformer_agnostic", "gaussian_trained", "ar_trained", "ar_trained_linear"}
KINDS = sorted(registry.KINDS)  # the table as shipped (tests may register more at run time)


class Discrete:
    graph = get_graph("tree-5")  # binary: every kind applies (the uniform-prior references are binary only)
    prior = DirichletPrior(1.0)

    def data(self, B=4, N=12, Q=6, seed=0):
        gen = torch.Generator().manual_seed(seed)
        cpts = DirichletPrior(0.5).sample(self.graph, B, gen)  # skewed rows: zeros and unseen configurations occur
        return sample(self.graph, cpts, N, gen), sample(self.graph, cpts, Q, gen)

    def check(self, m, p):
        assert p.shape == (4, 6, self.graph.cards[m])
        assert (p >= 0).all() and torch.allclose(p.sum(-1).double(), torch.ones(4, 6, dtype=torch.float64),
                                                 atol=1e-6)


class Gaussian:
    graph = get_graph("gaussian-tree-5")
    prior = NIGPrior()

    def data(self, B=4, N=12, Q=6, seed=0):
        gen = torch.Generator().manual_seed(seed)
        params = self.prior.sample(self.graph, B, gen)
        return sample_gaussian(self.graph, params, N, gen), sample_gaussian(self.graph, params, Q, gen)

    def check(self, m, p):
        assert p.shape == (4, 6, 3)
        assert (p[..., DF] > 0).all() and (p[..., SCALE] > 0).all() and torch.isfinite(p[..., LOC]).all()
        assert not math.isnan(float(p.sum()))


class Autoregressive:
    graph = ar_graph(3)
    prior = ARPrior(law="gaussian", sigma=0.1)
    exchangeable = False  # a context is a sequence's prefix: its order is the data

    def data(self, B=4, N=12, Q=6, seed=0):
        gen = torch.Generator().manual_seed(seed)
        states = self.prior.sequences(self.prior.sample(self.graph, B, gen), N + 1, gen)
        return states[:, :N], states[:, N:].expand(B, Q, 3) + torch.randn(B, Q, 3, generator=gen)

    def check(self, m, p):
        assert p.shape == (4, 6, 3)
        assert (p[..., DF] > 0).all() and (p[..., SCALE] >= 0).all() and torch.isfinite(p[..., LOC]).all()
        assert (p == p[:, :1]).all()  # the same next state for every query row


Discrete.exchangeable = Gaussian.exchangeable = True
FAMILIES = {"discrete": Discrete(), "gaussian": Gaussian(), "autoregressive": Autoregressive()}  # by variables


def family(kind):
    return FAMILIES[registry.factory(kind).tags.variables]


def build(kind, tmp_path):
    params = dict(FAST.get(kind, {}))
    if kind in TRAINED:
        params["cache_dir"] = str(tmp_path)
    return registry.build(kind, params)


@pytest.mark.parametrize("kind", KINDS)
def test_estimator_contract(kind, tmp_path):
    fam = family(kind)
    graph, prior = fam.graph, fam.prior
    contexts, queries = fam.data()
    est = build(kind, tmp_path)
    with pytest.raises(BNError):
        est.predict(queries)  # before fit
    est.prepare(graph, prior, seed=0)
    assert est.fit(graph, contexts) is est
    probs = est.predict(queries)
    assert len(probs) == graph.n_nodes
    for m, p in enumerate(probs):
        fam.check(m, p)

    other = build(kind, tmp_path).prepare(graph, prior, seed=0)
    if fam.exchangeable:  # the order of the rows in a context changes nothing
        shuffled = contexts[:, torch.randperm(contexts.shape[1], generator=torch.Generator().manual_seed(1))]
        again = other.fit(graph, shuffled).predict(queries)
    else:  # the query rows (the true next state) are never read
        again = other.fit(graph, contexts).predict(torch.zeros_like(queries))
    for a, b in zip(probs, again):
        assert torch.allclose(a.double(), b.double(), atol=1e-5, rtol=0), kind

    # nor does fitting the contexts in two batches instead of one
    halves = [build(kind, tmp_path).prepare(graph, prior, seed=0).fit(graph, contexts[s])
              .predict(queries[s]) for s in (slice(0, 2), slice(2, 4))]
    for m, a in enumerate(probs):
        assert torch.allclose(a.double(), torch.cat([h[m] for h in halves]).double(), atol=1e-5, rtol=0), kind
