"""The reference estimators: exact posterior means and medians, each optimal for the loss it is named for."""
import numpy as np
import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators import DirichletMedian, DirichletPosterior, UniformPosteriorMean, UniformPosteriorMedian
from bncompare.metrics import kl, tv
from bncompare.networks import DirichletPrior, Graph, UniformRangePrior, get_graph, sample

ONE = Graph(("A",), (2,), ((),))  # one binary row: theta = P(A = 0)


def quadrature(k0: int, k1: int, lo: float, hi: float, alpha: float = 1.0):
    """Posterior mean and median of theta_0 under a prior proportional to theta^(alpha-1) (1-theta)^(alpha-1)
    on [lo, hi], by brute-force summation on a fine grid in log space."""
    x = np.linspace(lo, hi, 400_001)[1:-1]
    logw = (k0 + alpha - 1) * np.log(x) + (k1 + alpha - 1) * np.log1p(-x)
    w = np.exp(logw - logw.max())
    c = np.cumsum(w)
    return float((x * w).sum() / w.sum()), float(np.interp(c[-1] / 2, c, x))


def fitted(est, counts: list[tuple[int, int]]):
    """theta_0 of ``est`` fitted on contexts with the given (n_0, n_1) counts of the one binary node."""
    N = sum(counts[0])
    assert all(sum(c) == N for c in counts)
    x = torch.tensor([[0] * k0 + [1] * k1 for k0, k1 in counts]).reshape(len(counts), N, 1)
    return est.fit(ONE, x).cpts_[0][:, 0, 0].numpy()


@pytest.mark.parametrize("n", [0, 3, 40, 500])
def test_uniform_posterior_mean_and_median_match_quadrature(n):
    counts = sorted({(k, n - k) for k in (0, 1, n // 3, n // 2, n) if k <= n})
    means = fitted(UniformPosteriorMean(0.1, 0.9), counts)
    medians = fitted(UniformPosteriorMedian(0.1, 0.9), counts)
    for (k0, k1), mean, median in zip(counts, means, medians):
        want_mean, want_median = quadrature(k0, k1, 0.1, 0.9)
        assert mean == pytest.approx(want_mean, abs=1e-6), (k0, k1)
        assert median == pytest.approx(want_median, abs=1e-5), (k0, k1)
        assert 0.1 <= mean <= 0.9 and 0.1 <= median <= 0.9


def test_dirichlet_median_is_the_beta_median():
    # half of the Beta(k0 + alpha, k1 + alpha) posterior's mass lies below the median (adaptive quadrature)
    from math import lgamma

    from scipy.integrate import quad

    counts = [(0, 5), (1, 4), (2, 3), (5, 0)]
    for alpha in (0.5, 1.0, 3.0):
        got = fitted(DirichletMedian(alpha), counts)
        for (k0, k1), m in zip(counts, got):
            a, b = k0 + alpha, k1 + alpha
            log_beta = lgamma(a) + lgamma(b) - lgamma(a + b)
            mass, _ = quad(lambda t, a=a, b=b, c=log_beta: np.exp((a - 1) * np.log(t) + (b - 1) * np.log1p(-t) - c),
                           0, m, limit=200)
            assert mass == pytest.approx(0.5, abs=1e-7), (alpha, k0, k1)


def expected_losses(prior, estimators, N, B=40_000, seed=0):
    """Monte Carlo E[TV] and E[KL] of each estimator on one binary row drawn from ``prior``, paired draws."""
    gen = torch.Generator().manual_seed(seed)
    cpts = prior.sample(ONE, B, gen)
    x = sample(ONE, cpts, N, gen)
    truth = cpts[0][:, 0]
    out = {}
    for name, est in estimators.items():
        q = est.fit(ONE, x).cpts_[0][:, 0]
        out[name] = (tv(truth, q), kl(truth, q))
    return out


def test_median_minimizes_expected_tv_and_mean_expected_kl():
    # Dirichlet(1) rows: the mean is the KL optimum, the median the TV optimum (paired Monte Carlo, 4+ SE)
    for N in (1, 3):
        loss = expected_losses(DirichletPrior(1.0), {"mean": DirichletPosterior(1.0), "median": DirichletMedian(1.0)},
                               N)
        d_tv = loss["median"][0] - loss["mean"][0]
        d_kl = loss["median"][1] - loss["mean"][1]
        assert d_tv.mean() < -4 * d_tv.std() / np.sqrt(len(d_tv)), N
        assert d_kl.mean() > 4 * d_kl.std() / np.sqrt(len(d_kl)), N


def test_exact_uniform_posterior_mean_beats_the_dirichlet_mean_under_the_uniform_prior():
    loss = expected_losses(UniformRangePrior(0.1, 0.9), {"exact": UniformPosteriorMean(0.1, 0.9),
                                                         "dirichlet": DirichletPosterior(1.0),
                                                         "median": UniformPosteriorMedian(0.1, 0.9)}, N=3)
    d_kl = loss["dirichlet"][1] - loss["exact"][1]
    assert d_kl.mean() > 4 * d_kl.std() / np.sqrt(len(d_kl))
    d_tv = loss["median"][0] - loss["exact"][0]
    assert d_tv.mean() < 0  # the median is the TV optimum under this prior too


def test_uniform_references_refuse_non_binary_nodes():
    g = get_graph("chain-3", card=3)
    with pytest.raises(BNError, match="binary"):
        UniformPosteriorMean().fit(g, torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(BNError, match="tv_reference=null"):  # in a study: before any training starts
        UniformPosteriorMedian().prepare(g, UniformRangePrior(0.1, 0.9))
    with pytest.raises(BNError, match="low < high"):
        UniformPosteriorMedian(0.9, 0.1)
    # the Dirichlet median answers the posterior mean on rows with more states (no closed-form TV optimum)
    x = torch.randint(0, 3, (2, 7, 3), generator=torch.Generator().manual_seed(0))
    for a, b in zip(DirichletMedian(0.5).fit(g, x).cpts_, DirichletPosterior(0.5).fit(g, x).cpts_):
        assert torch.allclose(a, b, atol=1e-15)
