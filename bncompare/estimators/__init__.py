"""Estimators of a network's conditionals from in-context samples, all behind one interface."""
from bncompare.estimators.base import Estimator, TableEstimator
from bncompare.estimators.counting import BDeu, CountingEstimator, DirichletPosterior, K2, MLE, NaiveMLE, count_table

__all__ = ["BDeu", "CountingEstimator", "DirichletPosterior", "Estimator", "K2", "MLE", "NaiveMLE", "TableEstimator", "count_table"]
