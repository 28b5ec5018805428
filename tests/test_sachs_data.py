"""Sachs data: shipped file, column mapping, discretization, leakage-free splits, prior fit."""
import numpy as np
import pandas as pd
import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import BayesNet, DirichletPrior, Graph, load_network
from bncompare.realdata import (
    COLUMN_TO_NODE,
    best_alpha,
    consensus_edges,
    consensus_graph,
    cpt_tv,
    discretize,
    load_sachs_raw,
    prior_distance,
    quantile_codes,
    sachs_data,
    sachs_graph,
    sachs_network,
    sachs_splits,
    total_pairwise_mi,
)


@pytest.fixture(scope="module")
def raw():
    return load_sachs_raw()


@pytest.fixture(scope="module")
def hartemink(raw):
    return discretize(raw, "hartemink")


@pytest.fixture(scope="module")
def data():
    return sachs_data("hartemink")


# ----- raw data and DAG -------------------------------------------------------
def test_raw_data_shape_and_columns(raw):
    assert raw.shape == (7466, 11)
    assert list(raw.columns) == list(COLUMN_TO_NODE)
    assert (raw.dtypes == np.float64).all()
    assert np.isfinite(raw.to_numpy()).all() and (raw.to_numpy() > 0).all()
    renamed = load_sachs_raw(node_names=True)
    assert list(renamed.columns) == list(COLUMN_TO_NODE.values())
    np.testing.assert_array_equal(renamed.to_numpy(), raw.to_numpy())


def test_columns_map_onto_the_bundled_dag():
    g = sachs_graph()
    assert len(set(COLUMN_TO_NODE.values())) == 11  # one node per column
    assert set(COLUMN_TO_NODE.values()) == set(g.names)
    assert len(g.edges) == 17 and g.cards == (3,) * 11
    assert ("Plcg", "PIP3") in g.edges and ("Erk", "Akt") in g.edges
    # every consensus edge names a node of the DAG once mapped
    edges = consensus_edges()
    assert len(edges) == 18 and {n for e in edges for n in e} <= set(g.names)
    assert sachs_graph(4).cards == (4,) * 11 and sachs_graph(4).parents == g.parents


def test_consensus_list_cycle_is_reported():
    with pytest.raises(BNError, match="cycle") as err:
        consensus_graph()
    msg = str(err.value)
    assert "\n" not in msg
    cycle = msg.split("cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"Plcg", "PIP2", "PIP3"}


# ----- discretization ----------------------------------------------------------
def test_quantile_bins_are_balanced_and_ordered(raw):
    q = discretize(raw, "quantile")
    assert q.shape == raw.shape and list(q.columns) == list(raw.columns)
    shares = q.apply(lambda c: c.value_counts(normalize=True)).to_numpy()
    assert shares.shape == (3, 11)
    assert np.abs(shares - 1 / 3).max() < 0.02
    _assert_intervals(raw, q)


def _assert_intervals(raw, codes):
    """Each level is an interval of raw values, and higher levels hold higher values."""
    for col in raw.columns:
        lo = raw[col].groupby(codes[col]).min().to_numpy()
        hi = raw[col].groupby(codes[col]).max().to_numpy()
        assert (hi[:-1] < lo[1:]).all(), col


def test_hartemink_keeps_more_information(raw, hartemink):
    assert set(np.unique(hartemink.to_numpy())) == {0, 1, 2}
    assert (hartemink.nunique() == 3).all()
    _assert_intervals(raw, hartemink)
    mi = total_pairwise_mi(hartemink)
    assert mi > total_pairwise_mi(discretize(raw, "quantile"))
    assert mi > total_pairwise_mi(raw.apply(lambda c: pd.cut(c, 3, labels=False)))  # equal-width bins
    assert mi > total_pairwise_mi(np.log(raw).apply(lambda c: pd.cut(c, 3, labels=False)))
    # any merge sequence of the same 30 fine levels ends in contiguous groups: try random ones
    rng = np.random.default_rng(0)
    fine = np.stack([quantile_codes(raw[c].to_numpy(), 30) for c in raw.columns], axis=1)
    for _ in range(20):
        codes = np.empty_like(fine)
        for j in range(fine.shape[1]):
            cuts = np.sort(rng.choice(np.arange(1, fine[:, j].max() + 1), 2, replace=False))
            codes[:, j] = np.searchsorted(cuts, fine[:, j], side="right")
        assert mi > total_pairwise_mi(codes)


def test_hartemink_merge_is_the_least_lossy_one():
    """Two columns, 4 -> 3 levels: each merge must keep the most MI among the 3 candidates."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=2000)
    df = pd.DataFrame({"a": z + rng.normal(size=2000), "b": np.exp(z) + rng.normal(size=2000)})
    fine = np.stack([quantile_codes(df[c].to_numpy(), 4) for c in df], axis=1)
    got = discretize(df, "hartemink", n_levels=3, n_initial=4).to_numpy()

    def merged(col, a):
        return np.where(col > a, col - 1, col)

    # round-robin: column a merges first (b still fine), then b (a already merged)
    best_a = max(range(3), key=lambda a: total_pairwise_mi(np.stack([merged(fine[:, 0], a), fine[:, 1]], 1)))
    np.testing.assert_array_equal(got[:, 0], merged(fine[:, 0], best_a))
    best_b = max(range(3), key=lambda b: total_pairwise_mi(np.stack([got[:, 0], merged(fine[:, 1], b)], 1)))
    np.testing.assert_array_equal(got[:, 1], merged(fine[:, 1], best_b))


def test_discretize_rejects_bad_input(raw):
    with pytest.raises(BNError, match="unknown discretization"):
        discretize(raw, "kmeans")
    bad = raw.iloc[:50].copy()
    bad.iloc[3, 2] = np.nan
    with pytest.raises(BNError, match="plcg"):
        discretize(bad)
    with pytest.raises(BNError, match="tied values"):
        discretize(pd.DataFrame({"x": np.ones(30), "y": np.arange(30.0)}), "quantile")


# ----- splits --------------------------------------------------------------------
def test_splits_are_disjoint_cover_and_reference_is_held_out_only(data):
    g = sachs_graph()
    assert data.shape == (7466, 11) and data.dtype == torch.long
    splits = sachs_splits(data, n_splits=3, holdout_frac=0.4, seed=7, smoothing=0.5)
    assert len(splits) == 3
    for s in splits:
        pool, hold = set(s.pool_rows.tolist()), set(s.holdout_rows.tolist())
        assert not pool & hold and pool | hold == set(range(7466))
        assert len(hold) == round(0.4 * 7466)
        assert torch.equal(s.pool, data[s.pool_rows]) and torch.equal(s.holdout, data[s.holdout_rows])
        assert s.reference.graph is g
        for m in range(g.n_nodes):
            c = s.reference.cpts[m]
            assert (c > 0).all() and np.allclose(c.sum(1), 1)
            # recount by hand from the held-out rows only
            rows = g.config_index(s.holdout, m).numpy()
            n = np.zeros_like(c)
            np.add.at(n, (rows, s.holdout[:, m].numpy()), 1)
            np.testing.assert_allclose(c, (n + 0.5) / (n.sum(1, keepdims=True) + 1.5))
    assert not torch.equal(splits[0].holdout_rows, splits[1].holdout_rows)


def test_splits_reproducible_with_seed(data):
    a = sachs_splits(data, n_splits=2, seed=3)
    b = sachs_splits(data, n_splits=2, seed=3)
    c = sachs_splits(data, n_splits=2, seed=4)
    for x, y in zip(a, b):
        assert torch.equal(x.holdout_rows, y.holdout_rows)
        assert all(np.array_equal(p, q) for p, q in zip(x.reference.cpts, y.reference.cpts))
    assert not torch.equal(a[0].holdout_rows, c[0].holdout_rows)
    draw = lambda s, seed: s.draw_contexts(4, 50, torch.Generator().manual_seed(seed))
    assert torch.equal(draw(a[0], 1), draw(b[0], 1)) and not torch.equal(draw(a[0], 1), draw(a[0], 2))


def test_contexts_come_from_pool_and_queries_from_holdout():
    # one node holding the row number, so drawn rows can be traced back
    n = 300
    g = Graph(("row", "x"), (n, 2), ((), (0,)))
    data = torch.stack([torch.arange(n), torch.arange(n) % 2], 1)
    s = sachs_splits(data, n_splits=1, holdout_frac=0.3, seed=0, graph=g)[0]
    ctx = s.draw_contexts(8, 40, torch.Generator().manual_seed(0))
    qry = s.draw_queries(8, 10, torch.Generator().manual_seed(0))
    assert ctx.shape == (8, 40, 2) and qry.shape == (8, 10, 2)
    assert set(ctx[..., 0].unique().tolist()) <= set(s.pool_rows.tolist())
    assert set(qry[..., 0].unique().tolist()) <= set(s.holdout_rows.tolist())
    assert all(len(set(c.tolist())) == 40 for c in ctx[..., 0])  # distinct rows within a context
    with pytest.raises(BNError, match="distinct rows"):
        s.draw_contexts(1, len(s.pool_rows) + 1)


def test_split_rejects_bad_settings(data):
    with pytest.raises(BNError, match="holdout_frac"):
        sachs_splits(data, holdout_frac=1.0)
    with pytest.raises(BNError, match="smoothing"):
        sachs_splits(data, smoothing=0)
    with pytest.raises(BNError, match="outside"):
        sachs_splits(data + 1)


# ----- distances ----------------------------------------------------------------------
def test_cpt_tv():
    net = sachs_network()
    assert cpt_tv(net, net)["mean"] == 0
    flipped = BayesNet(net.graph, tuple(c[:, ::-1] for c in net.cpts))
    tv = cpt_tv(net, flipped)
    assert 0 < tv["mean"] <= 1 and tv.index[-1] == "mean" and len(tv) == 12
    with pytest.raises(BNError, match="same graph"):
        cpt_tv(net, load_network("asia"))


def test_prior_distance_sachs_is_far_from_dirichlet_1():
    net = sachs_network()
    df = prior_distance(net, 1.0)
    assert list(df.index) == [*net.graph.names, "all"]
    np.testing.assert_allclose(df["min_entry"].iloc[:-1], [c.min() for c in net.cpts])
    all_ = df.loc["all"]
    assert all_.min_entry < 1e-4
    assert all_.frac_below > 20 * all_.prior_frac_below  # far more near-zero entries than Dirichlet(1) gives
    assert all_.entropy < all_.prior_entropy
    assert best_alpha(net) < 0.5


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.0])
def test_prior_distance_matches_draws_from_the_prior(alpha):
    """CPTs drawn from Dirichlet(alpha) must look like Dirichlet(alpha) by every statistic."""
    net = load_network("collider-6", seed=0, prior=DirichletPrior(alpha), card=3)  # 243 + 5 rows
    row = prior_distance(net, alpha).loc["all"]
    se = 3 / np.sqrt(row.rows)
    assert abs(row.entropy - row.prior_entropy) < se
    assert abs(row.logpdf - row.prior_logpdf) <= se * row.prior_logpdf_sd + 1e-12
    assert abs(np.log(best_alpha(net)) - np.log(alpha)) < 0.2
