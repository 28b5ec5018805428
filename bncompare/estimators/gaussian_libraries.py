"""Library estimators of a linear-Gaussian network: pgmpy's fit and Pyro's NUTS and SVI.

- ``PgmpyLinearGaussian`` ("pgmpy_mle"): one pgmpy ``LinearGaussianBayesianNetwork.fit`` per context
  with ``LinearGaussianMLE(std_estimator="mle")`` (least squares through sklearn, std with divisor N):
  the trusted slow mirror of :class:`~bncompare.estimators.gaussian.LeastSquares`.
- ``PyroGaussianNUTS`` / ``PyroGaussianSVI``: Bayesian linear regression of every node on its parents
  under the Normal-inverse-gamma prior, by MCMC or variational inference in Pyro: the Monte Carlo
  mirrors of :class:`~bncompare.estimators.gaussian.NIGPosterior`.

As in :mod:`bncompare.estimators.pyro_baselines`, one inference run covers a plate of ``plate_size``
contexts (:func:`nig_contexts_model`): the contexts share nothing, so the joint posterior factorizes into
one per context and a single chain samples all of them. A group's run is seeded by ``seed`` and the
group's rows (not its position in the batch, not the order of its rows), and runs on one thread with
torch's global RNG forked.

The Pyro prediction. The Monte Carlo posterior predictive of node ``m`` at a query is the mixture
``(1/S) sum_s N(x' beta_s, sigma_s)`` over the S posterior draws; a mixture of Normals is not a
Student-t, so ``predict`` reports the Normal with the mixture's MEAN and VARIANCE (a moment match,
``df = inf``), and :meth:`mixture_log_density` gives the mixture's own log density. The draws stay in
``draws_`` (per node ``{"beta": (S, B, k + 1), "sigma2": (S, B)}``), so a caller can compute Monte Carlo
standard errors. ``network_`` is a plug-in network: the posterior-mean weights and
``sigma^2 = 1 / mean_s(1 / sigma_s^2)``, as :class:`NIGPosterior` (``bn / an``).
"""
from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bncompare.errors import BNError
from bncompare.estimators.base import GaussianEstimator, Tags
from bncompare.estimators.gaussian import EMPTY_SIGMA, linear_prediction, positive_setting, regressors, row_stats
from bncompare.estimators.pgmpy_baselines import quiet_pgmpy
from bncompare.networks.gaussian import normal, pack
from bncompare.networks.priors import NIGPrior
from bncompare.runtime import seeded, single_thread

# ----- pgmpy ----------------------------------------------------------------------------------

class PgmpyLinearGaussian(GaussianEstimator):
    """pgmpy's ``LinearGaussianBayesianNetwork.fit`` with ``LinearGaussianMLE(std_estimator="mle")``, per context.

    A loop over contexts by design (what a pgmpy user runs). pgmpy's CPD lists its evidence in its own
    order: the coefficients are mapped back to the graph's parent order by name. Where pgmpy has no
    answer the conventions of :class:`~bncompare.estimators.gaussian.LeastSquares` apply: no rows gives
    the standard Normal, and sigma is floored at ``min_sigma``.
    """

    name = "pgmpy_mle"
    tags = Tags(family="library", variables="gaussian", floors_are_zeros=True)  # min_sigma: a zero residual

    def __init__(self, min_sigma: float = 1e-6):
        self.min_sigma = positive_setting("min_sigma", min_sigma, self.name)

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        B, N, M = contexts.shape
        out = [np.zeros((B, len(pa) + 2)) for pa in graph.parents]
        if N == 0:
            for p in out:
                p[:, -1] = EMPTY_SIGMA
        else:
            with quiet_pgmpy():
                import pandas as pd
                from pgmpy.models import LinearGaussianBayesianNetwork
                from pgmpy.parameter_estimator import LinearGaussianMLE

                for b, rows in enumerate(contexts.cpu().numpy()):
                    model = LinearGaussianBayesianNetwork(graph.edges)
                    model.add_nodes_from(graph.names)  # isolated nodes too
                    model.fit(pd.DataFrame(rows, columns=list(graph.names)),
                              estimator=LinearGaussianMLE(std_estimator="mle"))
                    for m, name in enumerate(graph.names):
                        out[m][b] = cpd_params(graph, m, model.get_cpds(name))
        self.params_ = [torch.from_numpy(p) for p in out]
        for p in self.params_:
            p[:, -1].clamp_(min=self.min_sigma)
        self.network_ = self.params_
        self.zero_below_ = self.min_sigma
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        return [linear_prediction(self.params_[m], queries, list(self.graph_.parents[m])) for m in nodes]


def cpd_params(graph, m: int, cpd) -> np.ndarray:
    """A pgmpy ``LinearGaussianCPD`` of node ``m`` as our row [intercept, weights in parent order, sigma]."""
    evidence = [str(v) for v in cpd.evidence]
    ours = [graph.names[p] for p in graph.parents[m]]
    if sorted(evidence) != sorted(ours):
        raise BNError(f"pgmpy CPD of {graph.names[m]!r} has evidence {evidence}, expected parents {ours}")
    beta = np.asarray(cpd.beta, dtype=np.float64).reshape(-1)
    return np.concatenate([beta[:1], [beta[1 + evidence.index(v)] for v in ours], [float(cpd.std)]])


# ----- Pyro -----------------------------------------------------------------------------------

def beta_site(name: str) -> str:
    return f"beta_{name}"


def sigma2_site(name: str) -> str:
    return f"sigma2_{name}"


def regression_stats(graph, contexts: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per node the statistics of its regression on its parents, centred: ``(Cxx, Cxy, Cyy, xbar, ybar)``
    of shapes (B, k, k), (B, k), (B,), (B, k), (B,) (:class:`~bncompare.estimators.gaussian.RowStats` blocks)."""
    stats = row_stats(contexts, regressors(graph))
    out = []
    for m, pa in enumerate(graph.parents):
        pa = list(pa)
        out.append((stats.block(pa, pa), stats.block([m], pa)[:, 0], stats.squares[:, m], stats.means[:, pa],
                    stats.means[:, m]))
    return out


def nig_contexts_model(graph, prior: tuple[float, float, float, float], n_rows: int, stats) -> None:
    """B independent linear-Gaussian networks under the NIG prior, each observed through its own context.

    ``prior = (mean, precision, a, b)``; ``stats`` from :func:`regression_stats` of ``n_rows`` rows per
    context. For one node, ``sigma2 ~ InvGamma(a, b)``, ``beta = (b0, w) | sigma2 ~ N(mean, sigma2 /
    precision)`` per coordinate, and the rows contribute ``-N/2 log(2 pi sigma2) - RSS(beta) / (2 sigma2)``
    with ``RSS(beta) = Cyy - 2 w'Cxy + w'Cxx w + N (ybar - b0 - xbar'w)^2``, which is exactly
    ``sum_i (y_i - b0 - x_i'w)^2``: the factor is ``sum_i log N(y_i; b0 + x_i'w, sigma2)``, and the
    posterior is the one of the rows themselves.
    """
    mean, precision, a, b = prior
    B = stats[0][2].shape[0]
    with pyro.plate("contexts", B):
        for m, name in enumerate(graph.names):
            cxx, cxy, cyy, mx, my = stats[m]
            k1 = cxy.shape[-1] + 1
            s2 = pyro.sample(sigma2_site(name), dist.InverseGamma(torch.full((B,), a, dtype=torch.float64),
                                                                  torch.full((B,), b, dtype=torch.float64)))
            scale = torch.sqrt(s2 / precision)[:, None].expand(B, k1)
            beta = pyro.sample(beta_site(name), dist.Normal(torch.full_like(scale, mean), scale).to_event(1))
            w = beta[..., 1:]
            rss = (cyy - 2 * (w * cxy).sum(-1) + (w * (cxx @ w[..., None])[..., 0]).sum(-1)
                   + n_rows * (my - beta[..., 0] - (mx * w).sum(-1)) ** 2)
            pyro.factor(f"rows_{name}", -0.5 * n_rows * torch.log(2 * math.pi * s2) - rss / (2 * s2))


def canonical_rows(contexts: torch.Tensor) -> torch.Tensor:
    """Each context's rows in lexicographic order: the statistics and the seed do not depend on row order."""
    for col in reversed(range(contexts.shape[-1])):  # stable sorts, last key first
        order = torch.sort(contexts[..., col], dim=1, stable=True).indices
        contexts = torch.gather(contexts, 1, order[..., None].expand_as(contexts))
    return contexts


def rows_seed(seed: int, rows: torch.Tensor) -> int:
    """A seed that depends only on ``seed`` and the group's (canonically ordered) rows."""
    digest = hashlib.sha256(np.ascontiguousarray(rows.cpu().numpy()).tobytes()).digest()
    return int(np.random.SeedSequence([int(seed), int.from_bytes(digest[:8], "little")]).generate_state(1)[0])


class _PyroGaussian(GaussianEstimator):
    """One inference run per group of ``plate_size`` contexts; subclasses return the group's draws."""

    tags = Tags(family="library", variables="gaussian")

    def _check_prior(self, mean, precision, a, b):
        NIGPrior(mean, precision, a, b)
        if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
            raise BNError(f"{self.name}: mean must be a finite number, got {mean!r}")
        self.mean, self.precision, self.a, self.b = float(mean), float(precision), float(a), float(b)
        if isinstance(self.plate_size, bool) or not isinstance(self.plate_size, int) or self.plate_size < 1:
            raise BNError(f"{self.name}: plate_size must be an integer >= 1, got {self.plate_size!r}")

    @property
    def prior(self) -> tuple[float, float, float, float]:
        return (self.mean, self.precision, self.a, self.b)

    def _draw_group(self, graph, n_rows, stats) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = canonical_rows(self._start_fit(graph, contexts))
        n_rows = contexts.shape[1]
        parts = {}
        for start in range(0, contexts.shape[0], self.plate_size):
            group = contexts[start : start + self.plate_size]
            with seeded(rows_seed(self.seed, group)), single_thread():
                pyro.clear_param_store()
                draws = self._draw_group(graph, n_rows, regression_stats(graph, group))
            for site, value in draws.items():
                parts.setdefault(site, []).append(value.detach().to(torch.float64))
        self.draws_ = [{"beta": torch.cat(parts[beta_site(n)], 1), "sigma2": torch.cat(parts[sigma2_site(n)], 1)}
                       for n in graph.names]
        self.network_ = [pack(d["beta"].mean(0)[:, 0], d["beta"].mean(0)[:, 1:],
                              torch.sqrt(1 / (1 / d["sigma2"]).mean(0))) for d in self.draws_]
        return self

    def draw_means(self, queries, m):
        """Node m's Normal mixture at each query: the draws' means ``x' beta_s`` (S, B, Q), ``sigma2_s`` (S, B, 1)."""
        d = self.draws_[m]
        B, Q, _ = queries.shape
        x = torch.cat([torch.ones(B, Q, 1, dtype=torch.float64), queries[..., list(self.graph_.parents[m])]], -1)
        return torch.einsum("bqk,sbk->sbq", x, d["beta"]), d["sigma2"][..., None]

    def predict(self, queries, nodes=None):
        """The Normal with the Monte Carlo predictive's mean and variance (a moment match, see the module)."""
        queries, nodes = self._check_queries(queries, nodes)
        out = []
        for m in nodes:
            mu, s2 = self.draw_means(queries, m)
            loc = mu.mean(0)
            var = s2.mean(0) + ((mu - loc) ** 2).mean(0)  # the mixture's variance: E[sigma2] + Var[x' beta]
            out.append(normal(loc, torch.sqrt(var)))
        return out

    def mixture_log_density(self, queries, nodes=None) -> list[torch.Tensor]:
        """Log density of each query's own value of node m under the draws' Normal mixture: (B, Q) per node."""
        queries, nodes = self._check_queries(queries, nodes)
        out = []
        for m in nodes:
            mu, s2 = self.draw_means(queries, m)
            logp = torch.distributions.Normal(mu, torch.sqrt(s2)).log_prob(queries[..., m][None])
            out.append(torch.logsumexp(logp, 0) - math.log(mu.shape[0]))
        return out


class PyroGaussianNUTS(_PyroGaussian):
    """Posterior draws by NUTS on :func:`nig_contexts_model` (one chain per group of contexts).

    Settings as :class:`~bncompare.estimators.pyro_baselines.PyroNUTS`: ``num_samples``, ``warmup_steps``,
    ``max_tree_depth`` (leapfrog steps per draw at most 2**depth), ``seed``, ``plate_size``; and the NIG
    prior ``mean, precision, a, b``. After fit, ``draws_`` (see the module docstring).
    """

    name = "pyro_nuts"

    def __init__(self, mean: float = 0.0, precision: float = 1.0, a: float = 3.0, b: float = 2.0,
                 num_samples: int = 200, warmup_steps: int = 200, seed: int = 0, plate_size: int = 32,
                 max_tree_depth: int = 10):
        self.num_samples = int(num_samples)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self.plate_size = plate_size
        self.max_tree_depth = int(max_tree_depth)
        self._check_prior(mean, precision, a, b)
        if self.num_samples < 2 or self.warmup_steps < 0 or self.max_tree_depth < 1:
            raise BNError(f"NUTS needs num_samples >= 2, warmup_steps >= 0 and max_tree_depth >= 1, got "
                          f"{num_samples}, {warmup_steps}, {max_tree_depth}")

    def _draw_group(self, graph, n_rows, stats):
        from pyro.infer import MCMC, NUTS

        kernel = NUTS(nig_contexts_model, jit_compile=True, ignore_jit_warnings=True,
                      max_tree_depth=self.max_tree_depth)
        mcmc = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.warmup_steps, disable_progbar=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated", DeprecationWarning)
            mcmc.run(graph, self.prior, n_rows, stats)
        return mcmc.get_samples()


class PyroGaussianSVI(_PyroGaussian):
    """Posterior draws from an autoguide fitted by SVI on :func:`nig_contexts_model` (one run per group).

    ``guide="diag_normal"`` (AutoDiagonalNormal; ``num_draws`` draws from it make the predictive) or
    ``"delta"`` (AutoDelta: the MAP point, a single "draw"). Settings otherwise as
    :class:`~bncompare.estimators.pyro_baselines.PyroSVI`: ``steps``, ``lr`` (decayed to 1% over the run),
    ``num_draws``, ``seed``, ``plate_size``; and the NIG prior ``mean, precision, a, b``.
    """

    name = "pyro_svi"
    GUIDES = ("diag_normal", "delta")

    def __init__(self, mean: float = 0.0, precision: float = 1.0, a: float = 3.0, b: float = 2.0,
                 steps: int = 500, lr: float = 0.05, guide: str = "diag_normal", num_draws: int = 500,
                 seed: int = 0, plate_size: int = 32):
        if guide not in self.GUIDES:
            raise BNError(f"unknown SVI guide {guide!r}; choose one of {list(self.GUIDES)}")
        if int(steps) < 1 or not lr > 0 or int(num_draws) < 1:
            raise BNError(f"SVI needs steps >= 1, lr > 0 and num_draws >= 1, got {steps}, {lr}, {num_draws}")
        self.steps = int(steps)
        self.lr = float(lr)
        self.guide = guide
        self.num_draws = int(num_draws)
        self.seed = int(seed)
        self.plate_size = plate_size
        self._check_prior(mean, precision, a, b)

    def _draw_group(self, graph, n_rows, stats):
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal
        from pyro.optim import ClippedAdam

        guide = (AutoDiagonalNormal if self.guide == "diag_normal" else AutoDelta)(nig_contexts_model)
        optim = ClippedAdam({"lr": self.lr, "lrd": 0.01 ** (1 / self.steps)})
        svi = SVI(nig_contexts_model, guide, optim, Trace_ELBO())
        args = (graph, self.prior, n_rows, stats)
        for _ in range(self.steps):
            svi.step(*args)
        sites = [s for n in graph.names for s in (beta_site(n), sigma2_site(n))]
        with torch.no_grad():
            if self.guide == "delta":
                point = guide.median(*args)
                return {s: point[s][None] for s in sites}
            draws = [guide(*args) for _ in range(self.num_draws)]
            return {s: torch.stack([d[s] for d in draws]) for s in sites}
