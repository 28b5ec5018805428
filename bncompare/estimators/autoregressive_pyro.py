"""Pyro NUTS on the transition W of an autoregressive process: the Monte Carlo mirror of
:class:`~bncompare.estimators.autoregressive.ARRidge` (its closed form, checked by sampling).

The model (:func:`ar_contexts_model`): for each context, the entries of W are i.i.d. ``N(0, prior_var)``
and each pair ``s_{u+1} ~ N(W s_u, sigma^2 I)``, u < t (the likelihood of the sequence given s_1; the start
state does not involve W). As in :mod:`bncompare.estimators.gaussian_libraries`, one NUTS chain covers a
plate of ``plate_size`` contexts: they share nothing, so the joint posterior factorizes into one per
context. A group's run is seeded by ``seed`` and the group's states (not its position in the batch), on
one thread with torch's global RNG forked.

The prediction: the Monte Carlo posterior predictive of ``s_{t+1, m}`` is the mixture ``(1/S) sum_s
N((W_s s_t)_m, sigma^2)``; ``predict`` reports the Normal with its mean and variance (a moment match,
``df = inf``): loc the mean of ``W_s s_t`` and scale^2 their variance plus sigma^2. ``draws_`` (S, B, d, d)
keeps the draws of W; ``transition_`` is their mean.
"""
from __future__ import annotations

import math
import warnings

import pyro
import pyro.distributions as dist
import torch

from bncompare.errors import BNError
from bncompare.estimators.autoregressive import nonnegative_setting, normal_rows, pairs
from bncompare.estimators.base import AREstimator, Tags
from bncompare.estimators.gaussian import positive_setting
from bncompare.estimators.gaussian_libraries import rows_seed
from bncompare.runtime import seeded, single_thread


def ar_contexts_model(x: torch.Tensor, y: torch.Tensor, sigma: float, prior_var: float) -> None:
    """B independent transitions W (B, d, d) with N(0, prior_var) entries, each observed through its context's
    pairs: inputs ``x`` and targets ``y``, (B, t-1, d) each, ``y_u ~ N(W x_u, sigma^2 I)``."""
    B, _, d = x.shape
    with pyro.plate("contexts", B):
        zero = torch.zeros(B, d, d, dtype=x.dtype, device=x.device)
        W = pyro.sample("W", dist.Normal(zero, math.sqrt(prior_var)).to_event(2))
        pyro.sample("pairs", dist.Normal(torch.einsum("bij,buj->bui", W, x), sigma).to_event(2), obs=y)


class ARPyroNUTS(AREstimator):
    """Posterior draws of W by NUTS on :func:`ar_contexts_model`, one chain per group of ``plate_size`` contexts.

    Settings: the known noise sd ``sigma`` (> 0: with sigma = 0 the pairs pin W down exactly and the
    posterior is degenerate, which NUTS cannot sample), ``prior_var`` (None means 1/d, the ``gaussian``
    law), and as :class:`~bncompare.estimators.gaussian_libraries.PyroGaussianNUTS`: ``num_samples``,
    ``warmup_steps``, ``seed``, ``max_tree_depth`` (leapfrog steps per draw at most 2**depth), ``plate_size``.
    """

    name = "ar_pyro_nuts"
    tags = Tags(family="library", variables="autoregressive")

    def __init__(self, sigma: float = 0.1, prior_var: float | None = None, num_samples: int = 200,
                 warmup_steps: int = 200, seed: int = 0, max_tree_depth: int = 10, plate_size: int = 32):
        sigma = nonnegative_setting("sigma", sigma, self.name)
        if sigma == 0:
            raise BNError(f"{self.name}: NUTS needs noise: with sigma = 0 the posterior of W is degenerate (a point "
                          f"once t > d), which it cannot sample; drop it with ~estimators.{self.name}")
        self.sigma = sigma
        self.prior_var = None if prior_var is None else positive_setting("prior_var", prior_var, self.name)
        self.num_samples = int(num_samples)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self.max_tree_depth = int(max_tree_depth)
        if self.num_samples < 2 or self.warmup_steps < 0 or self.max_tree_depth < 1:
            raise BNError(f"NUTS needs num_samples >= 2, warmup_steps >= 0 and max_tree_depth >= 1, got "
                          f"{num_samples}, {warmup_steps}, {max_tree_depth}")
        if isinstance(plate_size, bool) or not isinstance(plate_size, int) or plate_size < 1:
            raise BNError(f"{self.name}: plate_size must be an integer >= 1, got {plate_size!r}")
        self.plate_size = plate_size

    def _draw_group(self, x, y, prior_var) -> torch.Tensor:
        from pyro.infer import MCMC, NUTS

        kernel = NUTS(ar_contexts_model, jit_compile=True, ignore_jit_warnings=True,
                      max_tree_depth=self.max_tree_depth)
        mcmc = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.warmup_steps, disable_progbar=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated", DeprecationWarning)
            mcmc.run(x, y, self.sigma, prior_var)
        return mcmc.get_samples()["W"]

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        if contexts.shape[1] < 1:
            raise BNError(f"{self.name}: a context is a prefix s_1..s_t with t >= 1 states, got t = 0")
        d = contexts.shape[-1]
        prior_var = 1.0 / d if self.prior_var is None else self.prior_var
        parts = []
        for start in range(0, contexts.shape[0], self.plate_size):
            group = contexts[start : start + self.plate_size]
            x, y, _ = pairs(group)
            with seeded(rows_seed(self.seed, group)), single_thread():
                pyro.clear_param_store()
                parts.append(self._draw_group(x, y, prior_var).detach().to(torch.float64))
        self.draws_ = torch.cat(parts, 1)  # (S, B, d, d)
        self.transition_ = self.draws_.mean(0)
        means = torch.einsum("sbij,bj->sbi", self.draws_, contexts[:, -1])  # W_s s_t
        self.loc_ = means.mean(0)
        self.scale_ = torch.sqrt(((means - self.loc_) ** 2).mean(0) + self.sigma**2)
        return self

    def predict(self, queries, nodes=None):
        """The Normal with the Monte Carlo predictive's mean and variance (a moment match, see the module)."""
        queries, nodes = self._check_queries(queries, nodes)  # their values are never read
        return normal_rows(self.loc_, self.scale_, queries, nodes)
