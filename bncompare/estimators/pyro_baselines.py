"""Pyro baselines: the Bayesian posterior mean of the CPTs, three ways.

All assume every CPT row ~ Dirichlet(alpha) a priori (the model in
``bncompare.networks.pyro_model``) and report the posterior-mean CPTs.

- ``PyroConjugate(alpha)``: closed form. The posterior of a row is
  Dirichlet(alpha + counts); we build that distribution and take its mean.
  Fast and vectorized over contexts (equals ``DirichletPosterior(alpha)``).
- ``PyroNUTS(alpha, ...)``: real MCMC on the Pyro model, one run per context.
- ``PyroSVI(alpha, ...)``: real variational inference, one run per context.
  ``guide="diag_normal"`` (AutoDiagonalNormal) approximates the posterior and
  we average CPTs drawn from it; ``guide="delta"`` (AutoDelta) is the MAP.

NUTS and SVI are slow (seconds per context): studies run them on a subset of
contexts. Each context gets its own seed derived from (seed, context index), so
results do not depend on how contexts are batched. They use torch's global RNG
inside a forked RNG state and clear Pyro's global parameter store per run.
"""
from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bncompare.errors import BNError
from bncompare.estimators.base import TableEstimator, Tags
from bncompare.estimators.counting import count_tables
from bncompare.networks.pyro_model import bn_model, cpt_site
from bncompare.runtime import seeded, single_thread


def _check_alpha(alpha) -> float:
    if not alpha > 0:
        raise BNError(f"Dirichlet alpha must be > 0, got {alpha}")
    return float(alpha)


def context_seed(seed: int, b: int) -> int:
    """A seed for context ``b`` that depends only on (seed, b)."""
    return int(np.random.SeedSequence([int(seed), int(b)]).generate_state(1)[0])


class PyroConjugate(TableEstimator):
    name = "pyro_conjugate"
    tags = Tags(family="library")

    def __init__(self, alpha: float = 1.0):
        self.alpha = _check_alpha(alpha)

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        # batch shape (B, n_configs): one Dirichlet posterior per CPT row
        self.cpts_ = [dist.Dirichlet(n + self.alpha).mean for n in count_tables(graph, contexts)]
        return self


class _PyroInference(TableEstimator):
    """One inference run per context; subclasses return the posterior-mean tables of one context."""

    tags = Tags(family="library")

    def _check_settings(self):
        self.alpha = _check_alpha(self.alpha)

    def _fit_one(self, graph, data: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        tables = [[] for _ in graph.names]
        for b in range(contexts.shape[0]):
            with seeded(context_seed(self.seed, b)), single_thread():
                pyro.clear_param_store()
                means = self._fit_one(graph, contexts[b])
            for m, t in enumerate(means):
                tables[m].append(t.detach().to(torch.float64))
        self.cpts_ = [torch.stack(t) for t in tables]
        return self


class PyroNUTS(_PyroInference):
    """Posterior-mean CPTs from NUTS on the Pyro model (one chain per context).

    Also keeps, per node, the posterior standard deviation ``posterior_sd_`` and
    the effective sample size ``n_eff_`` of every cell (B, n_configs, card), so
    a caller can tell how far the mean may be from the exact one
    (Monte Carlo standard error = sd / sqrt(n_eff)).
    """

    name = "pyro_nuts"

    def __init__(self, alpha: float = 1.0, num_samples: int = 200, warmup_steps: int = 200, seed: int = 0):
        self.alpha = alpha
        self.num_samples = int(num_samples)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self._check_settings()
        if self.num_samples < 2 or self.warmup_steps < 0:
            raise BNError(f"NUTS needs num_samples >= 2 and warmup_steps >= 0, got {num_samples}, {warmup_steps}")

    def fit(self, graph, contexts):
        self._sd, self._n_eff = [], []
        super().fit(graph, contexts)
        M = graph.n_nodes
        self.posterior_sd_ = [torch.stack([s[m] for s in self._sd]) for m in range(M)]
        self.n_eff_ = [torch.stack([e[m] for e in self._n_eff]) for m in range(M)]
        del self._sd, self._n_eff
        return self

    def _fit_one(self, graph, data):
        from pyro.infer import MCMC, NUTS
        from pyro.ops.stats import effective_sample_size

        mcmc = MCMC(NUTS(bn_model), num_samples=self.num_samples, warmup_steps=self.warmup_steps, disable_progbar=True)
        mcmc.run(graph, alpha=self.alpha, data=data)
        draws = mcmc.get_samples()
        tables = [draws[cpt_site(name)] for name in graph.names]  # each (num_samples, n_configs, card)
        self._sd.append([t.std(0) for t in tables])
        self._n_eff.append([effective_sample_size(t[None], chain_dim=0, sample_dim=1) for t in tables])
        return [t.mean(0) for t in tables]


class PyroSVI(_PyroInference):
    """Posterior-mean CPTs from SVI with an autoguide on the Pyro model (one run per context).

    ``guide="diag_normal"``: mean of ``num_draws`` CPT sets drawn from the fitted
    guide. ``guide="delta"``: the MAP point (not a posterior mean; useful as the
    "point estimate by optimization" baseline).
    """

    name = "pyro_svi"
    GUIDES = ("diag_normal", "delta")

    def __init__(self, alpha: float = 1.0, steps: int = 500, lr: float = 0.1, guide: str = "diag_normal",
                 num_draws: int = 500, seed: int = 0):
        if guide not in self.GUIDES:
            raise BNError(f"unknown SVI guide {guide!r}; choose one of {list(self.GUIDES)}")
        if int(steps) < 1 or not lr > 0 or int(num_draws) < 1:
            raise BNError(f"SVI needs steps >= 1, lr > 0 and num_draws >= 1, got {steps}, {lr}, {num_draws}")
        self.alpha = alpha
        self.steps = int(steps)
        self.lr = float(lr)
        self.guide = guide
        self.num_draws = int(num_draws)
        self.seed = int(seed)
        self._check_settings()

    def _fit_one(self, graph, data):
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal
        from pyro.optim import ClippedAdam

        guide = (AutoDiagonalNormal if self.guide == "diag_normal" else AutoDelta)(bn_model)
        # decay the step size to 1% of lr over the run: the last iterates stop jittering
        optim = ClippedAdam({"lr": self.lr, "lrd": 0.01 ** (1 / self.steps)})
        svi = SVI(bn_model, guide, optim, Trace_ELBO())
        for _ in range(self.steps):
            svi.step(graph, alpha=self.alpha, data=data)
        sites = [cpt_site(name) for name in graph.names]
        with torch.no_grad():
            if self.guide == "delta":
                point = guide.median(graph, alpha=self.alpha, data=data)
                return [point[s] for s in sites]
            # the mean of a transformed Gaussian is not the transform of its mean: average draws
            draws = [guide(graph, alpha=self.alpha, data=data) for _ in range(self.num_draws)]
            return [torch.stack([d[s] for d in draws]).mean(0) for s in sites]
