"""Metrics of real-valued predictions: densities, PIT and calibration, KL, CRPS, joint KL, parameter error.

A prediction is a ``(..., 3)`` float64 tensor ``(df, loc, scale)`` of a Student-t; ``df = inf`` is a
Normal (:mod:`bncompare.networks.gaussian`). Every function here is a pure function of such tensors,
broadcast against the values ``x`` (``pred[..., 0]`` and ``x`` broadcast), computed in float64; a
tensor may mix Normal and Student-t entries.

- :func:`log_density` (minus it is the held-out ``query_nll``), :func:`cdf` (the PIT);
- :func:`kl_true_normal`: KL(N(true) || prediction), the conditional KL when the truth is Normal:
  closed form for a Normal prediction, a 1-D integral for a Student-t (see the function);
- :func:`crps`: closed form for both (Gneiting and Raftery 2007; Student-t as in the R package
  scoringRules, derived in the function's docstring);
- :func:`central_coverage`, :func:`coverage`, :func:`pit_histogram`: calibration from the PIT;
- :func:`joint_kl`: KL between two multivariate Normals (the true and the implied joint), any size;
- :func:`param_err`: relative error of a node's regression coefficients.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from bncompare.errors import BNError
from bncompare.networks.gaussian import joint_gaussian, unpack
from bncompare.runtime import single_thread

LOG_2PI = math.log(2 * math.pi)
KL_NODES = 96  # trapezoid nodes of the Student-t KL integral (see kl_true_normal): ~1e-9 relative or better
KL_CHUNK = 8192  # predictions per chunk of that integral (memory: KL_CHUNK * KL_NODES float64)


def _split(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float64)
    if pred.shape[-1:] != (3,):
        raise BNError(f"a prediction has a last axis of 3 (df, loc, scale), got shape {tuple(pred.shape)}")
    df, loc, scale = pred.unbind(-1)
    if not (scale > 0).all():
        raise BNError("prediction scale must be > 0")
    if not (df > 0).all():
        raise BNError("prediction df must be > 0 (inf for a Normal)")
    return df, loc, scale


def _log_t_norm(nu: torch.Tensor) -> torch.Tensor:
    """``lgamma((nu + 1) / 2) - lgamma(nu / 2) - log(nu pi) / 2``, the Student-t's log normalizer (scale 1).

    For large nu the two lgammas cancel to many digits; there the Stirling series of
    ``lgamma(x + 1/2) - lgamma(x) - log(x) / 2`` (x = nu / 2; from the Bernoulli polynomials at 0 and 1/2)
    keeps full precision.
    """
    x = nu / 2
    direct = torch.lgamma(x + 0.5) - torch.lgamma(x) - 0.5 * torch.log(nu * math.pi)
    y = torch.where(x > 30, x, torch.full_like(x, 30.0))
    series = -1 / (8 * y) + 1 / (192 * y**3) - 1 / (640 * y**5) + 17 / (14336 * y**7) - 0.5 * LOG_2PI
    return torch.where(x > 30, series, direct)


def _finite_df(df: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each entry is a Student-t, and its df with a harmless 1.0 at the Normals (no inf arithmetic)."""
    is_t = torch.isfinite(df)
    return is_t, torch.where(is_t, df, torch.ones_like(df))


def log_density(pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Log density of each prediction at ``x``: Normal, or Student-t ``(df, loc, scale)``."""
    df, loc, scale = _split(pred)
    z = (torch.as_tensor(x, dtype=torch.float64) - loc) / scale
    is_t, nu = _finite_df(df)
    normal = -0.5 * LOG_2PI - 0.5 * z.square()
    student = _log_t_norm(nu) - (nu + 1) / 2 * torch.log1p(z.square() / nu)
    return torch.where(is_t, student, normal) - torch.log(scale)


def cdf(pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The predictive CDF at ``x``: the probability integral transform (PIT) of an observation."""
    df, loc, scale = _split(pred)
    z = (torch.as_tensor(x, dtype=torch.float64) - loc) / scale
    is_t, nu = _finite_df(df)
    z, nu, is_t = torch.broadcast_tensors(z, nu, is_t)
    normal = special.ndtr(z.cpu().numpy())
    student = special.stdtr(nu.cpu().numpy(), z.cpu().numpy())
    return torch.as_tensor(np.where(is_t.cpu().numpy(), student, normal), dtype=torch.float64, device=loc.device)


def _horner(x: torch.Tensor, coefs: list[float]) -> torch.Tensor:
    out = torch.full_like(x, coefs[-1])
    for c in reversed(coefs[:-1]):
        out = out * x + c
    return out


# Below |x| = 0.01 the direct formulas would lose up to 2 eps / |x| relative: series there (remainder < 1e-15).
SERIES_BELOW = 0.01
_LOG1P_SERIES = [(-1) ** k / k for k in range(2, 10)]  # x - log(1 + x) = x^2 (1/2 - x/3 + ...)
_EXPM1_SERIES = [1 / math.factorial(k) for k in range(2, 9)]  # e^x - 1 - x = x^2 (1/2 + x/6 + ...)


def _x_minus_log1p(x: torch.Tensor) -> torch.Tensor:
    """``x - log(1 + x)`` without cancellation near 0 (a series below ``SERIES_BELOW``)."""
    small = x.abs() < SERIES_BELOW
    xs = torch.where(small, x, torch.zeros_like(x))
    return torch.where(small, xs.square() * _horner(xs, _LOG1P_SERIES),
                       x - torch.log1p(torch.where(small, torch.zeros_like(x), x)))


def _expm1_minus(x: torch.Tensor) -> torch.Tensor:
    """``e^x - 1 - x`` without cancellation near 0 (a series below ``SERIES_BELOW``)."""
    small = x.abs() < SERIES_BELOW
    xs = torch.where(small, x, torch.zeros_like(x))
    return torch.where(small, xs.square() * _horner(xs, _EXPM1_SERIES), torch.expm1(x) - x)


def _t_log_term(nu: torch.Tensor, delta: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``E log(1 + w)`` for ``w = u^2 / nu``, ``u ~ N(delta, tau^2)``, elementwise (1-D tensors).

    As :func:`_t_excess_term`, with ``log(1 + w) = int_0^inf e^-t (1 - e^{-t w}) / t dt``: the integrand in
    ``v = log t`` is ``e^{-t} (1 - phi(t))``, decaying like ``e^v (a + c)`` on the left.
    """
    a, c = (tau.square() / nu)[:, None], (delta.square() / nu)[:, None]
    lo = -28.0 - torch.log1p(a + c)  # the left tail beyond lo is below e^-28 relative
    t, h = _log_time_grid(lo, nu)
    log_phi = -0.5 * torch.log1p(2 * t * a) - t * c / (1 + 2 * t * a)
    return _trapezoid(torch.exp(-t) * -torch.expm1(log_phi), h)


def _log_time_grid(lo: torch.Tensor, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hi = math.log(40.0)  # exp(-40) is negligible
    grid = torch.linspace(0.0, 1.0, KL_NODES, dtype=torch.float64, device=nu.device)[None]
    return torch.exp(lo + (hi - lo) * grid), (hi - lo)[:, 0] / (KL_NODES - 1)


def _trapezoid(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return h * (f.sum(-1) - 0.5 * (f[:, 0] + f[:, -1]))


def _t_excess_term(nu: torch.Tensor, delta: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``E[w - log(1 + w)]`` for ``w = u^2 / nu``, ``u ~ N(delta, tau^2)``, elementwise (1-D tensors).

    ``w - log(1 + w) = int_0^inf e^-t (e^{-t w} - 1 + t w) / t dt`` (Frullani), and the Gaussian expectation
    of ``e^{-t w}`` is ``phi(t) = (1 + 2 t a)^{-1/2} exp(-t c / (1 + 2 t a))`` with ``a = tau^2 / nu``,
    ``c = delta^2 / nu`` (so ``E w = a + c``). The expectation is ``int e^{-t} (phi - 1 + t (a + c)) dv``
    over ``v = log t`` in R: a smooth positive integrand, decaying like ``e^{2v}`` on the left and
    ``exp(-e^v)`` on the right, analytic in a strip around the real axis, where the trapezoid rule
    converges geometrically in the number of nodes. ``phi - 1 + t (a + c)`` is summed from parts that are
    each computed without cancellation.
    """
    a, c = (tau.square() / nu)[:, None], (delta.square() / nu)[:, None]
    lo = -14.0 - torch.log1p(a + c)  # the left tail, ~ e^{2 v} (a + c)^2, is below e^-28 relative
    t, h = _log_time_grid(lo, nu)
    log_phi = -0.5 * torch.log1p(2 * t * a) - t * c / (1 + 2 * t * a)
    # phi - 1 + t (a + c) = (e^L - 1 - L) + (L + t a + t c), L = log phi
    rest = 0.5 * _x_minus_log1p(2 * t * a) + 2 * t.square() * a * c / (1 + 2 * t * a)
    return _trapezoid(torch.exp(-t) * (_expm1_minus(log_phi) + rest), h)


def kl_true_normal(true_loc: torch.Tensor, true_scale: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """KL(N(true_loc, true_scale^2) || prediction), elementwise.

    Normal prediction: ``log(s / sigma) + (sigma^2 + (mu - m)^2) / (2 s^2) - 1/2``. Student-t prediction
    ``(nu, m, s)``: ``-H(N) - E log q``, where the only non-closed-form piece is
    ``E log(1 + ((X - m) / s)^2 / nu)`` under the true Normal, a 1-D integral computed by the trapezoid
    rule in log-time (:func:`_t_log_term`; relative error ~1e-13 against adaptive quadrature).
    """
    df, loc, scale = _split(pred)
    mu, sigma = torch.as_tensor(true_loc, dtype=torch.float64), torch.as_tensor(true_scale, dtype=torch.float64)
    if not (sigma > 0).all():
        raise BNError("true scale must be > 0")
    df, loc, scale, mu, sigma = torch.broadcast_tensors(df, loc, scale, mu, sigma)
    out = torch.log(scale / sigma) + (sigma.square() + (mu - loc).square()) / (2 * scale.square()) - 0.5
    is_t = torch.isfinite(df)
    if is_t.any():
        nu, m, s, mu_t, sig_t = (t[is_t] for t in (df, loc, scale, mu, sigma))
        delta, tau = (mu_t - m) / s, sig_t / s
        mean_w = (delta.square() + tau.square()) / nu
        near = mean_w < 1  # near a Normal: split off E w
        log_term = torch.empty_like(nu)
        for mask, term in ((near, _t_excess_term), (~near, _t_log_term)):
            idx = mask.nonzero()[:, 0]
            with single_thread():  # many small elementwise ops: threads cost more than they save (2x measured)
                parts = [term(nu[j], delta[j], tau[j]) for j in idx.split(KL_CHUNK)]
            if parts:
                value = torch.cat(parts)
                log_term[idx] = mean_w[idx] - value if term is _t_excess_term else value
        log_norm = _log_t_norm(nu) - torch.log(s)
        neg_entropy = -0.5 * (LOG_2PI + 1) - torch.log(sig_t)
        out = out.clone()
        out[is_t] = neg_entropy - log_norm + (nu + 1) / 2 * log_term
    return out


def crps(pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Continuous ranked probability score ``E|X - x| - E|X - X'| / 2`` (lower is better), closed form.

    With ``z = (x - m) / s``, ``crps = s * crps_std(z)``. Normal:
    ``z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)``. Student-t with ``nu > 1`` (infinite for ``nu <= 1``):
    ``E|X - z| = z (2 F(z) - 1) + 2 int_z^inf x f`` and, since ``d/dx [(nu + x^2) f(x)] = -(nu - 1) x f(x)``,
    ``int_z^inf x f = (nu + z^2) f(z) / (nu - 1)``; the spread term is
    ``E|X - X'| / 2 = 2 sqrt(nu) B(1/2, nu - 1/2) / ((nu - 1) B(1/2, nu / 2)^2)``.
    """
    df, loc, scale = _split(pred)
    x = torch.as_tensor(x, dtype=torch.float64)
    z = (x - loc) / scale
    is_t, nu = _finite_df(df)
    std_normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    normal = z * (2 * std_normal.cdf(z) - 1) + 2 * torch.exp(std_normal.log_prob(z)) - 1 / math.sqrt(math.pi)
    std_t = torch.stack([torch.where(is_t, nu, torch.full_like(nu, math.inf)), torch.zeros_like(nu),
                         torch.ones_like(nu)], -1)
    f, F = torch.exp(log_density(std_t, z)), cdf(std_t, z)
    nu_m1 = (nu - 1).clamp_min(1e-300)
    log_beta = lambda p, q: torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)  # noqa: E731
    half = torch.full_like(nu, 0.5)
    spread = 2 * torch.sqrt(nu) * torch.exp(log_beta(half, (nu - 0.5).clamp_min(1e-300))
                                            - 2 * log_beta(half, nu / 2)) / nu_m1
    student = z * (2 * F - 1) + 2 * f * (nu + z.square()) / nu_m1 - spread
    student = torch.where(nu > 1, student, torch.full_like(student, math.inf))
    return scale * torch.where(is_t, student, normal)


# ----- calibration from the PIT ----------------------------------------------------------------

def _check_pit(pit: torch.Tensor) -> torch.Tensor:
    pit = torch.as_tensor(pit, dtype=torch.float64)
    if not ((pit >= 0) & (pit <= 1)).all():
        raise BNError("PIT values must lie in [0, 1] (no NaN)")
    return pit


def central_coverage(pit: torch.Tensor, level: float) -> torch.Tensor:
    """Whether each observation lies in its prediction's central ``level`` interval (bool, PIT's shape)."""
    if not 0 < level < 1:
        raise BNError(f"interval level must be in (0, 1), got {level}")
    pit = _check_pit(pit)
    return (pit >= (1 - level) / 2) & (pit <= (1 + level) / 2)


def coverage(pit: torch.Tensor, levels=(0.5, 0.9)) -> dict[float, float]:
    """The fraction of observations inside the central interval of each level (calibrated: the level)."""
    return {float(lv): float(central_coverage(pit, lv).double().mean()) for lv in levels}


def pit_histogram(pit: torch.Tensor, bins: int = 10) -> torch.Tensor:
    """Counts of the PIT values in ``bins`` equal bins of [0, 1] (the last bin includes 1): (bins,) int64."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise BNError(f"PIT histogram bins must be a whole number >= 1, got {bins!r}")
    pit = _check_pit(pit).reshape(-1)
    idx = torch.clamp((pit * bins).floor().long(), max=bins - 1)
    return torch.bincount(idx, minlength=bins)


# ----- joints and parameters -------------------------------------------------------------------

def joint_kl(mean_p: torch.Tensor, cov_p: torch.Tensor, mean_q: torch.Tensor, cov_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, cov_p) || N(mean_q, cov_q)) for batches ``(..., M)``, ``(..., M, M)``: shape ``(...)``.

    ``(tr(Sq^-1 Sp) + d' Sq^-1 d - M + log det Sq - log det Sp) / 2`` with ``d = mean_q - mean_p``,
    through Cholesky factors: ``tr(Sq^-1 Sp) = ||Lq^-1 Lp||_F^2``, ``d' Sq^-1 d = ||Lq^-1 d||^2``.
    """
    mean_p, cov_p, mean_q, cov_q = (torch.as_tensor(t, dtype=torch.float64) for t in (mean_p, cov_p, mean_q, cov_q))
    M = mean_p.shape[-1]
    if cov_p.shape[-2:] != (M, M) or cov_q.shape[-2:] != (M, M) or mean_q.shape[-1] != M:
        raise BNError(f"joint_kl: means (..., {M}) need covariances (..., {M}, {M}); got {tuple(mean_q.shape)}, "
                      f"{tuple(cov_p.shape)}, {tuple(cov_q.shape)}")
    Lp, info_p = torch.linalg.cholesky_ex(cov_p)
    Lq, info_q = torch.linalg.cholesky_ex(cov_q)
    if (info_p != 0).any() or (info_q != 0).any():
        raise BNError("joint_kl: a covariance is not positive definite")
    A = torch.linalg.solve_triangular(Lq, Lp.expand(torch.broadcast_shapes(Lp.shape, Lq.shape)), upper=False)
    d = (mean_q - mean_p)[..., None]
    b = torch.linalg.solve_triangular(Lq, d.expand(*torch.broadcast_shapes(Lq.shape[:-2], d.shape[:-2]), M, 1),
                                      upper=False)
    log_det = 2 * (torch.log(torch.diagonal(Lq, dim1=-2, dim2=-1)).sum(-1)
                   - torch.log(torch.diagonal(Lp, dim1=-2, dim2=-1)).sum(-1))
    return 0.5 * (A.square().sum((-2, -1)) + b.square().sum((-2, -1)) - M + log_det)


def network_kl(graph, true_params: list, est_params: list) -> torch.Tensor:
    """KL(p || q) of two linear-Gaussian networks on the same DAG (parameter batches, G sets each): (G,).

    The chain rule: ``sum_j E_p KL(p(x_j | pa_j) || q(x_j | pa_j))``, and each term is closed form in the
    true joint's mean and covariance of the parents: with ``d = (b_p - b_q) + (w_p - w_q) . pa``,
    ``E_p d^2 = (E_p d)^2 + dw' Cov_p(pa) dw`` and the term is
    ``log(s_q / s_p) + (s_p^2 + E_p d^2) / (2 s_q^2) - 1/2``. It equals :func:`joint_kl` of the two
    joints but needs only the TRUE joint (always positive definite), never the inverse of the fitted one,
    which is ill-conditioned for a network with a tiny sigma.
    """
    mean, cov = joint_gaussian(graph, [torch.as_tensor(p, dtype=torch.float64) for p in true_params])
    total = torch.zeros(mean.shape[0], dtype=torch.float64)
    for m, pa in enumerate(graph.parents):
        bp, wp, sp = unpack(torch.as_tensor(true_params[m], dtype=torch.float64))
        bq, wq, sq = unpack(torch.as_tensor(est_params[m], dtype=torch.float64))
        dw, pa = wp - wq, list(pa)
        d_mean = bp - bq + (dw * mean[:, pa]).sum(-1)
        d_var = (dw[:, :, None] * cov[:, pa][:, :, pa] * dw[:, None, :]).sum((-2, -1))
        total = total + torch.log(sq / sp) + (sp**2 + d_mean**2 + d_var) / (2 * sq**2) - 0.5
    return total


def param_err(true_params: list, est_params: list) -> torch.Tensor:
    """Relative error of each node's regression coefficients: ``||beta_hat - beta|| / ||beta||``.

    ``beta = (intercept, weights)`` of a node (sigma excluded; a root's beta is its intercept alone), from
    two parameter batches (one ``(G, k_m + 2)`` tensor per node; G = 1 broadcasts). Returns ``(G, M)``;
    NaN where the true ``beta`` is all zeros (a relative error is undefined there).
    """
    if len(true_params) != len(est_params):
        raise BNError(f"param_err: {len(true_params)} true nodes but {len(est_params)} estimated")
    out = []
    for m, (p, q) in enumerate(zip(true_params, est_params)):
        p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
        if p.shape[-1] != q.shape[-1]:
            raise BNError(f"param_err: node {m} has {p.shape[-1] - 2} true weights but {q.shape[-1] - 2} estimated")
        beta, beta_hat = p[..., :-1], q[..., :-1]
        norm = torch.linalg.vector_norm(beta, dim=-1)
        err = torch.linalg.vector_norm(beta_hat - beta, dim=-1)
        out.append(torch.where(norm > 0, err / torch.where(norm > 0, norm, torch.ones_like(norm)),
                               torch.full_like(norm, math.nan)))
    return torch.stack(torch.broadcast_tensors(*out), -1)
