"""An example bncompare plugin: one estimator kind, ``laplace``, declared as an entry point."""
from bncompare_laplace.estimator import LaplaceMLE

__all__ = ["LaplaceMLE"]
