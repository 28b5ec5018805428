"""Estimators of a network's conditionals from in-context samples, all behind one interface."""
from bncompare.estimators.base import Estimator, TableEstimator
from bncompare.estimators.bayes import DirichletMedian, UniformPosteriorMean, UniformPosteriorMedian
from bncompare.estimators.counting import (
    K2,
    MLE,
    BDeu,
    CountingEstimator,
    DirichletPosterior,
    NaiveMLE,
    count_tables,
    mle_rows,
)
from bncompare.estimators.gaussian import LeastSquares, NaiveLeastSquares, NIGPosterior, Ridge
from bncompare.estimators.gaussian_libraries import PgmpyLinearGaussian, PyroGaussianNUTS, PyroGaussianSVI

# pgmpy itself is imported only when a pgmpy estimator is fitted (~1-2 s); pyro costs ~0.15 s
from bncompare.estimators.pgmpy_baselines import PgmpyBayes, PgmpyMLE
from bncompare.estimators.pyro_baselines import PyroConjugate, PyroNUTS, PyroSVI

__all__ = [
    "BDeu", "CountingEstimator", "DirichletMedian", "DirichletPosterior", "Estimator", "K2", "MLE", "NaiveMLE",
    "PgmpyBayes", "PgmpyMLE",
    "PyroConjugate", "PyroNUTS", "PyroSVI", "TableEstimator", "UniformPosteriorMean", "UniformPosteriorMedian",
    "count_tables", "mle_rows",
    "LeastSquares", "NaiveLeastSquares", "NIGPosterior", "PgmpyLinearGaussian", "PyroGaussianNUTS",
    "PyroGaussianSVI", "Ridge",
]
