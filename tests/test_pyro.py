"""The Pyro model and the Pyro baselines: real sampling and real inference, checked against closed forms."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from bncompare.errors import BNError
from bncompare.estimators import DirichletPosterior, PyroConjugate, PyroNUTS, PyroSVI
from bncompare.networks import BayesNet, DirichletPrior, Graph, get_graph, load_network, sample
from bncompare.networks.families import chain
from bncompare.networks.pyro_model import log_likelihood, sample_pyro

FALSE_ALARM = 1e-3  # per test; seeds are fixed, so each outcome is deterministic


def small_net(seed=0) -> BayesNet:
    """Multi-valued, two parents in non-alphabetical order: a wrong table layout would show."""
    g = Graph.from_edges(["Z", "A", "C", "D"], [("Z", "A"), ("Z", "C"), ("A", "C"), ("C", "D")],
                         {"Z": 3, "A": 2, "C": 3, "D": 2}, parent_order={"C": ["Z", "A"]})
    cpts = DirichletPrior(3.0).sample(g, 1, torch.Generator().manual_seed(seed))
    return BayesNet(g, tuple(c[0].numpy() for c in cpts))


def exact_joint(graph, cpts):
    states = np.array(list(itertools.product(*[range(c) for c in graph.cards])))
    p = np.ones(len(states))
    for m in range(graph.n_nodes):
        p *= cpts[m][graph.config_index(torch.from_numpy(states), m).numpy(), states[:, m]]
    return p


def joint_counts(graph, x):
    code = torch.zeros(x.shape[:-1], dtype=torch.long)
    for m, c in enumerate(graph.cards):
        code = code * c + x[..., m]
    return np.bincount(code.reshape(-1).numpy(), minlength=int(np.prod(graph.cards)))


def test_pyro_model_and_fast_sampler_agree_in_distribution():
    net = small_net()
    g = net.graph
    p = exact_joint(g, net.cpts)
    assert p.sum() == pytest.approx(1) and (p * 20_000 > 5).all()  # chi-square is valid on every cell
    x_pyro, used = sample_pyro(g, 20_000, cpts=net.cpt_batch(), seed=1)
    x_fast = sample(g, net.cpt_batch(), 20_000, torch.Generator().manual_seed(2))
    assert all(torch.equal(u, c) for u, c in zip(used, net.cpt_batch()))
    c_pyro, c_fast = joint_counts(g, x_pyro[0]), joint_counts(g, x_fast[0])
    # each against the exact joint, and the two against each other (homogeneity)
    assert stats.chisquare(c_pyro, p * c_pyro.sum()).pvalue > FALSE_ALARM
    assert stats.chisquare(c_fast, p * c_fast.sum()).pvalue > FALSE_ALARM
    assert stats.chi2_contingency(np.stack([c_pyro, c_fast])).pvalue > FALSE_ALARM
    # the same test does catch a model that reads the CPT with the parents swapped
    wrong = list(net.cpts)
    wrong[2] = net.cpts[2].reshape(2, 3, 3).transpose(1, 0, 2).reshape(6, 3)  # rows read as (A, Z)
    assert stats.chisquare(c_pyro, exact_joint(g, wrong) * c_pyro.sum()).pvalue < 1e-6


def test_pyro_log_likelihood_matches_table_lookup():
    net = small_net(seed=4)
    x = net.sample(300, seed=0)
    direct = sum(np.log(net.cpts[m][net.graph.config_index(x, m).numpy(), x[:, m].numpy()]).sum() for m in range(4))
    ours = log_likelihood(net.graph, [torch.as_tensor(c) for c in net.cpts], x).item()
    assert ours == pytest.approx(direct, rel=1e-12)


def test_pyro_prior_draws():
    g = get_graph("chain-5")
    x, cpts = sample_pyro(g, 3, n_sets=400, alpha=0.5, seed=0)
    assert x.shape == (400, 3, 5) and cpts[1].shape == (400, 2, 2)
    rows = cpts[1].reshape(-1, 2)[:, 0].numpy()  # Beta(0.5, 0.5): mean 1/2, variance 1/8
    assert abs(rows.mean() - 0.5) < 5 * np.sqrt(0.125 / len(rows))
    assert rows.var() == pytest.approx(0.125, rel=0.15)
    # the root's value frequency is a Beta(0.5,0.5) mixture: its marginal is uniform
    assert abs(x[..., 0].double().mean().item() - 0.5) < 0.05


def test_sample_pyro_is_seeded_and_leaves_global_rng_alone():
    net = small_net()
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _ = sample_pyro(net.graph, 50, cpts=net.cpt_batch(), seed=5)
    assert torch.equal(torch.rand(3), before)
    b, _ = sample_pyro(net.graph, 50, cpts=net.cpt_batch(), seed=5)
    c, _ = sample_pyro(net.graph, 50, cpts=net.cpt_batch(), seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_conjugate_equals_dirichlet_posterior():
    # The expected posterior mean is counted row by row in plain Python, independently of count_tables.
    net = load_network("sachs")
    g = net.graph
    for n in (0, 30):
        x = sample(g, [c.expand(3, -1, -1) for c in net.cpt_batch()], n, torch.Generator().manual_seed(n))
        got = PyroConjugate(0.4).fit(g, x).cpts_
        for b in range(3):
            for m in range(g.n_nodes):
                want = np.full((g.n_configs[m], g.cards[m]), 0.4)
                for row in x[b].tolist():
                    config = 0
                    for p in g.parents[m]:  # mixed radix, last parent fastest
                        config = config * g.cards[p] + row[p]
                    want[config, row[m]] += 1
                want /= want.sum(1, keepdims=True)
                assert np.allclose(got[m][b].numpy(), want, rtol=0, atol=1e-12), (n, b, m)


def test_contexts_model_likelihood_is_the_bn_models():
    # The batched model sees counts; its log-likelihood factor must equal the row-level Pyro model's.
    from pyro import poutine

    from bncompare.estimators.counting import count_tables
    from bncompare.estimators.pyro_baselines import contexts_model

    net = small_net(seed=4)
    x = net.sample(40, seed=5)[None].repeat(2, 1, 1)
    x[1] = x[1].flip(0)[:, :]  # same rows, other order
    tables = [torch.as_tensor(c, dtype=torch.float64)[None].expand(2, -1, -1) for c in net.cpts]
    cond = poutine.condition(contexts_model, {f"cpt_{n}": t for n, t in zip(net.graph.names, tables)})
    trace = poutine.trace(cond).get_trace(net.graph, 1.0, count_tables(net.graph, x))
    trace.compute_log_prob()
    factors = sum(site["log_prob"] for name, site in trace.nodes.items() if name.startswith("rows_"))
    want = float(log_likelihood(net.graph, [torch.as_tensor(c) for c in net.cpts], x[0]))
    assert factors.shape == (2,) and torch.allclose(factors, torch.full((2,), want, dtype=torch.float64), rtol=1e-12)


def chain_contexts(n_nodes, B, N, seed):
    g = chain(n_nodes)
    cpts = DirichletPrior(1.0).sample(g, B, torch.Generator().manual_seed(seed))
    return g, sample(g, cpts, N, torch.Generator().manual_seed(seed + 1))


def check_nuts(g, x, alpha, est):
    exact = DirichletPosterior(alpha).fit(g, x).cpts_
    for m in range(g.n_nodes):
        # Monte Carlo standard error per cell; n_eff capped at the draw count (its estimate is noisy)
        mcse = est.posterior_sd_[m] / est.n_eff_[m].clamp_max(est.num_samples).sqrt()
        z = (est.cpts_[m] - exact[m]).abs() / mcse
        assert z.max().item() < 4.5, (m, z.max().item())
        assert (est.cpts_[m] - exact[m]).abs().max().item() < 0.06
        assert est.n_eff_[m].min().item() > 20  # the chain mixed


def test_nuts_posterior_mean_within_monte_carlo_error():
    g, x = chain_contexts(3, B=1, N=100, seed=0)
    est = PyroNUTS(alpha=1.0, num_samples=100, warmup_steps=100, seed=0).fit(g, x)
    check_nuts(g, x, 1.0, est)


@pytest.mark.slow
def test_nuts_paper_size_and_multivalued():
    g, x = chain_contexts(5, B=2, N=200, seed=1)
    check_nuts(g, x, 1.0, PyroNUTS(1.0, num_samples=200, warmup_steps=200, seed=1).fit(g, x))
    net = small_net(seed=2)
    x = net.sample(150, seed=3)[None]
    check_nuts(net.graph, x, 0.5, PyroNUTS(0.5, num_samples=300, warmup_steps=200, seed=2).fit(net.graph, x))


def test_svi_diag_normal_lands_near_posterior_mean():
    g, x = chain_contexts(3, B=1, N=100, seed=0)
    exact = DirichletPosterior(1.0).fit(g, x).cpts_
    est = PyroSVI(1.0, steps=300, lr=0.1, guide="diag_normal", seed=0).fit(g, x)
    for a, b in zip(est.cpts_, exact):
        assert (a - b).abs().max().item() < 0.05


def test_svi_delta_finds_the_map():
    g, x = chain_contexts(3, B=1, N=100, seed=0)
    est = PyroSVI(2.0, steps=300, lr=0.1, guide="delta", seed=0).fit(g, x)
    # Beta(2, 2) prior: the MAP row is (n_v + 1) / (n + 2)
    for m in range(3):
        from bncompare.estimators import count_tables

        n = count_tables(g, x)[m]
        assert (est.cpts_[m] - (n + 1) / (n.sum(-1, keepdim=True) + 2)).abs().max().item() < 1e-3


def test_inference_is_reproducible_per_plate_and_ignores_row_order():
    g, x = chain_contexts(3, B=4, N=20, seed=0)
    for make in (lambda seed: PyroSVI(1.0, steps=15, num_draws=20, seed=seed, plate_size=2),
                 lambda seed: PyroNUTS(1.0, num_samples=5, warmup_steps=5, seed=seed, plate_size=2)):
        fit = lambda xs, seed=0: make(seed).fit(g, xs).cpts_  # noqa: B023, E731
        whole = fit(x)
        # a plate of contexts gets the same result whatever other plates share the batch, and wherever it sits
        assert all(torch.equal(a[:2], b[2:]) for a, b in zip(whole, fit(torch.cat([x[2:], x[:2]]))))
        shuffled = x[:, torch.randperm(20, generator=torch.Generator().manual_seed(3))]
        assert all(torch.equal(a, b) for a, b in zip(whole, fit(shuffled)))  # the model sees counts only
        assert not all(torch.equal(a, b) for a, b in zip(whole, fit(x, seed=1)))
        assert whole[2].shape == (4, 2, 2)


def test_one_nuts_run_serves_a_plate_of_contexts():
    # 6 contexts in one chain: each context's posterior mean within Monte Carlo error of the closed form
    g, x = chain_contexts(3, B=6, N=60, seed=2)
    est = PyroNUTS(alpha=1.0, num_samples=100, warmup_steps=100, seed=0).fit(g, x)
    assert [tuple(t.shape) for t in est.cpts_] == [(6, 1, 2), (6, 2, 2), (6, 2, 2)]
    check_nuts(g, x, 1.0, est)


def test_inference_with_no_rows_samples_the_prior():
    g = chain(3)
    x = torch.zeros(2, 0, 3, dtype=torch.long)
    for est in (PyroNUTS(1.0, num_samples=30, warmup_steps=30), PyroSVI(1.0, steps=30, num_draws=30)):
        cpts = est.fit(g, x).cpts_
        assert [tuple(c.shape) for c in cpts] == [(2, 1, 2), (2, 2, 2), (2, 2, 2)]
        for c in cpts:
            assert torch.allclose(c.sum(-1), torch.ones(c.shape[:-1], dtype=c.dtype))
            assert (c - 0.5).abs().max() < 0.25  # Beta(1, 1) prior mean 1/2, few draws


def test_pyro_settings_are_checked():
    with pytest.raises(BNError, match="guide"):
        PyroSVI(guide="flow")
    with pytest.raises(BNError, match="alpha"):
        PyroNUTS(alpha=0)
    with pytest.raises(BNError, match="alpha"):
        PyroConjugate(alpha=-1)
    with pytest.raises(BNError, match="plate_size"):
        PyroNUTS(plate_size=0)
    assert (PyroConjugate().name, PyroNUTS().name, PyroSVI().name) == ("pyro_conjugate", "pyro_nuts", "pyro_svi")
