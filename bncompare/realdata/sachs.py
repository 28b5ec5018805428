"""The Sachs et al. (2005) flow-cytometry data, on the bnlearn "sachs" DAG, with a leakage-free protocol.

Data: 7466 cells x 11 proteins/lipids, continuous (``bncompare/data/sachs``, see
its README for provenance). Columns are renamed to the node names of the sachs
network bundled with pgmpy (``COLUMN_TO_NODE``), so data and DAG line up.

DAG: the bnlearn-repository "sachs" network that pgmpy bundles (17 edges, all
nodes ternary, acyclic), ``load_network("sachs")``. The consensus edge list that
ships with the data (18 edges) is NOT a DAG: plcg -> PIP2 -> PIP3 -> plcg is a
cycle, so it cannot carry a factorization; :func:`consensus_graph` reports it.

Protocol (no leakage), one split = one random partition of the rows:
  - the context pool: rows that estimators may see as contexts;
  - the held-out rows: disjoint; the reference CPTs are estimated from them only,
    as the Dirichlet posterior mean with pseudo-count ``smoothing`` per cell
    (strictly positive rows), and queries are drawn from them.

Several splits (different seeds) give error bars.

The discretization is a fixed preprocessing of the whole table (it only
defines the level of each value); no estimator ever sees held-out rows.

Typical use::

    graph = sachs_graph()
    data = sachs_data("hartemink")                     # (7466, 11) long, graph.names order
    for split in sachs_splits(data, n_splits=5, seed=0):
        contexts = split.draw_contexts(256, 100, gen)  # (256, 100, 11) from the pool
        queries = split.draw_queries(256, 32, gen)     # (256, 32, 11) from held-out rows
        truth = split.reference                        # BayesNet on ``graph``
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import torch

from bncompare.errors import BNError
from bncompare.estimators.counting import DirichletPosterior
from bncompare.metrics.conditional import tv as total_variation
from bncompare.networks.graph import Graph, check_data
from bncompare.networks.network import BayesNet
from bncompare.realdata.discretize import discretize

# Data column -> node name of pgmpy's bundled sachs network.
COLUMN_TO_NODE = {
    "praf": "Raf",
    "pmek": "Mek",
    "plcg": "Plcg",
    "PIP2": "PIP2",
    "PIP3": "PIP3",
    "p44/42": "Erk",
    "pakts473": "Akt",
    "PKA": "PKA",
    "PKC": "PKC",
    "P38": "P38",
    "pjnk": "Jnk",
}
N_ROWS = 7466
_DATA = "bncompare.data.sachs"


# ----- raw data ------------------------------------------------------------
@cache
def _read(name: str) -> pd.DataFrame:
    with resources.files(_DATA).joinpath(name).open("r") as f:
        return pd.read_csv(f)


def load_sachs_raw(node_names: bool = False) -> pd.DataFrame:
    """The 7466 x 11 continuous measurements (float64), a fresh copy.

    Columns keep the file's names (praf, pmek, ..., pjnk) unless ``node_names``,
    which renames them to the DAG's nodes (Raf, Mek, ..., Jnk) in file order.
    """
    df = _read("sachs_observations.csv").copy()
    if list(df.columns) != list(COLUMN_TO_NODE):
        raise BNError(f"sachs_observations.csv has columns {list(df.columns)}, expected {list(COLUMN_TO_NODE)}")
    return df.rename(columns=COLUMN_TO_NODE) if node_names else df


def consensus_edges(node_names: bool = True) -> list[tuple[str, str]]:
    """The 18 (cause, effect) edges of the consensus signalling graph shipped with the data."""
    df = _read("sachs_consensus_edges.csv")
    edges = list(zip(df["Cause"].astype(str), df["Effect"].astype(str)))
    if node_names:
        edges = [(COLUMN_TO_NODE[u], COLUMN_TO_NODE[v]) for u, v in edges]
    return edges


def consensus_graph(n_levels: int = 3) -> Graph:
    """Build a Graph from the consensus list; it raises BNError naming the cycle (the list is cyclic)."""
    nodes = list(COLUMN_TO_NODE.values())
    try:
        return Graph.from_edges(nodes, consensus_edges(), n_levels)
    except BNError as e:
        raise BNError(f"Sachs consensus edge list is not a DAG, {e}") from None


# ----- DAG and discrete data -------------------------------------------------
def sachs_network() -> BayesNet:
    """pgmpy's bundled bnlearn sachs network (structure and its published CPTs)."""
    from bncompare.networks.families import load_network

    return load_network("sachs")


def sachs_graph(n_levels: int = 3) -> Graph:
    """The bnlearn sachs DAG (17 edges) with ``n_levels`` states per node."""
    g = sachs_network().graph
    if n_levels == 3:
        return g
    return Graph(g.names, (int(n_levels),) * g.n_nodes, g.parents)


def to_tensor(codes: pd.DataFrame, graph: Graph) -> torch.Tensor:
    """Discretized Sachs columns (file or node names) as a (n, M) long tensor in ``graph.names`` order."""
    df = codes.rename(columns=COLUMN_TO_NODE)
    missing = [n for n in graph.names if n not in df.columns]
    if missing:
        raise BNError(f"data has no column for nodes {missing}; columns are {list(codes.columns)}")
    return check_data(graph, torch.tensor(df[list(graph.names)].to_numpy(np.int64)), "Sachs data")


def sachs_data(method: str = "hartemink", n_levels: int = 3, n_initial: int = 30) -> torch.Tensor:
    """All 7466 rows discretized (see :func:`discretize`), (7466, 11) long, in ``sachs_graph().names`` order."""
    codes = discretize(load_sachs_raw(), method=method, n_levels=n_levels, n_initial=n_initial)
    return to_tensor(codes, sachs_graph(n_levels))


# ----- leakage-free splits ---------------------------------------------------
@dataclass(frozen=True, eq=False)
class SachsSplit:
    """One random partition of the rows into a context pool and a disjoint held-out part."""

    index: int
    pool_rows: torch.Tensor  # (n_pool,) row numbers of the data the contexts come from
    holdout_rows: torch.Tensor  # (n_holdout,) disjoint row numbers; reference and queries come from these
    pool: torch.Tensor  # (n_pool, M) long
    holdout: torch.Tensor  # (n_holdout, M) long
    reference: BayesNet  # CPTs = Dirichlet(smoothing) posterior mean of the held-out rows
    smoothing: float

    @property
    def graph(self) -> Graph:
        return self.reference.graph

    def draw_contexts(self, n_contexts: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_contexts`` contexts of ``n`` distinct pool rows each: (B, N, M) long."""
        return _draw_rows(self.pool, n_contexts, n, generator, "context pool")

    def draw_queries(self, n_contexts: int, n_queries: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_queries`` distinct held-out rows per context: (B, Q, M) long."""
        return _draw_rows(self.holdout, n_contexts, n_queries, generator, "held-out part")


def _draw_rows(rows: torch.Tensor, b: int, n: int, generator, what: str) -> torch.Tensor:
    if not 1 <= n <= rows.shape[0]:
        raise BNError(f"cannot draw {n} distinct rows from the {what} of {rows.shape[0]} rows")
    if b < 1:
        raise BNError(f"number of contexts must be >= 1, got {b}")
    # Random keys, keep the n largest per context: n distinct rows, uniformly chosen.
    idx = torch.rand(b, rows.shape[0], generator=generator).topk(n, dim=1).indices
    return rows[idx]


def sachs_splits(
    data: torch.Tensor,
    n_splits: int = 5,
    holdout_frac: float = 0.5,
    seed: int = 0,
    smoothing: float = 0.5,
    graph: Graph | None = None,
) -> list[SachsSplit]:
    """``n_splits`` random pool / held-out partitions of ``data`` ((n, M) long, ``graph.names`` order).

    Split ``i`` holds out ``round(holdout_frac * n)`` rows chosen at random (seeded
    by ``seed``; the same seed gives the same splits) and estimates the reference
    CPTs from them alone: p(v | config) = (n_v + smoothing) / (n + d * smoothing).
    ``graph`` defaults to :func:`sachs_graph` (3 levels).
    """
    graph = graph or sachs_graph()
    data = check_data(graph, data, "Sachs data")
    if data.dim() != 2:
        raise BNError(f"Sachs data must have shape (n, {graph.n_nodes}), got {tuple(data.shape)}")
    if int(n_splits) != n_splits or n_splits < 1:
        raise BNError(f"n_splits must be a positive integer, got {n_splits}")
    if not smoothing > 0:
        raise BNError(f"smoothing must be > 0 so reference CPTs are strictly positive, got {smoothing}")
    n = data.shape[0]
    n_hold = int(round(holdout_frac * n))
    if not 0 < holdout_frac < 1 or not 1 <= n_hold < n:
        raise BNError(f"holdout_frac must leave rows on both sides, got {holdout_frac} for {n} rows")
    gen = torch.Generator().manual_seed(int(seed))
    splits = []
    for i in range(int(n_splits)):
        perm = torch.randperm(n, generator=gen)
        hold, pool = perm[:n_hold].sort().values, perm[n_hold:].sort().values
        est = DirichletPosterior(smoothing).fit(graph, data[hold][None])
        reference = BayesNet(graph, tuple(c[0].cpu().numpy() for c in est.cpts_), _levels(graph))
        splits.append(SachsSplit(i, pool, hold, data[pool], data[hold], reference, float(smoothing)))
    return splits


def _levels(graph: Graph):
    names = ("LOW", "AVG", "HIGH")
    return tuple(names if c == 3 else tuple(f"L{v}" for v in range(c)) for c in graph.cards)


def cpt_tv(a: BayesNet, b: BayesNet, data: torch.Tensor | None = None) -> pd.Series:
    """Total variation between the CPT rows of two networks on the same graph, per node.

    With ``data`` ((n, M) long), each row is weighted by how often its parent
    configuration occurs there: the mean TV at the data's parent values, the
    way studies score estimators. Without it, every CPT row counts once. The
    ``"mean"`` entry averages over nodes.
    """
    g = a.graph
    if b.graph.names != g.names or b.graph.parents != g.parents or b.graph.cards != g.cards:
        raise BNError("cpt_tv needs two networks on the same graph (names, parents and cards)")
    out = {}
    for m, name in enumerate(g.names):
        tv = total_variation(torch.from_numpy(np.ascontiguousarray(a.cpts[m])),
                             torch.from_numpy(np.ascontiguousarray(b.cpts[m]))).numpy()
        if data is None:
            out[name] = float(tv.mean())
        else:
            rows = g.config_index(check_data(g, data, "data"), m).reshape(-1).cpu().numpy()
            out[name] = float(tv[rows].mean())
    out["mean"] = float(np.mean(list(out.values())))
    return pd.Series(out, name="tv")
