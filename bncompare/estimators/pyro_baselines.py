"""Pyro baselines: the Bayesian posterior mean of the CPTs, three ways.

All assume every CPT row ~ Dirichlet(alpha) a priori and report the
posterior-mean CPTs.

- ``PyroConjugate(alpha)``: closed form. The posterior of a row is
  Dirichlet(alpha + counts); we build that distribution and take its mean.
  Fast and vectorized over contexts (equals ``DirichletPosterior(alpha)``).
- ``PyroNUTS(alpha, ...)``: real MCMC on a Pyro model of the rows.
- ``PyroSVI(alpha, ...)``: real variational inference on the same model.
  ``guide="diag_normal"`` (AutoDiagonalNormal) approximates the posterior and
  we average CPTs drawn from it; ``guide="delta"`` (AutoDelta) is the MAP.

One inference run serves a whole group of contexts (:func:`contexts_model`):
the CPTs of every context sit in a ``pyro.plate("contexts")``, and since the
contexts share nothing, the joint posterior factorizes into one posterior per
context; a single NUTS chain (or one SVI run) samples all of them at once,
instead of one run per context. ``plate_size`` contexts share a run (1 = one
run per context, as a user of Pyro would write it for a single data set).

Reproducibility: a group's run is seeded by ``seed`` and the group's counts,
not by its position, so a context gets the same result whatever batch it is
fitted in, as long as its group of ``plate_size`` contexts is the same (the
study's batches are whole blocks of 32 episodes, so the default
``plate_size=32`` makes the numbers independent of ``batch_size``), and the
order of rows in a context changes nothing (the model sees counts). They use
torch's global RNG inside a forked RNG state and clear Pyro's global
parameter store per run.
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bncompare.errors import BNError
from bncompare.estimators.base import TableEstimator, Tags
from bncompare.estimators.counting import count_tables
from bncompare.networks.pyro_model import cpt_site
from bncompare.runtime import seeded, single_thread


def _check_alpha(alpha) -> float:
    if not alpha > 0:
        raise BNError(f"Dirichlet alpha must be > 0, got {alpha}")
    return float(alpha)


def group_seed(seed: int, counts: list[torch.Tensor]) -> int:
    """A seed that depends only on ``seed`` and the group's counts (not on its position in a batch)."""
    h = hashlib.sha256()
    for n in counts:
        h.update(np.ascontiguousarray(n.cpu().numpy()).tobytes())
    return int(np.random.SeedSequence([int(seed), int.from_bytes(h.digest()[:8], "little")]).generate_state(1)[0])


def contexts_model(graph, alpha: float, counts: list[torch.Tensor]) -> None:
    """B independent networks, each CPT row ~ Dirichlet(alpha), each observed through its own context.

    ``counts[m]`` is (B, n_configs, d): how often each (parent configuration,
    value) occurs in each context. The likelihood of a context's rows under
    CPTs ``theta`` is ``prod_m prod_{c,v} theta[m, c, v] ** n[m, c, v]`` (the
    rows are exchangeable), so the factor ``sum n log theta`` is exactly the
    log-likelihood :func:`bncompare.networks.pyro_model.bn_model` gives the
    same rows, and the posterior is the same.
    """
    B = counts[0].shape[0]
    with pyro.plate("contexts", B):
        for m, name in enumerate(graph.names):
            q, d = graph.n_configs[m], graph.cards[m]
            conc = torch.full((B, q, d), float(alpha), dtype=torch.float64, device=counts[m].device)
            table = pyro.sample(cpt_site(name), dist.Dirichlet(conc).to_event(1))  # batch (B,), event (q, d)
            pyro.factor(f"rows_{name}", torch.xlogy(counts[m], table).sum((-2, -1)))


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
    """One inference run per group of ``plate_size`` contexts; subclasses return the group's posterior-mean tables."""

    tags = Tags(family="library")

    def _check_settings(self):
        self.alpha = _check_alpha(self.alpha)
        if isinstance(self.plate_size, bool) or not isinstance(self.plate_size, int) or self.plate_size < 1:
            raise BNError(f"{self.name}: plate_size must be an integer >= 1, got {self.plate_size!r}")

    def _fit_group(self, graph, counts: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        counts = count_tables(graph, contexts)
        tables = [[] for _ in graph.names]
        for start in range(0, contexts.shape[0], self.plate_size):
            group = [n[start : start + self.plate_size] for n in counts]
            with seeded(group_seed(self.seed, group)), single_thread():
                pyro.clear_param_store()
                means = self._fit_group(graph, group)
            for m, t in enumerate(means):
                tables[m].append(t.detach().to(torch.float64))
        self.cpts_ = [torch.cat(t) for t in tables]
        return self


class PyroNUTS(_PyroInference):
    """Posterior-mean CPTs from NUTS on :func:`contexts_model` (one chain per group of contexts).

    ``max_tree_depth`` caps the leapfrog steps per draw at 2**depth (10, Pyro's default; on a plate of 32
    tree-7 contexts, 5 halves the time at the same Monte Carlo error, measured). Also keeps, per node, the
    posterior standard deviation ``posterior_sd_`` and
    the effective sample size ``n_eff_`` of every cell (B, n_configs, card), so
    a caller can tell how far the mean may be from the exact one
    (Monte Carlo standard error = sd / sqrt(n_eff)).
    """

    name = "pyro_nuts"

    def __init__(self, alpha: float = 1.0, num_samples: int = 200, warmup_steps: int = 200, seed: int = 0,
                 plate_size: int = 32, max_tree_depth: int = 10):
        self.alpha = alpha
        self.num_samples = int(num_samples)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self.plate_size = plate_size
        self.max_tree_depth = int(max_tree_depth)
        self._check_settings()
        if self.num_samples < 2 or self.warmup_steps < 0 or self.max_tree_depth < 1:
            raise BNError(f"NUTS needs num_samples >= 2, warmup_steps >= 0 and max_tree_depth >= 1, got "
                          f"{num_samples}, {warmup_steps}, {max_tree_depth}")

    def fit(self, graph, contexts):
        self._sd, self._n_eff = [[] for _ in graph.names], [[] for _ in graph.names]
        super().fit(graph, contexts)
        self.posterior_sd_ = [torch.cat(s) for s in self._sd]
        self.n_eff_ = [torch.cat(e) for e in self._n_eff]
        del self._sd, self._n_eff
        return self

    def _fit_group(self, graph, counts):
        from pyro.infer import MCMC, NUTS
        from pyro.ops.stats import effective_sample_size

        # jit: the model is traced once per run, which pays off from a few contexts per plate on
        kernel = NUTS(contexts_model, jit_compile=True, ignore_jit_warnings=True, max_tree_depth=self.max_tree_depth)
        mcmc = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.warmup_steps, disable_progbar=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated", DeprecationWarning)
            mcmc.run(graph, self.alpha, counts)
        draws = mcmc.get_samples()
        tables = [draws[cpt_site(name)] for name in graph.names]  # each (num_samples, B, n_configs, card)
        for m, t in enumerate(tables):
            self._sd[m].append(t.std(0))
            self._n_eff[m].append(effective_sample_size(t[None], chain_dim=0, sample_dim=1))
        return [t.mean(0) for t in tables]


class PyroSVI(_PyroInference):
    """Posterior-mean CPTs from SVI with an autoguide on :func:`contexts_model` (one run per group of contexts).

    ``guide="diag_normal"``: mean of ``num_draws`` CPT sets drawn from the fitted
    guide. ``guide="delta"``: the MAP point (not a posterior mean; useful as the
    "point estimate by optimization" baseline). The guide factorizes over
    contexts like the posterior, and the ELBO is a sum over them, so each
    context's part of the optimization is its own.
    """

    name = "pyro_svi"
    GUIDES = ("diag_normal", "delta")

    def __init__(self, alpha: float = 1.0, steps: int = 500, lr: float = 0.1, guide: str = "diag_normal",
                 num_draws: int = 500, seed: int = 0, plate_size: int = 32):
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
        self.plate_size = plate_size
        self._check_settings()

    def _fit_group(self, graph, counts):
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal
        from pyro.optim import ClippedAdam

        guide = (AutoDiagonalNormal if self.guide == "diag_normal" else AutoDelta)(contexts_model)
        # decay the step size to 1% of lr over the run: the last iterates stop jittering
        optim = ClippedAdam({"lr": self.lr, "lrd": 0.01 ** (1 / self.steps)})
        svi = SVI(contexts_model, guide, optim, Trace_ELBO())
        for _ in range(self.steps):
            svi.step(graph, self.alpha, counts)
        sites = [cpt_site(name) for name in graph.names]
        with torch.no_grad():
            if self.guide == "delta":
                point = guide.median(graph, self.alpha, counts)
                return [point[s] for s in sites]
            # the mean of a transformed Gaussian is not the transform of its mean: average draws
            draws = [guide(graph, self.alpha, counts) for _ in range(self.num_draws)]
            return [torch.stack([d[s] for d in draws]).mean(0) for s in sites]
