"""Real data: the Sachs flow-cytometry measurements, discretization, leakage-free splits, prior fit."""
from bncompare.realdata.discretize import discretize, pairwise_mi, quantile_codes, total_pairwise_mi
from bncompare.realdata.prior_fit import best_alpha, describe, prior_distance
from bncompare.realdata.sachs import (
    COLUMN_TO_NODE,
    SachsSplit,
    consensus_edges,
    consensus_graph,
    cpt_tv,
    load_sachs_raw,
    sachs_data,
    sachs_graph,
    sachs_network,
    sachs_splits,
    to_tensor,
)

__all__ = [
    "COLUMN_TO_NODE", "SachsSplit", "best_alpha", "consensus_edges", "consensus_graph", "cpt_tv", "describe",
    "discretize", "load_sachs_raw", "pairwise_mi", "prior_distance", "quantile_codes", "sachs_data",
    "sachs_graph", "sachs_network", "sachs_splits", "to_tensor", "total_pairwise_mi",
]
