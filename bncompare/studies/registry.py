"""Estimator kinds a study config may name, mapped to their classes.

A config entry says ``kind: pgmpy_bayes`` and ``params: {...}``; the runner
calls ``build(kind, params)`` and never needs to know what it got. Classes are
imported on first use (pgmpy and Pyro are slow to import), from this fixed
table only: a config can choose a kind, never name code to import.

Two more sources of kinds, both chosen by their owner, never by a config:

- installed plugins: a distribution declares ``name = "module:Class"`` in the entry-point group
  ``bncompare.estimators`` (its pyproject's ``[project.entry-points."bncompare.estimators"]``). They are
  found by kind name through ``importlib.metadata`` in every process (joblib, submitit and Slurm children
  too), and loaded only when a study names that kind. A built-in kind's name cannot be taken over.
- :func:`register`, inside one Python process (children of a sweep do not see it).

:func:`origin` says where a kind comes from; :func:`user_code` is what a kind's cell keys add for code
outside bncompare (bncompare's own is in :func:`bncompare.codeversion.code_version`).
"""
from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from functools import cache

from bncompare.errors import BNError

KINDS: dict[str, tuple[str, str] | Callable] = {
    "mle": ("bncompare.estimators.counting", "MLE"),
    "dirichlet": ("bncompare.estimators.counting", "DirichletPosterior"),
    "bdeu": ("bncompare.estimators.counting", "BDeu"),
    "k2": ("bncompare.estimators.counting", "K2"),
    "naive": ("bncompare.estimators.counting", "NaiveMLE"),
    "structure_averaging": ("bncompare.estimators.structure_averaging", "StructureAveraging"),
    "dirichlet_median": ("bncompare.estimators.bayes", "DirichletMedian"),
    "uniform_mean": ("bncompare.estimators.bayes", "UniformPosteriorMean"),
    "uniform_median": ("bncompare.estimators.bayes", "UniformPosteriorMedian"),
    "pgmpy_mle": ("bncompare.estimators.pgmpy_baselines", "PgmpyMLE"),
    "pgmpy_bayes": ("bncompare.estimators.pgmpy_baselines", "PgmpyBayes"),
    "pyro_conjugate": ("bncompare.estimators.pyro_baselines", "PyroConjugate"),
    "pyro_nuts": ("bncompare.estimators.pyro_baselines", "PyroNUTS"),
    "pyro_svi": ("bncompare.estimators.pyro_baselines", "PyroSVI"),
    "constructed": ("bncompare.transformer.construct", "ConstructedTransformer"),
    "trained": ("bncompare.transformer.trained", "TrainedTransformer"),
    "transformer_agnostic": ("bncompare.transformer.agnostic", "StructureAgnosticTransformer"),
    # linear-Gaussian networks (variables=gaussian)
    "gaussian_mle": ("bncompare.estimators.gaussian", "LeastSquares"),
    "gaussian_ridge": ("bncompare.estimators.gaussian", "Ridge"),
    "nig_posterior": ("bncompare.estimators.gaussian", "NIGPosterior"),
    "gaussian_naive": ("bncompare.estimators.gaussian", "NaiveLeastSquares"),
    "pgmpy_gaussian": ("bncompare.estimators.gaussian_libraries", "PgmpyLinearGaussian"),
    "pyro_gaussian_nuts": ("bncompare.estimators.gaussian_libraries", "PyroGaussianNUTS"),
    "pyro_gaussian_svi": ("bncompare.estimators.gaussian_libraries", "PyroGaussianSVI"),
    "constructed_gd": ("bncompare.transformer.gd_construct", "ConstructedGD"),
    "gaussian_trained": ("bncompare.transformer.trained_gaussian", "TrainedGaussianTransformer"),
    # autoregressive processes (variables=autoregressive)
    "ar_least_squares": ("bncompare.estimators.autoregressive", "ARLeastSquares"),
    "ar_ridge": ("bncompare.estimators.autoregressive", "ARRidge"),
    "ar_procrustes": ("bncompare.estimators.autoregressive", "ARProcrustes"),
    "ar_one_step_gd": ("bncompare.estimators.autoregressive", "OneStepGD"),
    "ar_pyro_nuts": ("bncompare.estimators.autoregressive_pyro", "ARPyroNUTS"),
    "ar_constructed_linear": ("bncompare.transformer.ar_linear", "ConstructedLinearTF"),
    "ar_trained_linear": ("bncompare.transformer.ar_linear", "TrainedLinearTF"),
    "ar_trained": ("bncompare.transformer.trained_ar", "TrainedARTransformer"),
}


BUILTIN = frozenset(KINDS)
ENTRY_POINT_GROUP = "bncompare.estimators"


@cache
def installed() -> dict[str, importlib.metadata.EntryPoint]:
    """The plugin kinds of the installed distributions, by name (not loaded); built-in names are never taken."""
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            found.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return found


def kinds() -> list[str]:
    """Every kind a study config may name here: the table, the registered ones and the installed plugins."""
    return sorted(set(KINDS) | set(installed()))


def register(kind: str, factory: Callable) -> None:
    """Make ``kind`` available to study configs; ``factory(**params)`` must return an Estimator."""
    if not callable(factory):
        raise BNError(f"estimator factory for {kind!r} must be callable")
    KINDS[str(kind)] = factory


def unknown(kind) -> str:
    return f"unknown estimator kind {kind!r}; choose one of {', '.join(kinds())}"


def factory(kind: str) -> Callable:
    if kind not in KINDS:
        ep = installed().get(kind)
        if ep is None:
            raise BNError(unknown(kind))
        try:
            target = ep.load()
        except Exception as e:  # noqa: BLE001  a broken plugin is reported, in one line, as the plugin's
            raise BNError(f"estimator kind {kind!r} from {_dist(ep)} cannot be loaded ({ep.value}): "
                          f"{type(e).__name__}: {e}") from None
        if not callable(target):
            raise BNError(f"estimator kind {kind!r} from {_dist(ep)}: {ep.value} is not callable")
        return target
    target = KINDS[kind]
    if callable(target):
        return target
    module, cls = target
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise BNError(f"estimator kind {kind!r} needs {module}.{cls}, which is not available here ({e})") from None


def build(kind: str, params: dict | None = None):
    """A fresh estimator of ``kind`` with constructor arguments ``params``."""
    make = factory(kind)
    try:
        return make(**(params or {}))
    except TypeError as e:
        raise BNError(f"estimator kind {kind!r}: bad parameters {sorted(params or {})}: {e}") from None


def _dist(ep) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unnamed distribution"


def origin(kind: str) -> str:
    """Where ``kind`` comes from: ``bncompare``, ``<distribution> <version>`` (a plugin) or ``registered``."""
    if kind in BUILTIN and not callable(KINDS.get(kind)):
        return "bncompare"
    if kind in KINDS:
        return f"registered ({getattr(KINDS[kind], '__module__', '?')})"
    if kind in installed():
        return _dist(installed()[kind])
    raise BNError(unknown(kind))


def origins(names) -> dict[str, str]:
    """kind -> :func:`origin` for the kinds ``names`` (what the run log lists)."""
    return {k: origin(k) for k in sorted(set(names))}


def user_code(kind: str) -> dict | None:
    """What a kind's cell keys add for code outside bncompare: the hash of its package's sources and its
    distribution's version; None for bncompare's own classes (the code version covers them)."""
    from bncompare.codeversion import object_source

    if kind in BUILTIN and not callable(KINDS.get(kind)):
        return None
    if kind in installed():
        ep = installed()[kind]
        return {"origin": _dist(ep), "source": object_source(ep.module)}
    target = factory(kind)
    module = getattr(target, "__module__", None) or ""
    if module == "bncompare" or module.startswith("bncompare."):
        return None
    return {"origin": origin(kind), "version": _version_of(module), "source": object_source(module)}


def _version_of(module: str) -> str | None:
    """The version of the distribution that holds the top-level package of ``module``, if one does."""
    dists = importlib.metadata.packages_distributions().get(module.partition(".")[0], [])
    return f"{dists[0]} {importlib.metadata.version(dists[0])}" if dists else None
