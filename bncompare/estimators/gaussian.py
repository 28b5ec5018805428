"""Estimators of a linear-Gaussian network from in-context rows, batched over the B contexts of a fit.

Each node ``m`` is a linear regression of ``x_m`` on its parents (or, for the graph-agnostic
naive estimator, on every earlier node), solved for all contexts at once with batched
``(B, k, k)`` linear algebra; no loop over contexts.

- ``LeastSquares`` ("mle"): the maximum-likelihood fit. Weights by least squares with a free
  intercept, ``sigma^2 = RSS / N`` (the MLE divisor, pgmpy's ``std_estimator="mle"``).
- ``Ridge(penalty)``: ``sum (y - b - x w)^2 + penalty * |w|^2``; the intercept is NOT penalized.
- ``NIGPosterior`` ("bayes"): the exact posterior predictive under the conjugate
  Normal-inverse-gamma prior (:class:`bncompare.networks.priors.NIGPrior`), a Student-t.
- ``NaiveLeastSquares`` ("naive"): least squares on the whole prefix ``x_0 .. x_{m-1}``.

Conventions shared by the least-squares family (declared, so a metric never meets a NaN):

- Below full rank (``N < k + 1`` rows, or collinear parents) the weights are the MINIMUM-NORM
  least-squares solution on the centred data, and the intercept is ``mean(y) - mean(x) . w``
  (the intercept is free, only the weights are made small). This is what sklearn's
  ``LinearRegression`` and hence pgmpy return, so the library mirror agrees even there. An
  eigenvalue of the centred Gram matrix at or below ``rcond`` times the largest counts as zero.
- With no rows at all (``N = 0``) a node's fit is the standard Normal (intercept 0, weights 0,
  sigma 1), as the discrete MLE falls back to the uniform row.
- ``sigma`` is floored at ``min_sigma``: an exact fit (``RSS = 0``, e.g. one row for a root) would
  otherwise give a zero-width Normal and an infinite log-loss and KL.
"""
from __future__ import annotations

import math

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import GaussianEstimator, Tags
from bncompare.networks.gaussian import normal, pack, student_t, unpack
from bncompare.networks.priors import NIGPrior

EMPTY_SIGMA = 1.0  # the sigma of a node fitted on no rows (the standard Normal)


# ----- batched least squares ------------------------------------------------------------------

def centred(contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means (B, M) and centred rows (B, N, M) of each context; the mean of no rows is 0."""
    n = max(contexts.shape[1], 1)
    means = contexts.sum(1) / n
    return means, contexts - means[:, None, :]


def min_norm_solve(gram: torch.Tensor, rhs: torch.Tensor, rcond: float) -> torch.Tensor:
    """Minimum-norm solution of ``gram w = rhs`` for symmetric PSD ``gram`` (B, k, k), ``rhs`` (B, k).

    ``gram = V diag(lam) V'``; eigen-directions with ``lam <= rcond * max(lam)`` (or ``lam <= 0``) are
    dropped, which is the pseudo-inverse. For a Gram matrix ``X'X`` and ``rhs = X'y`` this is the
    minimum-norm least-squares solution of ``X w = y``.
    """
    if gram.shape[-1] == 0:
        return rhs.clone()
    lam, vec = torch.linalg.eigh(gram)
    keep = lam > (rcond * lam[..., -1:]).clamp_min(torch.finfo(lam.dtype).tiny)
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    coef = (vec.transpose(-1, -2) @ rhs[..., None])[..., 0] * inv
    return (vec @ coef[..., None])[..., 0]


def least_squares_fit(contexts: torch.Tensor, target: int, inputs: list[int], penalty: float = 0.0,
                      rcond: float = 1e-12, min_sigma: float = 1e-6, centred_rows=None) -> torch.Tensor:
    """Regress column ``target`` on columns ``inputs`` in every context: one node's (B, k + 2) parameters.

    ``penalty = 0``: least squares (minimum-norm below full rank); ``penalty > 0``: ridge with an
    unpenalized intercept. ``sigma^2 = RSS / N`` floored at ``min_sigma``; ``N = 0`` gives the standard
    Normal. ``centred_rows`` = :func:`centred` of ``contexts``, when the caller already has it.
    """
    B, N, _ = contexts.shape
    means, xc = centred(contexts) if centred_rows is None else centred_rows
    X, y = xc[..., inputs], xc[..., target]  # (B, N, k), (B, N)
    k = len(inputs)
    gram = X.transpose(-1, -2) @ X
    rhs = (X.transpose(-1, -2) @ y[..., None])[..., 0]
    if penalty > 0:
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        w = torch.linalg.solve(gram + penalty * eye, rhs[..., None])[..., 0] if k else rhs.clone()
    else:
        w = min_norm_solve(gram, rhs, rcond)
    intercept = means[:, target] - (means[:, inputs] * w).sum(-1)
    resid = y - (X @ w[..., None])[..., 0]
    if N == 0:
        sigma = torch.full((B,), EMPTY_SIGMA, dtype=contexts.dtype, device=contexts.device)
    else:
        sigma = torch.sqrt((resid * resid).sum(-1) / N).clamp_min(min_sigma)
    return pack(intercept, w, sigma)


def linear_prediction(params: torch.Tensor, queries: torch.Tensor, inputs: list[int]) -> torch.Tensor:
    """The Normal ``N(b + x_inputs . w, sigma)`` of one node's (B, k + 2) parameters at each query: (B, Q, 3)."""
    b, w, sigma = unpack(params)
    loc = b[:, None] + (queries[..., inputs] * w[:, None, :]).sum(-1)
    return normal(loc, sigma[:, None].expand_as(loc).clone())


def _positive(name: str, value, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise BNError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class _RegressionEstimator(GaussianEstimator):
    """A least-squares-family estimator: one regression per node; predictions are Normals."""

    def _inputs(self, m: int) -> list[int]:
        return list(self.graph_.parents[m])

    def _fit_node(self, contexts, m, centred_rows) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        rows = centred(contexts)  # once for every node
        self.params_ = [self._fit_node(contexts, m, rows) for m in range(graph.n_nodes)]
        self.network_ = self.params_
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        queries = queries.to(self.params_[0].device)
        return [linear_prediction(self.params_[m], queries, self._inputs(m)) for m in nodes]


class LeastSquares(_RegressionEstimator):
    """The maximum-likelihood linear-Gaussian fit of every node on its parents (least squares, RSS / N).

    Settings: ``min_sigma`` (sigma's floor, default 1e-6) and ``rcond`` (relative eigenvalue cut-off of the
    centred Gram matrix below which a direction counts as unidentified; default 1e-12). Below full rank
    the weights are the minimum-norm solution (``minimum_norm = True``, a class attribute); see the module
    docstring for ``N = 0``. ``network_`` is the fitted parameter batch (G = B).
    """

    name = "mle"
    minimum_norm = True  # below full rank: the minimum-norm weights, free intercept (as sklearn/pgmpy)

    def __init__(self, min_sigma: float = 1e-6, rcond: float = 1e-12):
        self.min_sigma = _positive("min_sigma", min_sigma, self.name)
        self.rcond = _positive("rcond", rcond, self.name)

    def _fit_node(self, contexts, m, rows):
        return least_squares_fit(contexts, m, self._inputs(m), 0.0, self.rcond, self.min_sigma, rows)


class Ridge(_RegressionEstimator):
    """Ridge regression of every node on its parents: ``penalty * |w|^2``, the intercept unpenalized.

    ``sigma^2`` is the ridge fit's ``RSS / N`` floored at ``min_sigma``; predictions are Normals.
    ``network_`` is the fitted parameter batch (G = B).
    """

    name = "ridge"
    intercept_penalized = False

    def __init__(self, penalty: float = 1.0, min_sigma: float = 1e-6):
        self.penalty = _positive("penalty", penalty, self.name)
        self.min_sigma = _positive("min_sigma", min_sigma, self.name)

    def _fit_node(self, contexts, m, rows):
        return least_squares_fit(contexts, m, self._inputs(m), self.penalty, min_sigma=self.min_sigma,
                                 centred_rows=rows)


class NaiveLeastSquares(_RegressionEstimator):
    """Least squares of ``x_m`` on ``(1, x_0 .. x_{m-1})``, the whole prefix: it never reads the parents.

    Same conventions as :class:`LeastSquares` (MLE divisor, minimum norm, ``min_sigma``). Its regression
    is not a network on the graph's parents, so ``network_`` is None; ``params_[m]`` holds node ``m``'s
    (B, m + 2) parameters on the prefix (intercept, one weight per earlier node, sigma).
    """

    name = "naive"
    tags = Tags(variables="gaussian", graph_agnostic=True)
    minimum_norm = True

    def __init__(self, min_sigma: float = 1e-6, rcond: float = 1e-12):
        self.min_sigma = _positive("min_sigma", min_sigma, self.name)
        self.rcond = _positive("rcond", rcond, self.name)

    def _inputs(self, m):
        return list(range(m))

    def _fit_node(self, contexts, m, rows):
        return least_squares_fit(contexts, m, self._inputs(m), 0.0, self.rcond, self.min_sigma, rows)

    def fit(self, graph, contexts):
        super().fit(graph, contexts)
        self.network_ = None
        return self


# ----- the conjugate posterior ----------------------------------------------------------------

class NIGPosterior(GaussianEstimator):
    """The exact posterior predictive of every node under the Normal-inverse-gamma prior (a Student-t).

    Prior per node (as :class:`~bncompare.networks.priors.NIGPrior`): ``sigma^2 ~ InvGamma(a, b)``,
    ``beta = (intercept, weights) | sigma^2 ~ N(mean, sigma^2 / precision I)``. With the design
    ``X = (1, x_parents)`` of the N context rows, ``L0 = precision I`` and ``mu0 = mean``::

        Ln = L0 + X'X,   mun = Ln^-1 (L0 mu0 + X'y),   an = a + N / 2,
        bn = b + (|y - X mun|^2 + (mun - mu0)' L0 (mun - mu0)) / 2

    (the residual form of ``b + (y'y + mu0' L0 mu0 - mun' Ln mun) / 2``, without its cancellation).
    At a query with design row ``x`` the predictive is Student-t with ``df = 2 an``, location
    ``x' mun`` and ``scale^2 = (bn / an) (1 + x' Ln^-1 x)``. With N = 0 it is the prior predictive.

    ``network_`` is a plug-in network: weights ``mun`` and ``sigma^2 = bn / an = 1 / E[1 / sigma^2 | data]``
    (defined at every N, unlike the posterior mean ``bn / (an - 1)``). ``posterior_`` keeps per node
    ``(Ln, mun, an, bn)``.
    """

    name = "bayes"
    tags = Tags(variables="gaussian", reference_for="KL (log loss) under NIG(mean, precision, a, b) nodes",
                optimal_under="nig")

    def __init__(self, mean: float = 0.0, precision: float = 1.0, a: float = 3.0, b: float = 2.0):
        NIGPrior(mean, precision, a, b)  # validates (one-line errors)
        if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
            raise BNError(f"{self.name}: mean must be a finite number, got {mean!r}")
        self.mean, self.precision, self.a, self.b = float(mean), float(precision), float(a), float(b)

    def optimal_prior(self):
        return {"kind": "nig", "params": {"mean": self.mean, "precision": self.precision, "a": self.a, "b": self.b}}

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        B, N, _ = contexts.shape
        ones = torch.ones(B, N, 1, dtype=contexts.dtype, device=contexts.device)
        self.posterior_, self.network_, self._chols = [], [], []
        for m in range(graph.n_nodes):
            X = torch.cat([ones, contexts[..., list(graph.parents[m])]], -1)  # (B, N, k + 1)
            y = contexts[..., m]
            eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
            Ln = self.precision * eye + X.transpose(-1, -2) @ X
            chol = torch.linalg.cholesky(Ln)
            rhs = self.precision * self.mean + (X.transpose(-1, -2) @ y[..., None])[..., 0]
            mun = torch.cholesky_solve(rhs[..., None], chol)[..., 0]
            resid = y - (X @ mun[..., None])[..., 0]
            an = torch.full((B,), self.a + N / 2, dtype=X.dtype, device=X.device)
            bn = self.b + 0.5 * ((resid * resid).sum(-1) + self.precision * ((mun - self.mean) ** 2).sum(-1))
            self.posterior_.append((Ln, mun, an, bn))
            self._chols.append(chol)  # Ln = chol chol': the predictive's x' Ln^-1 x
            self.network_.append(torch.cat([mun, torch.sqrt(bn / an)[:, None]], -1))
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        out = []
        for m in nodes:
            Ln, mun, an, bn = self.posterior_[m]
            B, Q, _ = queries.shape
            x = torch.cat([torch.ones(B, Q, 1, dtype=queries.dtype, device=queries.device),
                           queries[..., list(self.graph_.parents[m])]], -1)  # (B, Q, k + 1)
            z = torch.linalg.solve_triangular(self._chols[m], x.transpose(-1, -2), upper=False)  # L^-1 x'
            spread = (z * z).sum(-2)  # x' Ln^-1 x, (B, Q)
            loc = (x * mun[:, None, :]).sum(-1)
            scale = torch.sqrt((bn / an)[:, None] * (1 + spread))
            out.append(student_t((2 * an)[:, None].expand_as(loc), loc, scale))
        return out
