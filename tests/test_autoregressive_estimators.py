"""The estimators of an autoregressive process (bncompare.estimators.autoregressive and _pyro), checked
against independent computations: numpy's lstsq, a per-pair Bayesian update, autograd, Pyro's NUTS."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators.autoregressive import (
    EMPTY_SIGMA,
    ARLeastSquares,
    ARProcrustes,
    ARRidge,
    OneStepGD,
    cached_optimal_step,
    gd_directions,
)
from bncompare.networks.autoregressive import ARPrior, ar_graph, transition


def draw(law: str, d: int, n: int, length: int, sigma: float = 0.0, seed: int = 0, spectral_radius=None):
    """(n, length, d) sequences and their transitions (n, d, d)."""
    prior = ARPrior(law, sigma, "fixed", spectral_radius)
    gen = torch.Generator().manual_seed(seed)
    params = prior.sample(ar_graph(d), n, gen)
    return prior.sequences(params, length, gen), transition(params)


def queries_for(seqs: torch.Tensor, t: int) -> torch.Tensor:
    return seqs[:, t : t + 1]  # the true next state: never read


@pytest.mark.parametrize("law,radius,estimators", [
    ("orthogonal", None, (ARLeastSquares, ARProcrustes)),
    ("commuting", None, (ARLeastSquares, ARProcrustes)),
    ("gaussian", 0.9, (ARLeastSquares,)),
])
def test_exact_when_noise_free_beyond_full_rank(law, radius, estimators):
    d = 5
    seqs, W = draw(law, d, 256, 13, spectral_radius=radius, seed=1)
    g = ar_graph(d)
    for cls in estimators:
        for t in (d + 1, d + 3, 12):
            est = cls().fit(g, seqs[:, :t])
            pred = torch.stack([p[..., 1] for p in est.predict(queries_for(seqs, t))], -1)[:, 0]
            assert (pred - seqs[:, t]).abs().max() < 1e-8, (cls.name, t)


def test_least_squares_is_numpy_minimum_norm_below_full_rank():
    d = 5
    seqs, _ = draw("gaussian", d, 8, 6, sigma=0.3, seed=2)
    collinear = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)[None, :, None] * \
        torch.randn(1, 1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))  # rank-1 states
    contexts = torch.cat([seqs[:, :5], collinear])
    g = ar_graph(d)
    for t in range(2, 6):
        est = ARLeastSquares().fit(g, contexts[:, :t])
        for b, c in enumerate(contexts[:, :t].numpy()):
            sol, _, _, _ = np.linalg.lstsq(c[:-1], c[1:], rcond=None)  # X W' = Y, minimum norm
            np.testing.assert_allclose(est.transition_[b].numpy(), sol.T, atol=1e-10, rtol=0)
            rss = ((c[1:] - c[:-1] @ sol) ** 2).sum()
            assert math.isclose(float(est.scale_[b, 0]), max(math.sqrt(rss / ((t - 1) * d)), est.min_sigma),
                                rel_tol=1e-8, abs_tol=1e-12)
    one = ARLeastSquares().fit(g, contexts[:, :1])
    assert one.transition_.abs().max() == 0 and torch.all(one.scale_ == EMPTY_SIGMA)


def sequential_posterior(c: np.ndarray, sigma: float, tau: float):
    """The posterior of W's rows by one Bayesian (Kalman) update per pair, rows sharing the covariance."""
    d = c.shape[1]
    mean, cov = np.zeros((d, d)), tau * np.eye(d)
    for x, y in zip(c[:-1], c[1:]):
        gain = cov @ x / (x @ cov @ x + sigma**2)
        mean = mean + np.outer(y - mean @ x, gain)
        cov = cov - np.outer(gain, x @ cov)
    s = c[-1]
    return mean, mean @ s, math.sqrt(sigma**2 + s @ cov @ s)


@pytest.mark.parametrize("sigma,prior_var", [(0.3, None), (0.05, 0.7)])
def test_ridge_is_the_sequential_bayesian_update(sigma, prior_var):
    d = 4
    seqs, _ = draw("gaussian", d, 6, 10, sigma=sigma, seed=4)
    g = ar_graph(d)
    tau = 1 / d if prior_var is None else prior_var
    for t in (1, 3, 10):
        est = ARRidge(sigma, prior_var).fit(g, seqs[:, :t])
        for b, c in enumerate(seqs[:, :t].numpy()):
            mean, loc, scale = sequential_posterior(c, sigma, tau)
            np.testing.assert_allclose(est.transition_[b].numpy(), mean, atol=1e-10, rtol=0)
            np.testing.assert_allclose(est.loc_[b].numpy(), loc, atol=1e-10, rtol=0)
            np.testing.assert_allclose(est.scale_[b].numpy(), scale, atol=1e-10, rtol=0)


def test_noise_free_ridge_is_least_squares_and_the_small_noise_limit():
    d = 5
    seqs, _ = draw("orthogonal", d, 16, 9, seed=5)  # well-conditioned pairs: the limit is reached at small sigma
    g = ar_graph(d)
    for t in range(1, 9):
        ridge = ARRidge(0.0).fit(g, seqs[:, :t])
        ls = ARLeastSquares().fit(g, seqs[:, :t])
        assert (ridge.transition_ - ls.transition_).abs().max() < 1e-12
        if t > d:  # the pairs span R^d: the posterior is a point
            assert torch.all(ridge.scale_ == 0)
        else:  # the prior on what the pairs leave free: sqrt(1/d) ||(I - X^+ X) s_t||
            for b, c in enumerate(seqs[:, :t].numpy()):
                x = c[:-1].reshape(t - 1, d)
                free = c[-1] - np.linalg.pinv(x) @ (x @ c[-1]) if t > 1 else c[-1]
                assert math.isclose(float(ridge.scale_[b, 0]), math.sqrt((free @ free) / d), rel_tol=1e-8)
        near = ARRidge(1e-8).fit(g, seqs[:, :t])
        assert (near.loc_ - ridge.loc_).abs().max() < 1e-5
        assert (near.scale_ - ridge.scale_).abs().max() < 1e-5
    assert ARRidge(0.0).fit(g, seqs[:, :7]).zero_below_ > 0 and ARRidge(0.1).fit(g, seqs[:, :7]).zero_below_ == 0


def test_ridge_declares_the_gaussian_prior():
    g = ar_graph(5)
    assert ARRidge(0.1, start="gaussian").optimal_prior() == {
        "kind": "autoregressive", "params": {"law": "gaussian", "sigma": 0.1, "start": "gaussian",
                                             "spectral_radius": None}}
    assert ARRidge(0.1, prior_var=0.5).prepare(g, None).optimal_prior() is None
    assert ARRidge(0.1, prior_var=0.2).prepare(g, None).optimal_prior() is not None


def test_procrustes_is_orthogonal_and_below_full_rank_the_smallest_rotation():
    d = 5
    seqs, _ = draw("orthogonal", d, 32, 8, seed=6)
    g = ar_graph(d)
    eye = torch.eye(d, dtype=torch.float64)
    for t in range(1, 8):
        W = ARProcrustes().fit(g, seqs[:, :t]).transition_
        assert (W.transpose(1, 2) @ W - eye).abs().max() < 1e-12
    assert (ARProcrustes().fit(g, seqs[:, :1]).transition_ - eye).abs().max() < 1e-12  # no pair: W = I
    W = ARProcrustes().fit(g, seqs[:, :2]).transition_  # one pair: the rotation in span(s_1, s_2)
    s1, s2 = seqs[:, 0], seqs[:, 1]
    assert (torch.einsum("bij,bj->bi", W, s1) - s2).abs().max() < 1e-12
    q, _ = torch.linalg.qr(torch.stack([s1, s2], -1))
    v = torch.randn(32, d, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    v = v - torch.einsum("bik,bk->bi", q, torch.einsum("bik,bi->bk", q, v))  # orthogonal to s_1, s_2
    assert (torch.einsum("bij,bj->bi", W, v) - v).abs().max() < 1e-12


def test_one_step_gd_is_an_explicit_gradient_step():
    d = 4
    seqs, _ = draw("commuting", d, 5, 9, seed=8)
    est = OneStepGD(horizon=8, step=0.37)
    for t in (1, 4, 9):
        est.fit(ar_graph(d), seqs[:, :t])
        for b, c in enumerate(seqs[:, :t]):
            W = torch.zeros(d, d, dtype=torch.float64, requires_grad=True)
            loss = 0.5 * ((c[1:] - c[:-1] @ W.T) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, W)
            W1 = -0.37 * grad  # one step from W = 0
            assert (est.transition_[b] - W1).abs().max() < 1e-12
            assert (est.loc_[b] - W1 @ c[-1]).abs().max() < 1e-12
        assert torch.all(est.scale_ == 0)


def test_optimal_step_minimizes_the_error_on_fresh_sequences():
    d, horizon = 4, 10
    prior = ARPrior("commuting", 0.0, "fixed")
    est = OneStepGD(horizon=horizon).prepare(ar_graph(d), prior)
    assert est.step_ == cached_optimal_step(prior, d, horizon) and est.step_ > 0
    fresh, _ = draw("commuting", d, 4096, horizon + 1, seed=9)
    f, target = gd_directions(fresh[:, :-1]), fresh[:, 1:]

    def err(eta):
        return float(((eta * f - target) ** 2).sum())

    assert err(est.step_) < err(est.step_ * 1.05) and err(est.step_) < err(est.step_ * 0.95)


@pytest.mark.parametrize("make", [ARLeastSquares, ARProcrustes, lambda: ARRidge(0.0), lambda: ARRidge(0.2),
                                  lambda: OneStepGD(horizon=10, step=0.1)])
def test_batching_invariance_and_queries_unread(make):
    d = 3
    seqs, _ = draw("gaussian", d, 6, 8, sigma=0.2, seed=10)
    g = ar_graph(d)
    for t in (2, 7):
        together = make().fit(g, seqs[:, :t])
        rows = torch.randn(6, 4, d, dtype=torch.float64)
        pred = together.predict(rows)
        assert all(p.shape == (6, 4, 3) and torch.all(torch.isinf(p[..., 0])) for p in pred)
        again = together.predict(torch.zeros(6, 4, d, dtype=torch.float64))
        assert all(torch.equal(p, q) for p, q in zip(pred, again))
        assert all(torch.equal(p, p[:, :1].expand_as(p)) for p in pred)
        for b in range(6):
            alone = make().fit(g, seqs[b : b + 1, :t]).predict(rows[b : b + 1])
            assert all(torch.allclose(p[b : b + 1], q, rtol=0, atol=1e-13) for p, q in zip(pred, alone))
            assert (together.transition_[b] - make().fit(g, seqs[b : b + 1, :t]).transition_[0]).abs().max() < 1e-13


def test_errors_are_one_line():
    g = ar_graph(3)
    x = torch.zeros(2, 4, 3, dtype=torch.float64)
    for est in (ARLeastSquares(), ARProcrustes(), ARRidge(0.1), OneStepGD(step=0.1)):
        with pytest.raises(BNError, match="call fit before predict"):
            est.predict(x)
        est.fit(g, x)
        with pytest.raises(BNError, match="queries must have shape"):
            est.predict(torch.zeros(3, 1, 3, dtype=torch.float64))
        with pytest.raises(BNError, match="t >= 1"):
            est.fit(g, x[:, :0])
    with pytest.raises(BNError, match="call prepare"):
        OneStepGD(horizon=5).fit(g, x)
    with pytest.raises(BNError, match="sigma must be a finite number >= 0"):
        ARRidge(-0.1)
    with pytest.raises(BNError, match="horizon"):
        OneStepGD(horizon=0)
    with pytest.raises(BNError, match="start must be one of"):
        ARRidge(0.1, start="uniform")
    from bncompare.estimators.autoregressive_pyro import ARPyroNUTS

    with pytest.raises(BNError, match=r"NUTS needs noise.*~estimators\.ar_pyro_nuts"):
        ARPyroNUTS(sigma=0.0)


@pytest.mark.slow  # two NUTS runs: ~20-40 s on this 2-core machine
def test_pyro_nuts_matches_the_ridge_predictive():
    from bncompare.estimators.autoregressive_pyro import ARPyroNUTS

    d, sigma = 3, 0.1
    seqs, _ = draw("gaussian", d, 2, 6, sigma=sigma, seed=11, spectral_radius=0.95)
    g = ar_graph(d)
    for t in (3, 6):  # below full rank (the prior matters) and beyond
        ridge = ARRidge(sigma).fit(g, seqs[:, :t])
        nuts = ARPyroNUTS(sigma, num_samples=250, warmup_steps=150, seed=1).fit(g, seqs[:, :t])
        posterior_var = ridge.scale_**2 - sigma**2  # s_t' Sigma s_t
        n = nuts.draws_.shape[0]
        assert ((nuts.loc_ - ridge.loc_).abs() < 5 * torch.sqrt(3 * posterior_var / n)).all()  # ESS >= n / 3
        nuts_var = nuts.scale_**2 - sigma**2
        assert ((nuts_var / posterior_var - 1).abs() < 0.5).all()
