"""Metrics of real-valued predictions, each against an independent computation (scipy, quadrature, pgmpy)."""
import math

import networkx as nx
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from bncompare.errors import BNError
from bncompare.metrics.gaussian import (
    cdf,
    central_coverage,
    coverage,
    crps,
    joint_kl,
    kl_true_normal,
    log_density,
    param_err,
    pit_histogram,
)
from bncompare.networks.gaussian import joint_gaussian
from bncompare.networks.graph import Graph
from bncompare.networks.priors import NIGPrior

INF = math.inf


def preds(rows):
    return torch.tensor(rows, dtype=torch.float64)


def dist(df, loc, scale):
    return stats.norm(loc, scale) if math.isinf(df) else stats.t(df, loc, scale)


# a mix of Normals and Student-t's, wide and narrow, near and far from the values
CASES = [(INF, 0.0, 1.0, 0.3), (INF, -2.0, 0.05, -1.9), (INF, 3.0, 20.0, -40.0), (1.5, 0.0, 1.0, 4.0),
         (3.0, 1.0, 0.3, 0.2), (30.0, -1.0, 2.0, 5.0), (0.7, 0.0, 1.0, -3.0), (1e6, 0.5, 1.0, 0.1),
         (2.5, 10.0, 0.01, 9.99), (200.0, 0.0, 5.0, -12.0)]


def case_tensors(cases=CASES):
    p = preds([c[:3] for c in cases])
    x = torch.tensor([c[3] for c in cases], dtype=torch.float64)
    return p, x


def test_log_density_and_cdf_match_scipy():
    p, x = case_tensors()
    ld, u = log_density(p, x).numpy(), cdf(p, x).numpy()
    for i, (df, loc, scale, v) in enumerate(CASES):
        d = dist(df, loc, scale)
        assert ld[i] == pytest.approx(d.logpdf(v), rel=1e-12, abs=1e-12)
        assert u[i] == pytest.approx(d.cdf(v), rel=1e-10, abs=1e-14)


def test_log_density_broadcasts_one_prediction_over_values():
    p = preds([[4.0, 1.0, 2.0]])
    x = torch.linspace(-5, 5, 7, dtype=torch.float64)
    np.testing.assert_allclose(log_density(p[0], x).numpy(), stats.t(4.0, 1.0, 2.0).logpdf(x.numpy()), rtol=1e-12)


def kl_by_quadrature(mu, sigma, df, loc, scale):
    p, q = stats.norm(mu, sigma), dist(df, loc, scale)
    return integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), mu - 14 * sigma, mu + 14 * sigma,
                          points=sorted({mu, loc}) if abs(loc - mu) < 14 * sigma else [mu],
                          limit=1000, epsabs=1e-15, epsrel=1e-13)[0]


KL_CASES = [(0.0, 1.0, INF, 0.3, 1.5), (1.0, 0.2, INF, -1.0, 0.1), (0.0, 1.0, 3.0, 0.0, 0.01),
            (0.0, 1.0, 1.5, 5.0, 0.1), (0.0, 1.0, 50.0, 0.0, 1.0), (0.0, 1.0, 0.5, 0.0, 100.0),
            (0.0, 1.0, 30.0, 0.2, 1.1), (0.0, 1.0, 2.1, 30.0, 0.5), (0.0, 0.001, 5.0, 0.0, 1.0),
            (2.0, 3.0, 4.0, -1.0, 2.0), (-1.0, 0.5, 8.0, -1.2, 0.45), (0.0, 1.0, 12.0, 0.01, 1.0)]


def test_kl_of_the_true_normal_matches_quadrature():
    mu, sigma = (torch.tensor([c[i] for c in KL_CASES], dtype=torch.float64) for i in (0, 1))
    got = kl_true_normal(mu, sigma, preds([c[2:] for c in KL_CASES])).numpy()
    for i, c in enumerate(KL_CASES):
        assert got[i] == pytest.approx(kl_by_quadrature(*c), rel=1e-8, abs=1e-13), c


def test_kl_is_zero_at_the_truth_and_shrinks_to_the_normal_one_as_df_grows():
    mu, sigma = torch.tensor([0.3]), torch.tensor([1.7])
    assert float(kl_true_normal(mu, sigma, preds([[INF, 0.3, 1.7]]))) == pytest.approx(0.0, abs=1e-15)
    normal = float(kl_true_normal(mu, sigma, preds([[INF, 0.0, 2.0]])))
    ts = [float(kl_true_normal(mu, sigma, preds([[df, 0.0, 2.0]]))) for df in (1e2, 1e4, 1e6, 1e10)]
    assert abs(ts[-1] - normal) < 1e-10 and all(abs(a - normal) > abs(b - normal) for a, b in zip(ts, ts[1:]))


def crps_by_quadrature(df, loc, scale, y):
    d = dist(df, loc, scale)
    near = integrate.quad(lambda x: abs(x - y) * d.pdf(x), -np.inf, y, limit=500, epsabs=1e-13)[0]
    far = integrate.quad(lambda x: abs(x - y) * d.pdf(x), y, np.inf, limit=500, epsabs=1e-13)[0]
    spread = sum(integrate.quad(lambda x: d.cdf(x) * d.sf(x), a, b, limit=500, epsabs=1e-13)[0]
                 for a, b in ((-np.inf, loc), (loc, np.inf)))
    return near + far - spread  # E|X - y| - E|X - X'| / 2, with E|X - X'| = 2 int F (1 - F)


def test_crps_matches_quadrature():
    cases = [c for c in CASES if c[0] > 1]
    p, x = case_tensors(cases)
    got = crps(p, x).numpy()
    for i, c in enumerate(cases):
        assert got[i] == pytest.approx(crps_by_quadrature(*c), rel=1e-7, abs=1e-10), c


def test_crps_matches_monte_carlo_and_is_infinite_without_a_mean():
    rng = np.random.default_rng(0)
    for df, loc, scale, y in [(INF, 0.5, 2.0, 1.0), (4.0, -1.0, 0.5, 0.3)]:
        d = dist(df, loc, scale)
        a, b = d.rvs(400_000, random_state=rng), d.rvs(400_000, random_state=rng)
        sample = np.abs(a - y) - 0.5 * np.abs(a - b)
        se = sample.std() / math.sqrt(sample.size)
        got = float(crps(preds([[df, loc, scale]]), torch.tensor([y], dtype=torch.float64)))
        assert abs(got - sample.mean()) < 4 * se
    assert math.isinf(float(crps(preds([[1.0, 0.0, 1.0]]), torch.tensor([0.0]))))


def test_coverage_and_pit_histogram_of_a_calibrated_forecast():
    # observations drawn from the predictions themselves: the PIT is uniform
    rng = np.random.default_rng(1)
    n = 200_000
    df = np.where(rng.random(n) < 0.5, np.inf, 3.0)
    loc, scale = rng.normal(size=n), np.exp(rng.normal(size=n))
    x = loc + scale * np.where(np.isinf(df), rng.standard_normal(n), rng.standard_t(3.0, n))
    pit = cdf(preds(np.stack([df, loc, scale], -1)), torch.tensor(x))
    cov = coverage(pit)
    for level, frac in cov.items():
        assert abs(frac - level) < 4 * math.sqrt(level * (1 - level) / n)
    counts = pit_histogram(pit, bins=10)
    assert int(counts.sum()) == n
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def test_central_coverage_and_histogram_edges():
    pit = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 0.96, 1.0], dtype=torch.float64)
    assert central_coverage(pit, 0.9).tolist() == [False, True, True, True, True, True, False, False]
    assert central_coverage(pit, 0.5).tolist() == [False, False, True, True, True, False, False, False]
    assert pit_histogram(pit, bins=4).tolist() == [2, 1, 1, 4]


def random_gaussian_network(seed, n_nodes=6):
    rng = np.random.default_rng(seed)
    names = [f"X{i}" for i in range(n_nodes)]
    edges = [(names[i], names[j]) for j in range(n_nodes) for i in range(j) if rng.random() < 0.5]
    graph = Graph.from_edges(names, edges, variables="gaussian")
    return graph, NIGPrior().sample(graph, 1, torch.Generator().manual_seed(seed))


def to_pgmpy(graph, params):
    from pgmpy.factors.continuous import LinearGaussianCPD
    from pgmpy.models import LinearGaussianBayesianNetwork

    model = LinearGaussianBayesianNetwork()
    model.add_nodes_from(graph.names)
    model.add_edges_from((graph.names[p], graph.names[m]) for m in range(graph.n_nodes) for p in graph.parents[m])
    cpds = []
    for m, p in enumerate(params):
        row = p[0].tolist()
        cpds.append(LinearGaussianCPD(graph.names[m], beta=row[:-1], std=row[-1],  # pgmpy takes the STD
                                      evidence=[graph.names[q] for q in graph.parents[m]]))
    model.add_cpds(*cpds)
    return model


def pgmpy_joint(graph, params):
    """pgmpy's joint mean and covariance, reordered to the graph's node order."""
    model = to_pgmpy(graph, params)
    mean, cov = model.to_joint_gaussian()
    order = [list(nx.topological_sort(model)).index(name) for name in graph.names]
    return mean[order], cov[np.ix_(order, order)]


def kl_numpy(mp, cp, mq, cq):
    inv = np.linalg.inv(cq)
    d = mq - mp
    return 0.5 * (np.trace(inv @ cp) + d @ inv @ d - len(mp) + np.linalg.slogdet(cq)[1] - np.linalg.slogdet(cp)[1])


@pytest.mark.parametrize("seed", range(5))
def test_joint_gaussian_and_joint_kl_match_pgmpy(seed):
    graph, truth = random_gaussian_network(seed)
    _, other = random_gaussian_network(seed + 100)
    other = [torch.cat([o[:, :1], t[:, 1:-1] * 0.8 + 0.1, o[:, -1:]], -1) for o, t in zip(other, truth)]
    m_p, c_p = pgmpy_joint(graph, truth)
    m_q, c_q = pgmpy_joint(graph, other)
    ours_p, ours_c = joint_gaussian(graph, truth)
    # pgmpy rounds its mean and covariance to 8 decimals
    np.testing.assert_allclose(ours_p[0].numpy(), m_p, atol=1e-8)
    np.testing.assert_allclose(ours_c[0].numpy(), c_p, atol=1e-8)
    expect = kl_numpy(m_p, c_p, m_q, c_q)
    got = float(joint_kl(*(torch.tensor(a) for a in (m_p, c_p, m_q, c_q))))
    assert got == pytest.approx(expect, rel=1e-8, abs=1e-12)
    ours = joint_kl(*joint_gaussian(graph, truth), *joint_gaussian(graph, other))
    assert float(ours) == pytest.approx(expect, rel=1e-5)  # through pgmpy's rounding
    assert float(joint_kl(ours_p, ours_c, ours_p, ours_c)) == pytest.approx(0.0, abs=1e-12)


def test_joint_kl_is_batched_and_equals_the_sum_over_independent_nodes():
    mp, mq = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
    sp, sq = torch.tensor([[1.0, 2.0], [0.5, 1.5]], dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)
    got = joint_kl(mp, torch.diag_embed(sp**2), mq, torch.diag_embed(sq**2))
    one_d = kl_true_normal(mp, sp, torch.stack([torch.full_like(mq, INF), mq, sq], -1)).sum(-1)
    np.testing.assert_allclose(got.numpy(), one_d.numpy(), rtol=1e-12)


def test_param_err_is_the_relative_error_of_intercept_and_weights():
    truth = [torch.tensor([[3.0, 1.0], [0.0, 2.0]]), torch.tensor([[0.0, 3.0, 4.0, 1.0], [1.0, 0.0, 0.0, 1.0]])]
    est = [torch.tensor([[3.3, 9.0], [0.5, 1.0]]), torch.tensor([[0.0, 3.0, 5.0, 2.0], [1.0, 0.0, 0.0, 7.0]])]
    err = param_err(truth, est)
    assert err.shape == (2, 2)
    assert err[0, 0] == pytest.approx(0.1) and math.isnan(float(err[1, 0]))  # a zero true intercept: undefined
    assert err[0, 1] == pytest.approx(1 / 5) and float(err[1, 1]) == 0.0  # sigma is not a coefficient
    one = param_err([t[:1] for t in truth], est)  # one true network against every estimate
    assert one.shape == (2, 2) and one[0, 0] == pytest.approx(0.1)


def test_bad_input_is_one_line():
    with pytest.raises(BNError, match="last axis of 3"):
        log_density(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(BNError, match="scale"):
        crps(preds([[INF, 0.0, 0.0]]), torch.zeros(1))
    with pytest.raises(BNError, match="df"):
        cdf(preds([[-1.0, 0.0, 1.0]]), torch.zeros(1))
    with pytest.raises(BNError, match="positive definite"):
        joint_kl(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2), torch.eye(2))
    with pytest.raises(BNError, match="PIT"):
        coverage(torch.tensor([math.nan]))
    with pytest.raises(BNError, match="node 0"):
        param_err([torch.zeros(1, 3)], [torch.zeros(1, 2)])


def test_student_t_log_density_keeps_full_precision_at_large_df():
    # above df = 60 the normalizer comes from a series; 30-digit arithmetic is the reference
    import mpmath as mp

    mp.mp.dps = 30
    for df in (59.0, 61.0, 62.0, 100.0, 1e4, 1e9):
        nu = mp.mpf(df)
        ref = mp.loggamma((nu + 1) / 2) - mp.loggamma(nu / 2) - mp.log(nu * mp.pi) / 2 - (nu + 1) / 2 * mp.log1p(
            mp.mpf("0.25") / nu)
        got = float(log_density(preds([[df, 0.0, 1.0]]), torch.tensor([0.5], dtype=torch.float64)))
        assert abs(got - float(ref)) < 1e-14, df


def test_kl_near_a_normal_matches_30_digit_quadrature():
    # a Student-t with large df is close to a Normal: KL ~ 1/df^2, far below the O(1) terms it is made of
    import mpmath as mp

    mp.mp.dps = 30
    cases = [(0.0, 1.0, 1000.0, 0.0, 1.0), (0.0, 1.0, 1e4, 0.0, 1.0), (0.3, 2.0, 300.0, 0.5, 1.9),
             (0.0, 1.0, 0.002, -1.0, 0.3)]
    for mu, sigma, df, loc, scale in cases:
        m_, s_, n_, l_, c_ = map(mp.mpf, (mu, sigma, df, loc, scale))

        def log_p(x, m_=m_, s_=s_):
            return -mp.log(2 * mp.pi) / 2 - mp.log(s_) - ((x - m_) / s_) ** 2 / 2

        def log_q(x, n_=n_, l_=l_, c_=c_):
            return (mp.loggamma((n_ + 1) / 2) - mp.loggamma(n_ / 2) - mp.log(n_ * mp.pi) / 2 - mp.log(c_)
                    - (n_ + 1) / 2 * mp.log1p(((x - l_) / c_) ** 2 / n_))

        pts = sorted({m_ - 8 * s_, m_, m_ + 8 * s_, l_})
        ref = float(mp.quad(lambda x: mp.exp(log_p(x)) * (log_p(x) - log_q(x)), [-mp.inf, *pts, mp.inf]))
        got = float(kl_true_normal(torch.tensor([mu], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64),
                                   preds([[df, loc, scale]])))
        assert got == pytest.approx(ref, rel=1e-8, abs=0), (mu, sigma, df, loc, scale)


def test_network_kl_is_the_joint_kl_by_the_chain_rule():
    """The study's joint_kl (chain rule on the shared DAG, only the true joint inverted) equals the closed-form
    KL of the two joint Normals, on random DAGs; and it stays finite where the fitted joint is ill-conditioned."""
    from bncompare.metrics.gaussian import network_kl
    from bncompare.networks.families import get_graph
    from bncompare.networks.gaussian import joint_gaussian
    from bncompare.networks.priors import NIGPrior

    gen = torch.Generator().manual_seed(3)
    for seed in range(20):
        graph = get_graph("gaussian-random-8", p=0.5, seed=seed)
        p, q = NIGPrior().sample(graph, 16, gen), NIGPrior(precision=0.5).sample(graph, 16, gen)
        want = joint_kl(*joint_gaussian(graph, p), *joint_gaussian(graph, q))
        got = network_kl(graph, p, q)
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-10), seed
    q = [t.clone() for t in q]
    for t in q:
        t[:, -1] = 1e-7  # every fitted sigma tiny: the fitted covariance is numerically singular
    assert torch.isfinite(network_kl(graph, p, q)).all()
