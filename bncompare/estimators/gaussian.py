"""Estimators of a linear-Gaussian network from in-context rows, batched over the B contexts of a fit.

Each node ``m`` is a linear regression of ``x_m`` on its parents (or, for the graph-agnostic
naive estimator, on every earlier node), solved for all contexts at once with batched
``(B, k, k)`` linear algebra; no loop over contexts. The rows are read once per fit, into each
context's means and centred cross products (:func:`row_stats`); every node's fit reads its blocks.

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
from dataclasses import dataclass

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import GaussianEstimator, Tags
from bncompare.networks.gaussian import normal, pack, student_t, unpack
from bncompare.networks.priors import NIGPrior

EMPTY_SIGMA = 1.0  # the sigma of a node fitted on no rows (the standard Normal)


# ----- the statistics of a context, and least squares on them ----------------------------------

@dataclass(frozen=True)
class RowStats:
    """What every estimator here needs from each context's rows: their number, means and centred cross products.

    ``means`` (B, M); ``cross`` (B, M, C) = sum over rows of (x - mean)(x - mean)' restricted to the
    ``columns`` some node regresses on (a node's parents: C is often far below M); ``squares`` (B, M) the
    diagonal, sum of (x_m - mean_m)^2. Every node's regression reads its blocks: the rows are read once
    for all nodes, and centring keeps the sums accurate when the means are large against the spread.
    """

    n: int
    means: torch.Tensor
    cross: torch.Tensor
    squares: torch.Tensor
    columns: tuple[int, ...]

    def block(self, rows: list[int], cols: list[int]) -> torch.Tensor:
        """The centred Gram matrix's (rows, cols) block, (B, len(rows), len(cols)); ``cols`` among ``columns``."""
        at = [self.columns.index(c) for c in cols]
        return self.cross[:, rows][:, :, at]


CHUNK_ELEMENTS = 2**16  # centre a cache-sized chunk of rows at a time: a fresh centred copy of 100k x 46 rows
# took longer (page faults, measured) than every regression of the fit together


def row_stats(contexts: torch.Tensor, columns=None) -> RowStats:
    """:class:`RowStats` of contexts (B, N, M) against ``columns`` (default: all); with no rows, all zeros."""
    B, N, M = contexts.shape
    columns = tuple(range(M)) if columns is None else tuple(sorted(set(int(c) for c in columns)))
    means = contexts.sum(1) / max(N, 1)
    cross = torch.zeros(B, M, len(columns), dtype=contexts.dtype, device=contexts.device)
    squares = torch.zeros(B, M, dtype=contexts.dtype, device=contexts.device)
    step = max(1, CHUNK_ELEMENTS // max(B * M, 1))
    for start in range(0, N, step):
        xc = contexts[:, start : start + step] - means[:, None, :]
        cross.baddbmm_(xc.transpose(1, 2), xc[..., list(columns)])
        squares += (xc * xc).sum(1)
    return RowStats(N, means, cross, squares, columns)


def regressors(graph) -> list[int]:
    """Every node some node is regressed on (its parents)."""
    return sorted({p for pa in graph.parents for p in pa})


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


def quadratic(gram: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """w' gram w for (B, k, k) and (B, k): (B,)."""
    return (w * (gram @ w[..., None])[..., 0]).sum(-1)


def least_squares_fit(stats: RowStats, target: int, inputs: list[int], penalty: float = 0.0,
                      rcond: float = 1e-12, min_sigma: float = 1e-6) -> torch.Tensor:
    """Regress column ``target`` on columns ``inputs`` in every context: one node's (B, k + 2) parameters.

    ``penalty = 0``: least squares (minimum-norm below full rank); ``penalty > 0``: ridge with an
    unpenalized intercept. ``sigma^2 = RSS / N`` floored at ``min_sigma``; ``N = 0`` gives the standard
    Normal.
    """
    gram, rhs = stats.block(inputs, inputs), stats.block([target], inputs)[:, 0]
    k = len(inputs)
    if penalty > 0 and k:
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        w = torch.linalg.solve(gram + penalty * eye, rhs[..., None])[..., 0]
    else:
        w = min_norm_solve(gram, rhs, rcond)
    intercept = stats.means[:, target] - (stats.means[:, inputs] * w).sum(-1)
    # |yc - Xc w|^2 from the Gram blocks; rounding can leave a tiny negative for an exact fit
    rss = (stats.squares[:, target] - 2 * (w * rhs).sum(-1) + quadratic(gram, w)).clamp_min(0)
    if stats.n == 0:
        sigma = torch.full_like(rss, EMPTY_SIGMA)
    else:
        sigma = torch.sqrt(rss / stats.n).clamp_min(min_sigma)
    return pack(intercept, w, sigma)


def linear_prediction(params: torch.Tensor, queries: torch.Tensor, inputs: list[int]) -> torch.Tensor:
    """The Normal ``N(b + x_inputs . w, sigma)`` of one node's (B, k + 2) parameters at each query: (B, Q, 3)."""
    b, w, sigma = unpack(params)
    loc = b[:, None] + (queries[..., inputs] * w[:, None, :]).sum(-1)
    return normal(loc, sigma[:, None].expand_as(loc).clone())


def positive_setting(name: str, value, owner: str) -> float:
    """A setting that must be a finite number > 0, checked (one-line error naming it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise BNError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class _RegressionEstimator(GaussianEstimator):
    """A least-squares-family estimator: one regression per node; predictions are Normals.

    Its sigma floor ``min_sigma`` stands for a zero residual (the fit passes through every row), so it is
    declared as such (``floors_are_zeros``, ``zero_below_``): the metrics score that answer as the point
    mass it is.
    """

    tags = Tags(variables="gaussian", floors_are_zeros=True)

    def _inputs(self, m: int) -> list[int]:
        return list(self.graph_.parents[m])

    def _fit_node(self, stats: RowStats, m: int) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)  # sets graph_, which _inputs reads
        stats = row_stats(contexts, {c for m in range(graph.n_nodes) for c in self._inputs(m)})
        self.params_ = [self._fit_node(stats, m) for m in range(graph.n_nodes)]
        self.network_ = self.params_
        self.zero_below_ = self.min_sigma
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
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)
        self.rcond = positive_setting("rcond", rcond, self.name)

    def _fit_node(self, stats, m):
        return least_squares_fit(stats, m, self._inputs(m), 0.0, self.rcond, self.min_sigma)


class Ridge(_RegressionEstimator):
    """Ridge regression of every node on its parents: ``penalty * |w|^2``, the intercept unpenalized.

    ``sigma^2`` is the ridge fit's ``RSS / N`` floored at ``min_sigma``; predictions are Normals.
    ``network_`` is the fitted parameter batch (G = B).
    """

    name = "ridge"
    intercept_penalized = False

    def __init__(self, penalty: float = 1.0, min_sigma: float = 1e-6):
        self.penalty = positive_setting("penalty", penalty, self.name)
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)

    def _fit_node(self, stats, m):
        return least_squares_fit(stats, m, self._inputs(m), self.penalty, min_sigma=self.min_sigma)


class NaiveLeastSquares(_RegressionEstimator):
    """Least squares of ``x_m`` on ``(1, x_0 .. x_{m-1})``, the whole prefix: it never reads the parents.

    Same conventions as :class:`LeastSquares` (MLE divisor, minimum norm, ``min_sigma``). Its regression
    is not a network on the graph's parents, so ``network_`` is None; ``params_[m]`` holds node ``m``'s
    (B, m + 2) parameters on the prefix (intercept, one weight per earlier node, sigma).
    """

    name = "naive"
    tags = Tags(variables="gaussian", graph_agnostic=True, floors_are_zeros=True)
    minimum_norm = True

    def __init__(self, min_sigma: float = 1e-6, rcond: float = 1e-12):
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)
        self.rcond = positive_setting("rcond", rcond, self.name)

    def _inputs(self, m):
        return list(range(m))

    def _fit_node(self, stats, m):
        return least_squares_fit(stats, m, self._inputs(m), 0.0, self.rcond, self.min_sigma)

    def fit(self, graph, contexts):
        super().fit(graph, contexts)
        self.network_ = None
        return self


# ----- the conjugate posterior ----------------------------------------------------------------

def nig_update(stats: RowStats, target: int, inputs: list[int], mean: float, precision: float, a: float,
               b: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The NIG posterior ``(Ln (B, k+1, k+1), mun (B, k+1), an (B,), bn (B,))`` of one node's regression on
    ``(1, x_inputs)``, from the rows' statistics (formulas in :class:`NIGPosterior`).

    The uncentred ``X'X`` and ``X'y`` are rebuilt from means and centred blocks; the residual
    ``|y - X mun|^2`` is written in centred terms, ``|yc - Xc w|^2 + N (ybar - b - xbar . w)^2``,
    since the centred cross terms vanish.
    """
    n, k = stats.n, len(inputs)
    mx, my = stats.means[:, inputs], stats.means[:, target]
    cxx, cxy = stats.block(inputs, inputs), stats.block([target], inputs)[:, 0]
    B, dtype, device = mx.shape[0], mx.dtype, mx.device
    xtx = torch.zeros(B, k + 1, k + 1, dtype=dtype, device=device)
    xtx[:, 0, 0] = n
    xtx[:, 0, 1:] = xtx[:, 1:, 0] = n * mx
    xtx[:, 1:, 1:] = cxx + n * mx[:, :, None] * mx[:, None, :]
    xty = torch.cat([(n * my)[:, None], cxy + n * mx * my[:, None]], -1)
    Ln = precision * torch.eye(k + 1, dtype=dtype, device=device) + xtx
    mun = torch.linalg.solve(Ln, (precision * mean + xty)[..., None])[..., 0]
    icpt, w = mun[:, 0], mun[:, 1:]
    rss = (stats.squares[:, target] - 2 * (w * cxy).sum(-1) + quadratic(cxx, w)).clamp_min(0)
    rss = rss + n * (my - icpt - (mx * w).sum(-1)) ** 2
    an = torch.full((B,), a + n / 2, dtype=dtype, device=device)
    bn = b + 0.5 * (rss + precision * ((mun - mean) ** 2).sum(-1))
    return Ln, mun, an, bn


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
        stats = row_stats(self._start_fit(graph, contexts), regressors(graph))
        self.posterior_, self.network_, self._chols = [], [], []
        for m in range(graph.n_nodes):
            post = nig_update(stats, m, list(graph.parents[m]), self.mean, self.precision, self.a, self.b)
            Ln, mun, an, bn = post
            self.posterior_.append(post)
            self._chols.append(torch.linalg.cholesky(Ln))  # Ln = chol chol': the predictive's x' Ln^-1 x
            self.network_.append(torch.cat([mun, torch.sqrt(bn / an)[:, None]], -1))
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        queries = queries.to(self.network_[0].device)
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
