"""Networks: validation, named families, pgmpy round trip, spec/BIF loading, priors, sampler."""
from __future__ import annotations

import gzip
import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from bncompare.errors import BNError
from bncompare.networks import (
    BayesNet,
    DirichletPrior,
    Graph,
    UniformRangePrior,
    available,
    check_data,
    draw_categorical,
    from_pgmpy,
    get_graph,
    load_bif,
    load_network,
    load_spec,
    make_prior,
    random_dag,
    sample,
    sample_with_uniforms,
    to_pgmpy,
    to_spec,
)


def one_line_error(fn, *match):
    with pytest.raises(BNError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


def exact_joint(graph: Graph, cpts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All joint states (S, M) and their probabilities, by enumeration."""
    states = np.array(list(itertools.product(*[range(c) for c in graph.cards])), dtype=np.int64)
    x = torch.from_numpy(states)
    p = np.ones(len(states))
    for m in range(graph.n_nodes):
        p *= cpts[m][graph.config_index(x, m).numpy(), states[:, m]]
    return states, p


def joint_counts(graph: Graph, x: torch.Tensor) -> np.ndarray:
    """Counts of each joint state, in the same order as :func:`exact_joint` (first node slowest)."""
    code = torch.zeros(x.shape[:-1], dtype=torch.long)
    for m, c in enumerate(graph.cards):
        code = code * c + x[..., m]
    return np.bincount(code.reshape(-1).numpy(), minlength=int(np.prod(graph.cards)))


def gof_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit, pooling cells with expected count < 5 into one."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep]).pvalue)


# ----- validation ---------------------------------------------------------
def test_cycle_is_rejected():
    one_line_error(lambda: Graph.from_edges(["A", "B", "C"], [("A", "B"), ("B", "C"), ("C", "A")]), "cycle")
    one_line_error(lambda: Graph.from_edges(["A"], [("A", "A")]), "self-loop")


def test_unknown_parent_is_rejected():
    one_line_error(lambda: Graph.from_edges(["A", "B"], [("Z", "B")]), "unknown node", "'Z'")
    one_line_error(lambda: load_spec({"nodes": {"A": {}, "B": {"parents": ["Q"]}}}), "'Q'")
    one_line_error(lambda: Graph(("A", "B"), (2, 2), ((), (1,))), "parent index")


def test_card_below_two_is_rejected():
    one_line_error(lambda: Graph.from_edges(["A", "B"], [("A", "B")], {"A": 2, "B": 1}), "'B'", "cardinality 1")


@pytest.fixture(scope="module")
def ab():
    return Graph.from_edges(["A", "B"], [("A", "B")], {"A": 2, "B": 3})


def test_bad_cpts_are_rejected(ab):
    good = [np.array([[0.3, 0.7]]), np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])]
    BayesNet(ab, good)
    one_line_error(lambda: BayesNet(ab, [good[0], good[1].T]), "'B'", "shape")
    one_line_error(lambda: BayesNet(ab, [good[0]]), "2 nodes")
    neg = [good[0], np.array([[-0.1, 0.6, 0.5], [0.1, 0.1, 0.8]])]
    one_line_error(lambda: BayesNet(ab, neg), "'B'", "negative")
    nan = [np.array([[np.nan, 1.0]]), good[1]]
    one_line_error(lambda: BayesNet(ab, nan), "'A'")


def test_row_sum_tolerance_is_1e_6(ab):
    row = lambda eps: [np.array([[0.3, 0.7 + eps]]), np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])]
    BayesNet(ab, row(5e-7))  # within tolerance
    one_line_error(lambda: BayesNet(ab, row(2e-6)), "'A'", "sums to")
    one_line_error(lambda: BayesNet(ab, row(-0.1)), "'A'", "sums to")


def test_unknown_network_lists_valid_names():
    msg = one_line_error(lambda: get_graph("tree-99x"), "unknown network")
    for name in ("chain-5", "tree-7", "general-10", "alarm", "sachs"):
        assert name in msg
    one_line_error(lambda: load_network("nosuchnet"), "valid names")
    one_line_error(lambda: get_graph("tree-6"), "sizes")


def test_bad_data_is_rejected(ab):
    one_line_error(lambda: check_data(ab, torch.tensor([[0, 3]])), "state 3", "'B'", "0..2")
    one_line_error(lambda: check_data(ab, torch.tensor([[-1, 0]])), "'A'")
    one_line_error(lambda: check_data(ab, torch.tensor([[0.0, float("nan")]])), "NaN")
    one_line_error(lambda: check_data(ab, torch.tensor([[0.5, 1.0]])), "non-integer")
    one_line_error(lambda: check_data(ab, torch.tensor([[0, 1, 1]])), "columns")
    assert check_data(ab, np.array([[1.0, 2.0]])).dtype == torch.long


# ----- families -----------------------------------------------------------
def edges_of(name):
    return set(get_graph(name).edges)


def pairs(s):
    return {(e[0], e[1]) for e in s.split()}


def test_paper_families_match_notes():
    for n in (5, 7, 10):
        letters = "ABCDEFGHIJ"[:n]
        assert edges_of(f"chain-{n}") == set(zip(letters, letters[1:]))
    assert edges_of("tree-5") == pairs("AB AC BD BE")
    assert edges_of("tree-7") == pairs("AB AC BD BE CF CG")
    assert edges_of("tree-10") == pairs("AB AC BD BE CF CG DH DI IJ")
    g5 = pairs("AC BC AD CD DE")
    g7 = g5 | pairs("DF EF CG EG")
    assert edges_of("general-5") == g5
    assert edges_of("general-7") == g7
    assert edges_of("general-10") == g7 | pairs("FH GH EI HI GJ IJ")
    assert get_graph("tree") == get_graph("tree-7")
    assert edges_of("star-4") == pairs("AB AC AD")
    assert edges_of("collider-4") == pairs("AD BD CD")


def test_available_names_all_load():
    real = {"asia", "cancer", "earthquake", "survey", "sachs", "child", "insurance", "alarm"}
    assert real <= set(available())
    for name in set(available()) - real:  # real networks are loaded by other tests (0.6 s each)
        if name.endswith("-N"):
            name = name.replace("-N", "-6")
        g = get_graph(name)
        assert g.n_nodes >= 2


def test_topological_order():
    # listed backwards: from_edges must reorder
    g = Graph.from_edges(["C", "B", "A"], [("A", "B"), ("B", "C"), ("A", "C")])
    assert g.names == ("A", "B", "C")
    for graph in [g, get_graph("general-10"), random_dag(10, 0.8, seed=3), load_network("alarm").graph]:
        for m, pa in enumerate(graph.parents):
            assert all(p < m for p in pa)
        pos = {n: i for i, n in enumerate(graph.names)}
        assert all(pos[u] < pos[v] for u, v in graph.edges)


def test_random_dag_is_seeded_and_bounded():
    assert random_dag(10, (0.7, 1.0), seed=1) == random_dag(10, (0.7, 1.0), seed=1)
    assert random_dag(10, 0.5, seed=1) != random_dag(10, 0.5, seed=2)
    assert max(len(p) for p in random_dag(10, 1.0, seed=0, max_parents=3).parents) == 3
    assert random_dag(6, 0.0, seed=0).edges == []
    one_line_error(lambda: random_dag(5, 1.5), "edge probability")


# ----- pgmpy round trip ---------------------------------------------------
@pytest.mark.parametrize("name", ["asia", "sachs", "alarm", "child"])
def test_pgmpy_round_trip_exact(name):
    net = load_network(name)
    model = to_pgmpy(net)
    assert model.check_model()
    back = from_pgmpy(model)
    assert back.graph == net.graph  # names, cards and parent ORDER
    assert back.state_names == net.state_names
    for a, b in zip(net.cpts, back.cpts):
        assert np.array_equal(a, b)
    # our layout, read independently through pgmpy's own joint probability
    x = net.sample(20, seed=1).numpy()
    ours = np.ones(len(x))
    for m in range(net.graph.n_nodes):
        ours *= net.cpts[m][net.graph.config_index(torch.from_numpy(x), m).numpy(), x[:, m]]
    for row, p in zip(x, ours):
        states = {n: net.state_names[m][row[m]] for m, n in enumerate(net.names)}
        assert model.get_state_probability(states) == pytest.approx(p, rel=1e-12)


def test_pgmpy_layout_with_unsorted_parents():
    # parents Z, A (not alphabetical), multi-valued: pgmpy's column order must follow evidence order
    g = Graph.from_edges(["Z", "A", "C"], [("Z", "C"), ("A", "C")], {"Z": 3, "A": 2, "C": 4},
                         parent_order={"C": ["Z", "A"]})
    cpts = DirichletPrior(1.0).sample(g, 1, torch.Generator().manual_seed(0))
    net = BayesNet(g, tuple(c[0].numpy() for c in cpts))
    cpd = to_pgmpy(net).get_cpds("C")
    assert cpd.variables == ["C", "Z", "A"]
    for z, a, c in itertools.product(range(3), range(2), range(4)):
        assert cpd.get_value(C=str(c), Z=str(z), A=str(a)) == net.cpts[2][z * 2 + a, c]
    back = from_pgmpy(to_pgmpy(net))
    assert back.graph == g and all(np.array_equal(x, y) for x, y in zip(back.cpts, net.cpts))


# ----- spec and BIF -------------------------------------------------------
SPEC_YAML = """
nodes:
  Rain:      {states: [no, yes], cpt: [[0.8, 0.2]]}
  Sprinkler: {states: [off, on], parents: [Rain], cpt: [[0.6, 0.4], [0.99, 0.01]]}
  Wet:
    states: [dry, damp, soaked]
    parents: [Sprinkler, Rain]
    cpt: [[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.0, 0.1, 0.9]]
"""


def test_yaml_and_json_spec(tmp_path):
    path = tmp_path / "wet.yaml"
    path.write_text(SPEC_YAML)
    net = load_spec(path)
    g = net.graph
    assert g.names == ("Rain", "Sprinkler", "Wet")
    assert [g.names[p] for p in g.parents[2]] == ["Sprinkler", "Rain"]
    assert net.state_names[2] == ("dry", "damp", "soaked")
    # row order: last parent (Rain) fastest -> row 1 is Sprinkler=off, Rain=yes
    assert net.cpts[2][1].tolist() == [0.2, 0.5, 0.3]
    jpath = tmp_path / "wet.json"
    jpath.write_text(json.dumps(to_spec(net)))
    back = load_spec(jpath)
    assert back.graph == g and all(np.array_equal(a, b) for a, b in zip(back.cpts, net.cpts))
    assert back.state_names == net.state_names


def test_spec_without_cpts_draws_from_prior_reproducibly(tmp_path):
    spec = {"nodes": {"A": {"card": 3}, "B": {"parents": ["A"]}}}
    a, b, c = load_spec(spec, seed=1), load_spec(spec, seed=1), load_spec(spec, seed=2)
    assert a.cpts[1].shape == (3, 2)
    assert np.array_equal(a.cpts[1], b.cpts[1]) and not np.array_equal(a.cpts[1], c.cpts[1])


def test_bad_specs(tmp_path):
    one_line_error(lambda: load_spec({"nodes": {"A": {"cpt": [[0.5, 0.2, 0.3]]}}}), "'A'", "entries")
    one_line_error(lambda: load_spec({"nodes": {"A": {"cpt": [[0.5, 0.6]]}}}), "'A'", "sums to")
    one_line_error(lambda: load_spec({"nodes": {"A": {"colour": 1}}}), "unknown keys")
    one_line_error(lambda: load_spec({"nodes": {"A": {"parents": ["B"]}, "B": {"parents": ["A"]}}}), "cycle")
    one_line_error(lambda: load_spec({"nodes": {}}), "nodes")
    one_line_error(lambda: load_spec(tmp_path / "missing.yaml"), "not found")


BIF = """network tiny {
}
variable Cloudy {
  type discrete [ 2 ] { no, yes };
}
variable Rain {
  type discrete [ 3 ] { none, light, heavy };
}
variable Wet {
  type discrete [ 2 ] { F, T };
}
probability ( Cloudy ) {
  table 0.6, 0.4;
}
probability ( Rain | Cloudy ) {
  (no) 0.7, 0.2, 0.1;
  (yes) 0.2, 0.5, 0.3;
}
probability ( Wet | Rain, Cloudy ) {
  (none, no) 0.95, 0.05;
  (none, yes) 0.9, 0.1;
  (light, no) 0.4, 0.6;
  (light, yes) 0.35, 0.65;
  (heavy, no) 0.1, 0.9;
  (heavy, yes) 0.05, 0.95;
}
"""


def test_bif_file_and_gz(tmp_path):
    path = tmp_path / "tiny.bif"
    path.write_text(BIF)
    gz = tmp_path / "tiny.bif.gz"
    gz.write_bytes(gzip.compress(BIF.encode()))
    for src in (path, gz, BIF):
        net = load_bif(src)
        g = net.graph
        assert g.names == ("Cloudy", "Rain", "Wet") and g.cards == (2, 3, 2)
        assert [g.names[p] for p in g.parents[2]] == ["Rain", "Cloudy"]
        assert net.state_names[1] == ("none", "light", "heavy")
        assert net.cpts[1].tolist() == [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]
        assert net.cpts[2][:, 1].tolist() == [0.05, 0.1, 0.6, 0.65, 0.9, 0.95]
    one_line_error(lambda: load_bif(tmp_path / "nope.bif"), "not found")


# ----- priors -------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.3, 1.0, 4.0])
def test_dirichlet_prior_moments(alpha):
    g = Graph.from_edges(["A", "B", "C"], [("A", "C"), ("B", "C")], {"A": 3, "B": 2, "C": 3})
    cpts = DirichletPrior(alpha).sample(g, 3000, torch.Generator().manual_seed(0))
    rows = cpts[2].reshape(-1, 3).numpy()  # 18000 rows of Dirichlet(alpha, alpha, alpha)
    assert np.allclose(rows.sum(1), 1) and (rows > 0).all()
    d = 3
    var = (1 / d) * (1 - 1 / d) / (d * alpha + 1)
    se_mean = math.sqrt(var / len(rows))
    assert np.abs(rows.mean(0) - 1 / d).max() < 5 * se_mean
    assert np.allclose(rows.var(0), var, rtol=0.06)
    # covariance between entries of one row: -(1/d^2) / (d alpha + 1)
    cov = np.cov(rows[:, 0], rows[:, 1])[0, 1]
    assert cov == pytest.approx(-(1 / d**2) / (d * alpha + 1), rel=0.1)


def test_uniform_range_prior_bounds():
    g = Graph.from_edges(["A", "B"], [("A", "B")], {"A": 2, "B": 3})
    cpts = UniformRangePrior(0.1, 0.9).sample(g, 5000, torch.Generator().manual_seed(0))
    a, b = cpts[0].reshape(-1, 2), cpts[1].reshape(-1, 3)
    assert a.min() >= 0.1 and a.max() <= 0.9 and torch.allclose(a.sum(-1), torch.ones(len(a), dtype=a.dtype))
    assert a[:, 0].min() < 0.11 and a[:, 0].max() > 0.89  # fills the range
    assert abs(a[:, 0].mean().item() - 0.5) < 0.01
    assert torch.allclose(b.sum(-1), torch.ones(len(b), dtype=b.dtype))
    assert b.min() >= 0.1 / (0.1 + 2 * 0.9) and b.max() <= 0.9 / (0.9 + 2 * 0.1)
    one_line_error(lambda: UniformRangePrior(0.5, 0.2), "low < high")
    one_line_error(lambda: make_prior("beta"), "unknown prior")
    one_line_error(lambda: DirichletPrior(0.0), "alpha")


def test_priors_are_seeded():
    g = get_graph("general-5")
    for prior in (DirichletPrior(0.5), UniformRangePrior()):
        draw = lambda s, prior=prior: prior.sample(g, 4, torch.Generator().manual_seed(s))
        assert all(torch.equal(x, y) for x, y in zip(draw(3), draw(3)))
        assert not all(torch.equal(x, y) for x, y in zip(draw(3), draw(4)))


# ----- sampler ------------------------------------------------------------
def test_sampler_is_reproducible():
    g = get_graph("tree-7")
    cpts = DirichletPrior(1.0).sample(g, 3, torch.Generator().manual_seed(0))
    x = sample(g, cpts, 50, torch.Generator().manual_seed(7))
    assert x.shape == (3, 50, 7) and x.dtype == torch.long
    assert torch.equal(x, sample(g, cpts, 50, torch.Generator().manual_seed(7)))
    assert not torch.equal(x, sample(g, cpts, 50, torch.Generator().manual_seed(8)))


def test_draw_categorical_never_picks_zero_probability_states():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]], dtype=torch.float64).expand(1001, 5)
    u = torch.linspace(0, 1 - 1e-12, 1001, dtype=torch.float64)
    x = draw_categorical(probs, u)
    assert set(x.tolist()) == {1, 3}
    assert (x[u < 0.5] == 1).all() and (x[u >= 0.5] == 3).all()


@pytest.mark.parametrize("name", ["survey", "general-5"])
def test_sampler_matches_exact_joint(name):
    net = load_network(name, seed=3)
    g = net.graph
    states, p = exact_joint(g, list(net.cpts))
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    x = net.sample(200_000, seed=11)
    # fixed seed, false-alarm rate 1e-3 per test
    assert gof_pvalue(joint_counts(g, x), p) > 1e-3
    # and per-node marginals within 5 standard errors
    for m in range(g.n_nodes):
        for v in range(g.cards[m]):
            pm = p[states[:, m] == v].sum()
            assert abs((x[:, m] == v).double().mean().item() - pm) < 5 * math.sqrt(pm * (1 - pm) / len(x)) + 1e-12


def test_batched_sampler_uses_each_cpt_set():
    g = Graph.from_edges(["A", "B"], [("A", "B")], {"A": 2, "B": 3})
    cpts = DirichletPrior(1.0).sample(g, 3, torch.Generator().manual_seed(5))
    x = sample(g, cpts, 60_000, torch.Generator().manual_seed(6))
    for i in range(3):
        _, p = exact_joint(g, [c[i].numpy() for c in cpts])
        assert gof_pvalue(joint_counts(g, x[i]), p) > 1e-3


def test_sample_with_uniforms_couples_samplers():
    g = get_graph("chain-5")
    cpts = DirichletPrior(1.0).sample(g, 2, torch.Generator().manual_seed(0))
    u = torch.rand(2, 100, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = sample_with_uniforms(g, cpts, u)
    assert torch.equal(x, sample_with_uniforms(g, cpts, u))
    # node m is the inverse-CDF draw from its CPT row at the sampled parent value
    for m in range(5):
        rows = cpts[m][torch.arange(2)[:, None], g.config_index(x, m)]
        assert torch.equal(x[..., m], draw_categorical(rows, u[..., m]))
