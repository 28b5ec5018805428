"""bncompare: in-context transformer estimators of discrete Bayesian networks, measured honestly."""
__version__ = "0.1.0"
