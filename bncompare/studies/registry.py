"""Estimator kinds a study config may name, mapped to their classes.

A config entry says ``kind: pgmpy_bayes`` and ``params: {...}``; the runner
calls ``build(kind, params)`` and never needs to know what it got. Classes are
imported on first use (pgmpy and Pyro are slow to import), from this fixed
table only: a config can choose a kind, never name code to import.

Python users can add their own kinds with :func:`register`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

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


def register(kind: str, factory: Callable) -> None:
    """Make ``kind`` available to study configs; ``factory(**params)`` must return an Estimator."""
    if not callable(factory):
        raise BNError(f"estimator factory for {kind!r} must be callable")
    KINDS[str(kind)] = factory


def factory(kind: str) -> Callable:
    if kind not in KINDS:
        raise BNError(f"unknown estimator kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
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
