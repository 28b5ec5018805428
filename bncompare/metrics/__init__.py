"""Metrics of a study: conditional errors per query, joint (sample-fidelity) distances, summaries;
for real-valued predictions, densities, KL, CRPS, calibration and joint KL (``metrics.gaussian``)."""
from bncompare.metrics.conditional import conditional_errors, kl, true_rows, tv, unseen_mask
from bncompare.metrics.gaussian import (
    cdf,
    central_coverage,
    coverage,
    crps,
    joint_kl,
    kl_true_normal,
    log_density,
    param_err,
    pit_histogram,
)
from bncompare.metrics.joint import (
    MAX_EXACT_STATES,
    all_states,
    estimator_log_joint,
    exact_joint,
    joint_distances,
    monte_carlo,
    n_joint_states,
    pairwise_tv,
    true_log_joint,
)
from bncompare.metrics.summary import cell_summary, combine_seeds, excess, mean_sem, summarize

__all__ = [
    "MAX_EXACT_STATES", "all_states", "cell_summary", "combine_seeds", "conditional_errors", "estimator_log_joint",
    "exact_joint", "excess", "joint_distances", "kl", "mean_sem", "monte_carlo", "n_joint_states", "pairwise_tv",
    "summarize", "true_log_joint", "true_rows", "tv", "unseen_mask",
    "cdf", "central_coverage", "coverage", "crps", "joint_kl", "kl_true_normal", "log_density", "param_err",
    "pit_histogram",
]
