"""The linear-Gaussian estimators: least squares against pgmpy, the NIG posterior against an independent
computation and against Pyro NUTS, Bayes beating MLE at small N, and the estimator contract."""
import math
import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from bncompare.errors import BNError
from bncompare.estimators.gaussian import LeastSquares, NaiveLeastSquares, NIGPosterior, Ridge
from bncompare.estimators.gaussian_libraries import PgmpyLinearGaussian, PyroGaussianNUTS, PyroGaussianSVI, cpd_params
from bncompare.networks.families import random_dag, tree
from bncompare.networks.gaussian import DF, LOC, SCALE, check_gaussian_batch, sample_gaussian
from bncompare.networks.graph import Graph
from bncompare.networks.priors import NIGPrior

PRIOR = NIGPrior(mean=0.0, precision=1.0, a=3.0, b=2.0)


def gaussian(g: Graph) -> Graph:
    return Graph(g.names, (1,) * g.n_nodes, g.parents, "gaussian")


TREE = gaussian(tree(7))


def draw(graph, B, N, Q=0, seed=0, prior=PRIOR):
    gen = torch.Generator().manual_seed(seed)
    params = prior.sample(graph, B, gen)
    x = sample_gaussian(graph, params, N + Q, gen)
    return params, x[:, :N], x[:, N:]


def max_gap(a, b):
    return max(float((p - q).abs().max()) for p, q in zip(a, b))


# ----- least squares = pgmpy ---------------------------------------------------------------------

def test_least_squares_equals_pgmpy_on_100_random_dags():
    rng = np.random.default_rng(0)
    for i in range(100):
        n = int(rng.integers(2, 9))
        g = gaussian(random_dag(n, p=float(rng.uniform(0.2, 0.9)), seed=i))
        N = int(rng.integers(12, 60))  # above full rank: the least-squares answer is unique
        _, x, _ = draw(g, 2, N, seed=i)
        ours = LeastSquares().fit(g, x).network_
        theirs = PgmpyLinearGaussian().fit(g, x).network_
        assert max_gap(ours, theirs) < 1e-8, (i, g.parents, N)


def test_below_full_rank_both_give_the_minimum_norm_weights():
    # 3 rows for up to 6 parents: many solutions; both pick the minimum-norm weights with a free intercept
    g = gaussian(random_dag(7, p=1.0, seed=3))
    _, x, _ = draw(g, 3, 3, seed=1)
    ours = LeastSquares().fit(g, x).network_
    assert max_gap(ours, PgmpyLinearGaussian().fit(g, x).network_) < 1e-8
    last = ours[-1]
    assert float(last[:, -1].max()) == 1e-6  # an exact fit: sigma sits on its declared floor
    # any other solution (add a null-space direction of the centred parents) has a larger weight norm
    xc = x[0, :, :6] - x[0, :, :6].mean(0)
    null = torch.linalg.svd(xc, full_matrices=True).Vh[-1]
    assert float((xc @ null).abs().max()) < 1e-10
    assert float(last[0, 1:-1].norm()) < float((last[0, 1:-1] + 0.1 * null).norm())


def test_pgmpy_coefficients_are_read_by_parent_name():
    from pgmpy.factors.continuous import LinearGaussianCPD

    g = Graph.from_edges(["a", "b", "c"], [("a", "c"), ("b", "c")], variables="gaussian")
    cpd = LinearGaussianCPD("c", beta=[0.5, 2.0, 3.0], std=1.5, evidence=["b", "a"])  # pgmpy's order, not ours
    assert cpd_params(g, 2, cpd).tolist() == [0.5, 3.0, 2.0, 1.5]


def pgmpy_network(name):
    """A pgmpy example model as our graph and parameter batch (G = 1), written here by hand."""
    from pgmpy.utils import get_example_model

    with warnings.catch_warnings():  # its successor, load_model, goes online; this one reads the wheel
        warnings.simplefilter("ignore", FutureWarning)
        model = get_example_model(name)
    names = [str(v) for v in model.nodes()]
    cpds = {str(c.variable): c for c in model.get_cpds()}
    order = {n: [str(v) for v in cpds[n].evidence] for n in names}
    g = Graph.from_edges(names, [(str(u), str(v)) for u, v in model.edges()], parent_order=order,
                         variables="gaussian")
    params = [torch.tensor([[float(cpds[n].beta[0]), *map(float, cpds[n].beta[1:]), float(cpds[n].std)]],
                           dtype=torch.float64) for n in g.names]
    return g, params


@pytest.mark.parametrize("name", ["ecoli70", "magic-niab", "magic-irri", "arth150"])
def test_least_squares_equals_pgmpy_on_the_real_networks(name):
    g, params = pgmpy_network(name)
    x = sample_gaussian(g, [p.expand(2, -1) for p in params], 400, torch.Generator().manual_seed(0))
    ours = LeastSquares().fit(g, x).network_
    assert max_gap(ours, PgmpyLinearGaussian().fit(g, x).network_) < 1e-8
    # and the conversion above is right: the fitted sigmas are near the truth the rows were drawn from
    assert all(float((p[0, -1] / t[0, -1] - 1).abs()) < 0.25 for p, t in zip(ours, params))


def test_least_squares_is_the_textbook_fit():
    # against numpy's lstsq on (1, parents) and the MLE divisor, per context
    _, x, _ = draw(TREE, 5, 25, seed=4)
    fit = LeastSquares().fit(TREE, x).network_
    for m, pa in enumerate(TREE.parents):
        for b in range(5):
            X = np.column_stack([np.ones(25), x[b][:, list(pa)].numpy()])
            y = x[b][:, m].numpy()
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            sigma = np.sqrt(((y - X @ coef) ** 2).mean())
            np.testing.assert_allclose(fit[m][b].numpy(), np.r_[coef, sigma], atol=1e-10)


def test_least_squares_edge_cases_are_declared():
    _, x, q = draw(TREE, 2, 0, Q=3, seed=0)
    est = LeastSquares().fit(TREE, x)  # no rows: the standard Normal
    for p in est.network_:
        assert torch.equal(p[:, :-1], torch.zeros_like(p[:, :-1])) and torch.equal(p[:, -1], torch.ones(2).double())
    _, x1, _ = draw(TREE, 2, 1, seed=0)
    one = LeastSquares(min_sigma=1e-3).fit(TREE, x1)  # one row: the row itself, zero weights, the floor
    assert torch.allclose(one.network_[0][:, 0], x1[:, 0, 0])
    assert torch.equal(one.network_[0][:, -1], torch.full((2,), 1e-3, dtype=torch.float64))
    assert torch.isfinite(torch.stack([p[..., SCALE] for p in one.predict(q)])).all()


def test_ridge_shrinks_the_weights_not_the_intercept():
    _, x, _ = draw(TREE, 4, 20, seed=2)
    ls, big = LeastSquares().fit(TREE, x).network_, Ridge(penalty=1e9).fit(TREE, x).network_
    small = Ridge(penalty=1e-9).fit(TREE, x).network_
    assert max_gap(small, ls) < 1e-8
    for m in range(1, TREE.n_nodes):
        assert float(big[m][:, 1:-1].abs().max()) < 1e-6
        assert torch.allclose(big[m][:, 0], x[..., m].mean(1), atol=1e-6)  # the intercept is free: the mean
    # against the closed form with an unpenalized intercept
    m, pa, lam = 3, list(TREE.parents[3]), 2.5
    fit = Ridge(penalty=lam).fit(TREE, x).network_[m]
    for b in range(4):
        X, y = x[b][:, pa].numpy(), x[b][:, m].numpy()
        Xc, yc = X - X.mean(0), y - y.mean()
        w = np.linalg.solve(Xc.T @ Xc + lam * np.eye(len(pa)), Xc.T @ yc)
        np.testing.assert_allclose(fit[b, 1:-1].numpy(), w, atol=1e-12)
        np.testing.assert_allclose(fit[b, 0], y.mean() - X.mean(0) @ w, atol=1e-12)


def test_naive_regresses_on_the_whole_prefix():
    g = gaussian(tree(5))
    _, x, q = draw(g, 3, 30, Q=4, seed=5)
    naive = NaiveLeastSquares().fit(g, x)
    assert naive.network_ is None and naive.tags.graph_agnostic
    complete = Graph(g.names, (1,) * 5, tuple(tuple(range(m)) for m in range(5)), "gaussian")
    full = LeastSquares().fit(complete, x)
    assert max_gap(naive.params_, full.network_) < 1e-12
    assert max_gap([p[..., 1:] for p in naive.predict(q)], [p[..., 1:] for p in full.predict(q)]) < 1e-12


# ----- the NIG posterior ---------------------------------------------------------------------------

def sequential_posterior(X, y, prior):
    """(Ln, mun, an, bn) by one rank-one conjugate update per row (numpy; the textbook recursion)."""
    k = X.shape[1]
    L, mu, a, b = prior.precision * np.eye(k), np.full(k, prior.mean), prior.a, prior.b
    for xi, yi in zip(X, y):
        L_new = L + np.outer(xi, xi)
        mu_new = np.linalg.solve(L_new, L @ mu + xi * yi)
        b = b + 0.5 * (yi * yi + mu @ L @ mu - mu_new @ L_new @ mu_new)
        L, mu, a = L_new, mu_new, a + 0.5
    return L, mu, a, b


def log_evidence(X, y, prior):
    """log p(y | X) under the NIG prior, closed form."""
    L, mu, a, b = sequential_posterior(X, y, prior)
    k, n = X.shape[1], len(y)
    return (-n / 2 * math.log(2 * math.pi) + 0.5 * k * math.log(prior.precision) - 0.5 * np.linalg.slogdet(L)[1]
            + prior.a * math.log(prior.b) - a * math.log(b) + scipy.special.gammaln(a) - scipy.special.gammaln(prior.a))


def test_nig_posterior_equals_sequential_updates_and_the_evidence_ratio():
    prior = NIGPrior(mean=0.3, precision=2.0, a=2.5, b=1.5)
    _, x, q = draw(TREE, 3, 8, Q=4, seed=6, prior=prior)
    est = NIGPosterior(0.3, 2.0, 2.5, 1.5).fit(TREE, x)
    pred = est.predict(q)
    for m, pa in enumerate(TREE.parents):
        for b in range(3):
            X = np.column_stack([np.ones(8), x[b][:, list(pa)].numpy()])
            y = x[b][:, m].numpy()
            L, mu, an, bn = sequential_posterior(X, y, prior)
            Ln, mun, an_, bn_ = (t[b].numpy() for t in est.posterior_[m])
            np.testing.assert_allclose(Ln, L, atol=1e-10)
            np.testing.assert_allclose(mun, mu, atol=1e-10)
            np.testing.assert_allclose([an_, bn_], [an, bn], atol=1e-10)
            # the predictive density at each query value = p(data + query) / p(data)
            df, loc, scale = (pred[m][b, :, c].numpy() for c in (DF, LOC, SCALE))
            for j in range(q.shape[1]):
                xq = np.r_[1.0, q[b, j, list(pa)].numpy()]
                yq = float(q[b, j, m])
                ratio = log_evidence(np.vstack([X, xq]), np.r_[y, yq], prior) - log_evidence(X, y, prior)
                assert abs(scipy.stats.t.logpdf(yq, df[j], loc[j], scale[j]) - ratio) < 1e-9


def test_nig_posterior_declarations_and_plug_in_network():
    est = NIGPosterior(0.5, 2.0, 4.0, 3.0)
    assert est.optimal_prior() == {"kind": "nig", "params": {"mean": 0.5, "precision": 2.0, "a": 4.0, "b": 3.0}}
    assert est.tags.optimal_under == "nig" and "log loss" in est.tags.reference_for
    _, x, _ = draw(TREE, 2, 6, seed=7)
    est.fit(TREE, x)
    for (_, mun, an, bn), p in zip(est.posterior_, est.network_):
        assert torch.allclose(p[:, :-1], mun) and torch.allclose(p[:, -1] ** 2, bn / an)
    with pytest.raises(BNError, match="precision"):
        NIGPosterior(precision=0.0)


def mean_nll(pred, queries):
    """Held-out log-loss summed over nodes: minus the mean log density of each query value."""
    total = 0.0
    for m, p in enumerate(pred):
        df, loc, scale = p[..., DF], p[..., LOC], p[..., SCALE]
        d = (torch.distributions.Normal(loc, scale) if torch.isinf(df).all()
             else torch.distributions.StudentT(df, loc, scale))
        total -= float(d.log_prob(queries[..., m]).mean())
    return total


def test_bayes_has_lower_log_loss_than_mle_at_small_n():
    # under draws from the prior the exact predictive beats the plug-in MLE; at N = 20 rows the margin is
    # ~3% (9.61 vs 9.94 nats), so a Bayes predictive 20% too narrow already loses
    _, x, q = draw(TREE, 400, 20, Q=20, seed=8)
    bayes = mean_nll(NIGPosterior().fit(TREE, x).predict(q), q)
    assert bayes < mean_nll(LeastSquares().fit(TREE, x).predict(q), q)
    assert bayes < mean_nll(Ridge(penalty=1.0).fit(TREE, x).predict(q), q)


def mc_z_scores(est, exact_pred, queries, m):
    """|Pyro's predictive mean, variance and density - the exact ones|, in Monte Carlo standard errors: (B, Q) each.

    Pyro's mean and variance are its ``predict`` (the moment-matched Normal), its density the draws' mixture
    (``mixture_log_density``); the standard errors come from the draws: sd / sqrt(ess) of ``x' beta_s``
    (whose mean is the predictive mean), of ``sigma_s^2 + (x' beta_s - mean)^2`` (the predictive variance)
    and of ``N(y; x' beta_s, sigma_s)`` (the predictive density at the query's value y).
    """
    from pyro.ops.stats import effective_sample_size

    pred = est.predict(queries, nodes=[m])[0]
    density = est.mixture_log_density(queries, nodes=[m])[0].exp()
    mu, s2 = est.draw_means(queries, m)  # (S, B, Q), (S, B, 1)
    df, loc, scale = exact_pred[..., DF], exact_pred[..., LOC], exact_pred[..., SCALE]
    exact_density = torch.distributions.StudentT(df, loc, scale).log_prob(queries[..., m]).exp()
    out = []
    for ours, draws, exact in ((pred[..., LOC], mu, loc),
                               (pred[..., SCALE] ** 2, s2 + (mu - mu.mean(0)) ** 2, scale**2 * df / (df - 2)),
                               (density, torch.distributions.Normal(mu, s2.sqrt()).log_prob(queries[..., m]).exp(),
                                exact_density)):
        se = draws.std(0) / torch.sqrt(effective_sample_size(draws[None], chain_dim=0, sample_dim=1))
        out.append(((ours - exact) / se).abs())
    return out


def test_nig_posterior_equals_pyro_nuts_within_monte_carlo_errors():
    # a prior away from the defaults (mean, precision != 0, 1) and few rows, so that the prior matters
    prior = NIGPrior(mean=0.3, precision=0.5, a=3.0, b=2.0)
    g = Graph.from_edges(["a", "b", "c"], [("a", "b"), ("a", "c"), ("b", "c")], variables="gaussian")
    _, x, q = draw(g, 2, 6, Q=2, seed=9, prior=prior)
    # 600 draws: with 300 the standard errors came out ~15% small (rms z 1.16 over 6 seeds; 0.92 with 600)
    nuts = PyroGaussianNUTS(0.3, 0.5, 3.0, 2.0, num_samples=600, warmup_steps=300, max_tree_depth=3, seed=0)
    nuts.fit(g, x)
    exact = NIGPosterior(0.3, 0.5, 3.0, 2.0).fit(g, x).predict(q)
    # 36 z-scores whose standard errors lean small (the ESS of heavy-tailed variance draws): no single one far
    # out (two seeds gave 3.95 and 3.19 at most), and typical ones near 1; a wrong posterior gives tens
    z = torch.cat([torch.cat(mc_z_scores(nuts, exact[m], q, m)).reshape(-1) for m in range(3)])
    assert float(z.max()) < 4.5 and float(z.pow(2).mean().sqrt()) < 2, z
    assert all(torch.isinf(p[..., DF]).all() for p in nuts.predict(q))  # the moment-matched Normal


@pytest.mark.slow
def test_nig_posterior_equals_pyro_nuts_on_a_tree_plate():
    _, x, q = draw(TREE, 8, 15, Q=4, seed=10)
    nuts = PyroGaussianNUTS(num_samples=1000, warmup_steps=400, max_tree_depth=5, plate_size=8).fit(TREE, x)
    exact = NIGPosterior().fit(TREE, x).predict(q)
    z = torch.cat([torch.cat(mc_z_scores(nuts, exact[m], q, m)).reshape(-1) for m in range(TREE.n_nodes)])
    assert float((z < 3).double().mean()) > 0.98 and float(z.max()) < 4.5


def test_pyro_svi_is_near_the_exact_posterior():
    g = Graph.from_edges(["a", "b"], [("a", "b")], variables="gaussian")
    _, x, q = draw(g, 2, 30, Q=3, seed=11)
    svi = PyroGaussianSVI(steps=200, num_draws=200).fit(g, x)
    exact = NIGPosterior().fit(g, x).predict(q)
    for p, e in zip(svi.predict(q), exact):
        assert float((p[..., LOC] - e[..., LOC]).abs().max()) < 0.1
        sd = e[..., SCALE] * torch.sqrt(e[..., DF] / (e[..., DF] - 2))
        assert float((p[..., SCALE] / sd - 1).abs().max()) < 0.2
    mix = svi.mixture_log_density(q)
    assert all(t.shape == (2, 3) and torch.isfinite(t).all() for t in mix)


# ----- the contract ----------------------------------------------------------------------------------

FAST = [
    LeastSquares(), Ridge(penalty=0.5), NIGPosterior(), NaiveLeastSquares(), PgmpyLinearGaussian(),
    PyroGaussianNUTS(num_samples=4, warmup_steps=4, plate_size=4, max_tree_depth=2),
    PyroGaussianSVI(steps=3, num_draws=3, plate_size=2),
]


@pytest.mark.parametrize("est", FAST, ids=lambda e: e.name)
def test_contract(est):
    _, x, q = draw(TREE, 4, 9, Q=5, seed=12)
    with pytest.raises(BNError):
        type(est)().predict(q)  # before fit
    assert est.fit(TREE, x) is est
    pred = est.predict(q)
    assert len(pred) == TREE.n_nodes
    for p in pred:
        assert p.shape == (4, 5, 3) and p.dtype == torch.float64
        assert (p[..., SCALE] > 0).all() and (p[..., DF] > 0).all() and torch.isfinite(p[..., LOC]).all()
    assert [p.shape for p in est.predict(q, nodes=[4, 1])] == [(4, 5, 3)] * 2
    # node m's prediction reads only the nodes before m: scramble node m and everything after it
    for m in range(TREE.n_nodes):
        later = q.clone()
        later[..., m:] = torch.randn(later[..., m:].shape, dtype=torch.float64) * 100
        assert torch.equal(est.predict(later, nodes=[m])[0], pred[m])
    if est.network_ is not None:
        check_gaussian_batch(TREE, est.network_)
        assert [tuple(p.shape) for p in est.network_] == [(4, len(pa) + 2) for pa in TREE.parents]
    else:
        assert est.tags.graph_agnostic
    assert est.tags.variables == "gaussian"
    assert est.get_params() == type(est)(**est.get_params()).get_params()


@pytest.mark.parametrize("est", FAST[:5], ids=lambda e: e.name)
def test_row_order_and_batching_change_nothing(est):
    _, x, q = draw(TREE, 4, 15, Q=3, seed=13)
    whole = est.fit(TREE, x).predict(q)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    shuffled = type(est)(**est.get_params()).fit(TREE, x[:, perm]).predict(q)
    halves = [type(est)(**est.get_params()).fit(TREE, x[i : i + 2]).predict(q[i : i + 2]) for i in (0, 2)]
    for m in range(TREE.n_nodes):
        assert torch.allclose(whole[m], shuffled[m], rtol=1e-10, atol=1e-12)
        assert torch.allclose(whole[m], torch.cat([h[m] for h in halves]), rtol=1e-10, atol=1e-12)


def test_pyro_fit_does_not_depend_on_row_order():
    _, x, q = draw(TREE, 2, 6, Q=2, seed=14)
    est = PyroGaussianSVI(steps=5, num_draws=4)
    a = est.fit(TREE, x).predict(q)
    b = est.fit(TREE, x[:, torch.randperm(6, generator=torch.Generator().manual_seed(1))]).predict(q)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("est", FAST[:5], ids=lambda e: e.name)
def test_bad_input_is_one_line(est):
    _, x, q = draw(TREE, 2, 5, Q=2, seed=15)
    cases = [
        (tree(7), x.long().clamp(0, 1), "variables"),  # a discrete graph
        (TREE, torch.where(torch.arange(7) == 3, math.nan, x), "NaN"),
        (TREE, x[..., :5], "columns"),
        (TREE, x[0], "shape"),
    ]
    for graph, data, word in cases:
        with pytest.raises(BNError, match=word) as err:
            type(est)(**est.get_params()).fit(graph, data)
        assert "\n" not in str(err.value)
    est.fit(TREE, x)
    with pytest.raises(BNError, match="NaN"):
        est.predict(torch.full_like(q, math.nan))
    with pytest.raises(BNError, match="predict"):
        est.predict_proba(q)


def test_bad_settings_are_one_line():
    for make, word in [(lambda: LeastSquares(min_sigma=0), "min_sigma"), (lambda: Ridge(penalty=-1), "penalty"),
                       (lambda: NIGPosterior(a=0), "a must"), (lambda: NIGPosterior(mean=math.inf), "mean"),
                       (lambda: PyroGaussianNUTS(num_samples=1), "num_samples"),
                       (lambda: PyroGaussianSVI(guide="x"), "guide"),
                       (lambda: PyroGaussianNUTS(plate_size=0), "plate_size")]:
        with pytest.raises(BNError, match=word):
            make()


@pytest.mark.parametrize("est", FAST[:5], ids=lambda e: e.name)
def test_refit_on_another_graph_forgets_the_first(est):
    chain = Graph.from_edges(list("ABCDEFG"), [(a, b) for a, b in zip("ABCDEF", "BCDEFG")], variables="gaussian")
    _, x, q = draw(chain, 3, 12, Q=2, seed=16)
    est.fit(TREE, draw(TREE, 2, 5, seed=17)[1])
    again = est.fit(chain, x).predict(q)
    fresh = type(est)(**est.get_params()).fit(chain, x).predict(q)
    assert all(torch.equal(a, b) for a, b in zip(again, fresh))
