"""bncompare: in-context transformer estimators of discrete Bayesian networks, measured honestly."""
import os

# Idle OpenMP threads that spin make small torch ops 10-300x slower whenever
# another process shares the CPU (measured on a 2-core machine). Only takes
# effect if torch has not been imported yet; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
