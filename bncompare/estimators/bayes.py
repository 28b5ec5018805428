"""Exact Bayes estimators under the study's CPT prior: the reference curves, each named for its loss.

For a CPT row with posterior P(theta | context):

- the posterior MEAN minimizes the expected KL(theta || estimate) (log loss,
  cross-entropy): it is the reference for KL;
- for a binary row, the posterior MEDIAN of theta_0 minimizes the expected
  TV = ``|theta_0 - estimate_0|``: it is the reference for TV. (For rows with more
  states the TV optimum has no closed form: :class:`DirichletMedian` answers
  the posterior mean there, so a TV excess over it can be negative on such
  nodes, and the report says so.)

Priors:

- ``Dirichlet(alpha)`` rows: the mean is ``DirichletPosterior`` (counting.py);
  the binary median is the median of Beta(n_0 + alpha, n_1 + alpha).
- the paper's ``U[low, high]`` rows (binary: theta_0 ~ U[low, high]): the
  posterior is Beta(n_0 + 1, n_1 + 1) truncated to [low, high]. Its mean and
  median come from regularized incomplete beta functions (scipy), each tail
  taken from the side where it is small so that nothing cancels at large N.
  Rows with more states are refused: under that prior the posterior has no
  closed form.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import special

from bncompare.errors import BNError
from bncompare.estimators.base import TableEstimator, Tags
from bncompare.estimators.counting import count_tables, positive_alpha


def _binary(graph, what: str) -> None:
    wide = [graph.names[m] for m, d in enumerate(graph.cards) if d != 2]
    if wide:
        raise BNError(f"{what} is exact for binary nodes only; {wide[:5]} have more states. In a study, use the "
                      "Dirichlet mean as a (non-optimal) reference: reference=bayes tv_reference=null "
                      "~estimators.bayes_exact ~estimators.bayes_exact_median")


def interval_mass(a, b, lo: float, hi: float) -> np.ndarray:
    """P(lo < X < hi) for X ~ Beta(a, b), accurate also when both ends lie in one tail."""
    below_lo, below_hi = special.betainc(a, b, lo), special.betainc(a, b, hi)
    above_lo, above_hi = special.betaincc(a, b, lo), special.betaincc(a, b, hi)
    # mass mostly above lo: the upper tails are the small, accurate numbers
    return np.where(below_lo > 0.5, above_lo - above_hi, below_hi - below_lo)


def truncated_beta_mean(a, b, lo: float, hi: float) -> np.ndarray:
    """E[X | lo < X < hi] for X ~ Beta(a, b): a/(a+b) * P_{Beta(a+1,b)}(lo, hi) / P_{Beta(a,b)}(lo, hi)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num, den = interval_mass(a + 1, b, lo, hi), interval_mass(a, b, lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = a / (a + b) * num / den
    # both masses underflow only far out in a tail: the truncated law sits on the nearer end
    fallback = np.clip(a / (a + b), lo, hi)
    return np.clip(np.where((den > 0) & np.isfinite(mean), mean, fallback), lo, hi)


def truncated_beta_median(a, b, lo: float, hi: float) -> np.ndarray:
    """The median of Beta(a, b) truncated to [lo, hi]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    below = (special.betainc(a, b, lo) + special.betainc(a, b, hi)) / 2
    above = (special.betaincc(a, b, lo) + special.betaincc(a, b, hi)) / 2
    x = np.where(below > 0.5, special.betainccinv(a, b, above), special.betaincinv(a, b, below))
    ok = interval_mass(a, b, lo, hi) > 0
    return np.clip(np.where(ok & np.isfinite(x), x, np.clip(a / (a + b), lo, hi)), lo, hi)


def _rows(theta0: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(theta0, np.float64))
    return torch.stack([t, 1 - t], -1)


class DirichletMedian(TableEstimator):
    """Posterior median of each binary row under Dirichlet(alpha) rows: the estimator that minimizes expected TV.

    Rows with more than two states get the posterior mean (no closed-form TV optimum there).
    """

    name = "dirichlet_median"
    tags = Tags(reference_for="TV (binary rows) under Dirichlet(alpha) rows", optimal_under="dirichlet")

    def __init__(self, alpha: float = 1.0):
        self.alpha = positive_alpha(alpha)

    def optimal_prior(self):
        return {"kind": "dirichlet", "params": {"alpha": self.alpha}}

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        self.cpts_ = []
        for m, n in enumerate(count_tables(graph, contexts)):
            if graph.cards[m] == 2:
                a, b = (n[..., 0] + self.alpha).cpu().numpy(), (n[..., 1] + self.alpha).cpu().numpy()
                self.cpts_.append(_rows(special.betaincinv(a, b, 0.5)))
            else:
                self.cpts_.append((n + self.alpha) / (n.sum(-1, keepdim=True) + self.alpha * graph.cards[m]))
        return self


class _UniformRowPosterior(TableEstimator):
    """Binary rows with theta_0 ~ U[low, high] a priori: the posterior is a truncated Beta(n_0 + 1, n_1 + 1)."""

    def __init__(self, low: float = 0.1, high: float = 0.9):
        if not 0 <= low < high <= 1:
            raise BNError(f"uniform-range prior needs 0 <= low < high <= 1, got [{low}, {high}]")
        self.low, self.high = float(low), float(high)

    def statistic(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def optimal_prior(self):
        return {"kind": "uniform", "params": {"low": self.low, "high": self.high}}

    def prepare(self, graph, prior, seed: int = 0):
        """Refuse a graph with non-binary nodes before a study spends time on anything else."""
        _binary(graph, f"{self.name} (posterior under U[{self.low:g}, {self.high:g}] rows)")
        return self

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        _binary(graph, f"{self.name} (posterior under U[{self.low:g}, {self.high:g}] rows)")
        self.cpts_ = [_rows(self.statistic((n[..., 0] + 1).cpu().numpy(), (n[..., 1] + 1).cpu().numpy()))
                      for n in count_tables(graph, contexts)]
        return self


class UniformPosteriorMean(_UniformRowPosterior):
    """Exact posterior mean under U[low, high] binary rows: the estimator that minimizes expected KL (log loss)."""

    name = "uniform_mean"
    tags = Tags(reference_for="KL (log loss) under U[low, high] binary rows", optimal_under="uniform")

    def statistic(self, a, b):
        return truncated_beta_mean(a, b, self.low, self.high)


class UniformPosteriorMedian(_UniformRowPosterior):
    """Exact posterior median under U[low, high] binary rows: the estimator that minimizes expected TV."""

    name = "uniform_median"
    tags = Tags(reference_for="TV under U[low, high] binary rows", optimal_under="uniform")

    def statistic(self, a, b):
        return truncated_beta_median(a, b, self.low, self.high)
