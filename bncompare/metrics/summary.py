"""Mean and standard error that keep infinities honest.

An infinite value (e.g. KL of an estimator that ruled out a possible value)
makes the mean ``inf``; its standard error is then undefined (NaN). Callers
report the fraction of infinite values next to it.
"""
from __future__ import annotations

import numpy as np


def mean_sem(values) -> tuple[float, float, int]:
    """(mean, standard error of the mean, n) of finite-or-inf values; NaNs are dropped."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    if not np.isfinite(v).all():
        return float(v.mean()) if n else float("nan"), float("nan"), n
    sem = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(v.mean()), sem, n
