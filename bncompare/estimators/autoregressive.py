"""Estimators of an autoregressive process ``s_{t+1} = W s_t + sigma eps`` from one prefix ``s_1 .. s_t``.

Every estimator here fits B prefixes at once (contexts ``(B, t, d)``) and predicts the next state
(:class:`bncompare.estimators.base.AREstimator`), with batched linear algebra (no loop over contexts).
Each fits W from the t - 1 pairs ``(x_u, y_u) = (s_u, s_{u+1})``, u < t (no intercept):

- ``ARLeastSquares`` ("ar_least_squares"): the MLE; minimum-norm below full rank (fewer than d pairs, or
  collinear states: singular values of X at or below :data:`RCOND` times the largest count as zero);
  predictive ``N(W_hat s_t, sigma_hat^2)``, ``sigma_hat^2 = RSS / ((t-1) d)`` floored at ``min_sigma``.
- ``ARRidge`` ("ar_ridge"): the exact posterior of W under i.i.d. ``N(0, prior_var)`` entries and known
  noise ``sigma``, and its exact predictive (the Bayes reference under the ``gaussian`` law); ``sigma = 0``
  is the noise-free posterior: the minimum-norm interpolant, a point forecast once the pairs span R^d.
- ``ARProcrustes`` ("ar_procrustes"): the MLE of W on the orthogonal group (a declared rule below full rank).
- ``OneStepGD`` ("ar_one_step_gd"): one gradient step from W = 0 with the optimal step (below).
- Pyro NUTS on W ("ar_pyro_nuts") lives in :mod:`bncompare.estimators.autoregressive_pyro`.

With no pair yet (t = 1) W_hat = 0 (Procrustes: I) and the MLE scale is EMPTY_SIGMA; the ridge gives
its prior predictive.

One step of gradient descent on the in-context least-squares loss
``L(W) = 1/2 sum_{u < t} ||s_{u+1} - W s_u||^2`` from ``W = 0`` gives ``W_1 = eta * A_t`` with
``A_t = sum_{u < t} s_{u+1} s_u'``, and the forecast ``eta * A_t s_t`` (:func:`gd_direction`).
:func:`optimal_step` is the step that minimizes the expected squared error of that forecast over
the law of the sequences, pooled over t = 1 .. horizon (one step for every t, as one set of weights
of a linear attention layer has).
"""
from __future__ import annotations

import functools
import math

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import AREstimator, Tags
from bncompare.estimators.gaussian import positive_setting
from bncompare.networks.gaussian import normal

OPTIMUM_SEQUENCES = 2**14  # Monte Carlo sequences behind the optimal step (its relative sd is ~1e-3)
OPTIMUM_SEED = 7_919  # their own seed stream: never an evaluation or training draw


def gd_direction(contexts: torch.Tensor) -> torch.Tensor:
    """``A_t s_t`` (B, d) for prefixes (B, t, d): the forecast of one GD step from W = 0 with step 1."""
    x, y = contexts[:, :-1], contexts[:, 1:]  # pairs (s_u, s_{u+1}), u < t
    last = contexts[:, -1]
    return torch.einsum("bui,buj,bj->bi", y, x, last)


def gd_directions(sequences: torch.Tensor) -> torch.Tensor:
    """``A_t s_t`` for every prefix t = 1 .. L of sequences (B, L, d), as (B, L, d), in one pass."""
    B, L, d = sequences.shape
    outer = torch.einsum("bui,buj->buij", sequences[:, 1:], sequences[:, :-1])  # s_{u+1} s_u'
    A = torch.cat([torch.zeros(B, 1, d, d, dtype=sequences.dtype), torch.cumsum(outer, 1)], 1)  # A_1 .. A_L
    return torch.einsum("btij,btj->bti", A, sequences)


def optimal_step(prior, d: int, horizon: int, n_sequences: int = OPTIMUM_SEQUENCES, seed: int = OPTIMUM_SEED) -> float:
    """The step eta minimizing E sum_{t=1..horizon} ||eta A_t s_t - s_{t+1}||^2 under ``prior``'s sequences:
    eta = sum E<A_t s_t, s_{t+1}> / sum E||A_t s_t||^2, the expectations by Monte Carlo on a seed of its own."""
    from bncompare.networks.autoregressive import ar_graph

    gen = torch.Generator().manual_seed(seed)
    num = den = 0.0
    for start in range(0, n_sequences, 1024):
        n = min(1024, n_sequences - start)
        seqs = prior.sequences(prior.sample(ar_graph(d), n, gen), horizon + 1, gen)
        f = gd_directions(seqs[:, :-1])
        num += float((f * seqs[:, 1:]).sum())
        den += float((f * f).sum())
    return num / den if den > 0 else 0.0


# ----- the estimators -------------------------------------------------------------------------------------

RCOND = 1e-10  # a singular value of the pairs' input matrix X at or below RCOND * the largest counts as zero
# (the minimum-norm rule). On singular values, not on X'X's eigenvalues: the fits never square X's condition.
MIN_SIGMA = 1e-6  # the default floor of a fitted noise sd (an exact fit has RSS = 0)
EMPTY_SIGMA = 1.0  # the fitted noise sd with no pair yet (t = 1): the standard Normal, as the Gaussian MLE's


def nonnegative_setting(name: str, value, owner: str) -> float:
    """A setting that must be a finite number >= 0, checked (one-line error naming it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BNError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def pairs(contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs X = s_1..s_{t-1} (B, t-1, d), targets Y = s_2..s_t (B, t-1, d) and the last state s_t (B, d)."""
    return contexts[:, :-1], contexts[:, 1:], contexts[:, -1]


def min_norm_transitions(x: torch.Tensor, y: torch.Tensor, rcond: float = RCOND):
    """The minimum-norm least-squares W (B, d, d) of ``y_u = W x_u``, from the SVD ``X = U S V'`` of each
    context: ``W = Y' U S^+ V'`` (S^+ inverts the singular values above ``rcond`` times the largest).

    Returns ``(W, vh, keep)``: ``vh`` (B, r, d) the right singular vectors, ``keep`` (B, r) which of them
    are identified (the row space of X, on which W is determined)."""
    B, n, d = x.shape
    if n == 0:
        return (torch.zeros(B, d, d, dtype=x.dtype, device=x.device), x.new_zeros(B, 0, d),
                torch.zeros(B, 0, dtype=torch.bool, device=x.device))
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    keep = s > rcond * s[:, :1]
    inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    W = torch.einsum("bni,bnk,bk,bkj->bij", y, u, inv, vh)
    return W, vh, keep


def mle_sigma(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, min_sigma: float) -> torch.Tensor:
    """The MLE noise sd per context, ``sqrt(RSS / ((t-1) d))``, floored at ``min_sigma``; EMPTY_SIGMA at t = 1."""
    B, n, d = x.shape
    if n == 0:
        return torch.full((B,), EMPTY_SIGMA, dtype=x.dtype, device=x.device)
    rss = ((y - torch.einsum("bij,buj->bui", W, x)) ** 2).sum((1, 2))
    return torch.sqrt(rss / (n * d)).clamp_min(min_sigma)


def normal_rows(loc: torch.Tensor, scale: torch.Tensor, queries: torch.Tensor, nodes: list[int]) -> list[torch.Tensor]:
    """Per coordinate m the Normal ``(inf, loc[:, m], scale[:, m])`` repeated for the Q query rows: (B, Q, 3)."""
    B, Q = queries.shape[:2]
    return [normal(loc[:, m, None].expand(B, Q).clone(), scale[:, m, None].expand(B, Q).clone()) for m in nodes]


class _ARFitted(AREstimator):
    """An estimator whose fit leaves a next-state location ``loc_`` and scale ``scale_``, both (B, d)."""

    def _contexts(self, graph, contexts) -> torch.Tensor:
        contexts = self._start_fit(graph, contexts)
        if contexts.shape[1] < 1:
            raise BNError(f"{self.name}: a context is a prefix s_1..s_t with t >= 1 states, got t = 0")
        return contexts

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)  # their values (the true next states) are never read
        return normal_rows(self.loc_, self.scale_, queries, nodes)


class ARLeastSquares(_ARFitted):
    """The MLE of W from the pairs (s_u, s_{u+1}), u < t, no intercept: least squares, minimum-norm below full
    rank (fewer than d pairs, or collinear states; see :data:`RCOND`, or the setting ``rcond``).

    The predictive of each coordinate is ``N(W_hat s_t, sigma_hat^2)`` with the MLE ``sigma_hat^2 = RSS /
    ((t-1) d)``, floored at ``min_sigma``: a floored scale is the rule's point mass (``zero_below_``). With no
    pair (t = 1), W_hat = 0 and sigma_hat = EMPTY_SIGMA. ``transition_`` is W_hat.
    """

    name = "ar_least_squares"
    tags = Tags(variables="autoregressive", floors_are_zeros=True)

    def __init__(self, min_sigma: float = MIN_SIGMA, rcond: float = RCOND):
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)
        self.rcond = positive_setting("rcond", rcond, self.name)

    def fit(self, graph, contexts):
        x, y, last = pairs(self._contexts(graph, contexts))
        W, _, _ = min_norm_transitions(x, y, self.rcond)
        self.transition_ = W
        self.loc_ = torch.einsum("bij,bj->bi", W, last)
        self.scale_ = mle_sigma(x, y, W, self.min_sigma)[:, None].expand_as(self.loc_)
        self.zero_below_ = self.min_sigma
        return self


def ridge_posterior(x: torch.Tensor, y: torch.Tensor, last: torch.Tensor, sigma: float, tau: float):
    """The posterior mean W_hat (B, d, d) of :class:`ARRidge` and ``s_t' Sigma s_t`` (B,), from the SVD
    ``X = U S V'`` (so X's condition number is never squared, and a tiny sigma stays accurate):
    ``W_hat = Y' U diag(s / (s^2 + lambda)) V'`` and ``Sigma = tau (I - V diag(s^2 / (s^2 + lambda)) V')``,
    lambda = sigma^2 / tau. With sigma = 0, singular values at or below RCOND times the largest count as
    zero (the minimum-norm rule), and ``s_t' Sigma s_t`` is exactly 0 once the pairs span R^d."""
    B, n, d = x.shape
    if n == 0:
        return torch.zeros(B, d, d, dtype=x.dtype, device=x.device), tau * (last * last).sum(-1)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    if sigma == 0:
        keep = s > RCOND * s[:, :1]
        coef = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        rest = (~keep).to(x.dtype)  # an unidentified direction keeps its prior variance
    else:
        lam = sigma**2 / tau
        coef, rest = s / (s * s + lam), lam / (s * s + lam)
    W = torch.einsum("bni,bnk,bk,bkj->bij", y, u, coef, vh)
    proj = torch.einsum("bkj,bj->bk", vh, last)
    perp = last - torch.einsum("bkj,bk->bj", vh, proj)  # the part of s_t outside X's row space
    quad = tau * ((perp * perp).sum(-1) + (rest * proj * proj).sum(-1))
    if sigma == 0:
        quad = torch.where(keep.sum(-1) == d, torch.zeros_like(quad), quad)
    return W, quad


class ARRidge(_ARFitted):
    """The exact posterior of W under rows ``w_m ~ N(0, prior_var I)`` i.i.d. and known noise sd ``sigma``.

    The likelihood of a sequence given s_1 is the product over coordinates m of the regressions of
    ``s_{u+1, m}`` on ``s_u``, so the rows' posteriors are independent, with mean ``W_hat = Y'X (X'X +
    (sigma^2 / prior_var) I)^-1`` and the one covariance ``Sigma = (X'X / sigma^2 + I / prior_var)^-1``;
    the predictive of ``s_{t+1, m}`` is ``N(W_hat s_t, sigma^2 + s_t' Sigma s_t)``, the exact Bayes predictive
    (s_1's law does not involve W, so neither does the posterior). Computed from X's SVD (:func:`ridge_posterior`).

    ``sigma = 0`` (noise-free sequences): the pairs are exact constraints ``X w_m = y_m``, and the posterior
    is the prior conditioned on them: mean the minimum-norm interpolant (= :class:`ARLeastSquares`, the limit
    of W_hat as sigma -> 0) and covariance ``prior_var (I - X^+ X)``, the prior on the directions the pairs
    leave unidentified (see :data:`RCOND`). The predictive scale is ``sqrt(prior_var) ||(I - X^+ X) s_t||``,
    and exactly 0 once the pairs span R^d: a point forecast where the posterior is a point, declared as a
    point mass (``floors_are_zeros``, ``zero_below_`` the smallest positive float; with sigma > 0 every
    scale is at least sigma and ``zero_below_`` is 0).

    ``prior_var = None`` means 1/d, the ``gaussian`` law's entries N(0, 1/d): then this is the Bayes
    predictive of that law (without a spectral-radius rescaling), the ``query_nll`` reference, whatever the
    start law. ``start`` does not change the fit: it names the start law of the study's prior, so that
    :meth:`optimal_prior` is that prior's exact dict (pass the study's ``${process.start}``).
    """

    name = "ar_ridge"
    tags = Tags(variables="autoregressive", floors_are_zeros=True, reference_for="query_nll",
                optimal_under="autoregressive")

    def __init__(self, sigma: float = 0.0, prior_var: float | None = None, start: str = "fixed"):
        from bncompare.networks.autoregressive import STARTS

        self.sigma = nonnegative_setting("sigma", sigma, self.name)
        self.prior_var = None if prior_var is None else positive_setting("prior_var", prior_var, self.name)
        if start not in STARTS:
            raise BNError(f"{self.name}: start must be one of {', '.join(STARTS)}, got {start!r}")
        self.start = start

    def prepare(self, graph, prior, seed: int = 0):
        self.d_ = graph.n_nodes  # optimal_prior needs d when prior_var is given
        return self

    def optimal_prior(self) -> dict | None:
        d = self.graph_.n_nodes if hasattr(self, "graph_") else getattr(self, "d_", None)
        if self.prior_var is not None and (d is None or not math.isclose(self.prior_var, 1 / d, rel_tol=1e-12)):
            return None
        return {"kind": "autoregressive",
                "params": {"law": "gaussian", "sigma": self.sigma, "start": self.start, "spectral_radius": None}}

    def fit(self, graph, contexts):
        x, y, last = pairs(self._contexts(graph, contexts))
        B, n, d = x.shape
        tau = 1.0 / d if self.prior_var is None else self.prior_var
        W, quad = ridge_posterior(x, y, last, self.sigma, tau)
        var = self.sigma**2 + quad
        # sigma = 0: a scale of exactly 0 is the posterior's point mass; with sigma > 0 every scale is >= sigma
        self.zero_below_ = torch.finfo(x.dtype).tiny if self.sigma == 0 else 0.0
        self.transition_ = W
        self.loc_ = torch.einsum("bij,bj->bi", W, last)
        self.scale_ = torch.sqrt(var)[:, None].expand_as(self.loc_)
        return self


def input_rank(x: torch.Tensor, rcond: float = RCOND) -> torch.Tensor:
    """The number of X's singular values above ``rcond`` times the largest, per context (B,): the dimension
    of the input directions the pairs identify."""
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    s = torch.linalg.svdvals(x)
    return (s > rcond * s[:, :1]).sum(-1)


def procrustes(cross: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """The orthogonal W maximizing tr(W' C) for C = Y'X (B, d, d): the MLE of W on O(d), ``U V'`` of C's SVD.

    Below full rank (``rank`` < d, the rank of the pairs' inputs X from :func:`input_rank`: C's singular
    values are X's squared, so C itself would misjudge them) W is fixed only from C's top-``rank`` row space
    to its column space; on the rest the rule takes the isometry from the unidentified input directions onto
    the unidentified output directions that is closest to the identity (the polar factor of ``P_out P_in``,
    the two complements' projectors). So one pair gives the smallest rotation taking s_1 to s_2, and no pair
    W = I. Where that too is not unique, LAPACK's SVD completion decides.
    """
    u, s, vh = torch.linalg.svd(cross)
    d = s.shape[-1]
    keep = torch.arange(d, device=s.device) < rank[:, None]
    drop = (~keep).to(cross.dtype)
    p_out = torch.einsum("bik,bk,bjk->bij", u, drop, u)
    p_in = torch.einsum("bki,bk,bkj->bij", vh, drop, vh)
    top = s[:, :1]
    scaled = torch.where(top > 0, top, torch.ones_like(top))  # C / its norm: both blocks of size <= 1
    m = torch.einsum("bik,bk,bkj->bij", u, torch.where(keep, s / scaled, torch.zeros_like(s)), vh) + p_out @ p_in
    a, _, bh = torch.linalg.svd(m)
    return a @ bh


class ARProcrustes(_ARFitted):
    """The MLE of W constrained to the orthogonal group (orthogonal Procrustes on the pairs, :func:`procrustes`),
    the natural reference under the ``orthogonal`` and ``commuting`` laws.

    The predictive is ``N(W_hat s_t, sigma_hat^2)`` with the MLE ``sigma_hat^2 = RSS / ((t-1) d)`` floored at
    ``min_sigma`` (a floored scale is the rule's point mass), EMPTY_SIGMA at t = 1. ``transition_`` is W_hat.
    """

    name = "ar_procrustes"
    tags = Tags(variables="autoregressive", floors_are_zeros=True)

    def __init__(self, min_sigma: float = MIN_SIGMA, rcond: float = RCOND):
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)
        self.rcond = positive_setting("rcond", rcond, self.name)

    def fit(self, graph, contexts):
        x, y, last = pairs(self._contexts(graph, contexts))
        W = procrustes(torch.einsum("bui,buj->bij", y, x), input_rank(x, self.rcond))
        self.transition_ = W
        self.loc_ = torch.einsum("bij,bj->bi", W, last)
        self.scale_ = mle_sigma(x, y, W, self.min_sigma)[:, None].expand_as(self.loc_)
        self.zero_below_ = self.min_sigma
        return self


@functools.lru_cache(maxsize=64)
def _cached_step(law: str, sigma: float, start: str, spectral_radius: float | None, d: int, horizon: int) -> float:
    from bncompare.networks.autoregressive import ARPrior

    return optimal_step(ARPrior(law, sigma, start, spectral_radius), d, horizon)


def cached_optimal_step(prior, d: int, horizon: int) -> float:
    """:func:`optimal_step`, computed once per (prior, d, horizon) in this process."""
    return _cached_step(prior.law, float(prior.sigma), prior.start, prior.spectral_radius, int(d), int(horizon))


class OneStepGD(_ARFitted):
    """One step of gradient descent from W = 0 on the in-context loss: the forecast ``eta * A_t s_t``
    (:func:`gd_direction`), ``transition_ = eta * A_t``; a point forecast (scale 0).

    ``step = None``: eta is :func:`optimal_step` for the study's prior, d and ``horizon`` (the study's T),
    computed in :meth:`prepare` (once per process for each of them) and exposed as ``step_``. A number:
    that step, no prepare needed.
    """

    name = "ar_one_step_gd"
    tags = Tags(variables="autoregressive", point_forecast=True)

    def __init__(self, horizon: int = 50, step: float | None = None):
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise BNError(f"{self.name}: horizon (the study's T) must be an integer >= 1, got {horizon!r}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                                 or not math.isfinite(step)):
            raise BNError(f"{self.name}: step must be a finite number (or null: optimal for the law), got {step!r}")
        self.horizon = horizon
        self.step = None if step is None else float(step)
        if self.step is not None:
            self.step_ = self.step

    def prepare(self, graph, prior, seed: int = 0):
        if self.step is None:
            if not all(hasattr(prior, f) for f in ("law", "sigma", "start", "spectral_radius")):
                raise BNError(f"{self.name}: the optimal step needs the process's prior (an ARPrior), got "
                              f"{type(prior).__name__}")
            self.step_ = cached_optimal_step(prior, graph.n_nodes, self.horizon)
        return self

    def fit(self, graph, contexts):
        contexts = self._contexts(graph, contexts)
        if not hasattr(self, "step_"):
            raise BNError(f"{self.name}: call prepare(graph, prior) before fit (it computes the optimal step), "
                          "or give step")
        x, y, _ = pairs(contexts)
        self.transition_ = self.step_ * torch.einsum("bui,buj->bij", y, x)
        self.loc_ = self.step_ * gd_direction(contexts)
        self.scale_ = torch.zeros_like(self.loc_)
        return self
