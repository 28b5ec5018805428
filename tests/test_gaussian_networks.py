"""Linear-Gaussian networks: specs, the pgmpy round trip, the real networks, families, and the
sampler, joint and Pyro model checked against pgmpy and the joint Normal."""
from __future__ import annotations

import inspect
import json
import math
import textwrap

import networkx as nx
import numpy as np
import pytest
import torch
import yaml
from pyro import poutine

from bncompare.errors import BNError
from bncompare.networks.families import available, get_graph, is_real, load_network, random_dag
from bncompare.networks.gaussian import GaussianNet, joint_gaussian, sample_gaussian
from bncompare.networks.gaussian_families import as_gaussian, network_variables
from bncompare.networks.gaussian_io import (
    REAL_GAUSSIAN_NETWORKS,
    from_pgmpy,
    gaussian_spec_structure,
    load_gaussian_network,
    load_gaussian_spec,
    read_spec,
    spec_variables,
    to_gaussian_spec,
    to_pgmpy,
)
from bncompare.networks.io import parse_spec_text
from bncompare.networks.pyro_gaussian import gaussian_model

REAL_COUNTS = {"ecoli70": (46, 70), "magic-niab": (44, 66), "magic-irri": (64, 102), "arth150": (107, 150)}


def random_net(seed: int, n: int = 7, p: float = 0.5) -> GaussianNet:
    """A random DAG with sigmas far from 1 (0.2..0.5 or 2..4), so std and variance differ a lot."""
    graph = as_gaussian(random_dag(n, p, seed=seed))
    rng = np.random.default_rng(seed)
    sigmas = [float(rng.uniform(0.2, 0.5) if rng.random() < 0.5 else rng.uniform(2.0, 4.0)) for _ in graph.names]
    return GaussianNet(graph, tuple(float(v) for v in rng.normal(0, 2, graph.n_nodes)),
                       tuple(tuple(float(v) for v in rng.uniform(-1.2, 1.2, len(pa))) for pa in graph.parents),
                       tuple(sigmas))


def bits(net: GaussianNet) -> tuple:
    """Everything a network is, floats as their exact hex form."""
    return (net.names, net.graph.parents, net.graph.variables, [b.hex() for b in net.intercepts],
            [[w.hex() for w in ws] for ws in net.weights], [s.hex() for s in net.sigmas])


def by_name(net: GaussianNet) -> dict:
    g = net.graph
    return {n: ([g.names[p] for p in g.parents[m]], net.intercepts[m].hex(), [w.hex() for w in net.weights[m]],
                net.sigmas[m].hex()) for m, n in enumerate(g.names)}


# ----- specs ---------------------------------------------------------------------------------

def spec(**nodes):
    return {"variables": "gaussian", "nodes": nodes}


BAD_SPECS = [
    (spec(A={"parents": ["B"], "weights": [1.0], "intercept": 0, "sigma": 1},
          B={"parents": ["A"], "weights": [1.0], "intercept": 0, "sigma": 1}), r"cycle: (A -> B -> A|B -> A -> B)"),
    (spec(A={"parents": ["B"]}, B={"parents": ["C"]}, C={"parents": ["A"]}), r"cycle"),
    (spec(A={"intercept": 0.0, "sigma": 0.0}), r"node 'A': sigma must be > 0"),
    (spec(A={"intercept": 0.0, "sigma": -1.0}), r"node 'A': sigma must be > 0"),
    (spec(A={"intercept": 0, "sigma": 1}, B={"parents": ["A"], "weights": [float("nan")], "intercept": 0, "sigma": 1}),
     r"node 'B': weight of A must be finite"),
    (spec(A={"intercept": float("inf"), "sigma": 1}), r"node 'A': intercept must be finite"),
    (spec(A={"intercept": 0, "sigma": 1}, B={"parents": ["A"], "weights": [1.0, 2.0], "intercept": 0, "sigma": 1}),
     r"node 'B' has 2 weights for 1 parents"),
    (spec(A={"intercept": 0, "sigma": 1}, B={"weights": {"A": 1.0, "Z": 2.0}, "intercept": 0, "sigma": 1}),
     r"node 'B': unknown parent 'Z'"),
    (spec(A={"intercept": 0, "sigma": 1}, B={"parents": ["Z"]}), r"node 'B': unknown parent 'Z'"),
    (spec(A={"intercept": 0, "sigma": 1, "mean": 3}), r"node 'A': unknown keys \['mean'\]"),
    (spec(A={"intercept": 0, "sigma": 1}, B={"parents": ["A"], "weights": {"C": 1.0}, "intercept": 0, "sigma": 1},
          C={}), r"node 'B': weights name \['C'\], but its parents are \['A'\]"),
    (spec(A={"intercept": 0}), r"node 'A' gives intercept but not sigma"),
    (spec(A={"intercept": "1.0", "sigma": 1}), r"node 'A': intercept must be a number"),
    (spec(A={"intercept": True, "sigma": 1}), r"node 'A': intercept must be a number"),
    (spec(A={"parents": ["A"]}), r"self-loop on node 'A'"),
    (spec(A={}, B={"parents": ["A", "A"]}), r"node 'B' lists parent 'A' twice"),
    ({"variables": "continuous", "nodes": {"A": {}}}, r"variables must be discrete or gaussian, got 'continuous'"),
    ({"variables": "discrete", "nodes": {"A": {}}}, r"needs 'variables: gaussian'"),
    ({"variables": "gaussian", "nodes": {"A": {}}, "seed": 3}, r"unknown keys \['seed'\]"),
    ({"variables": "gaussian", "nodes": {}}, r"non-empty 'nodes'"),
]


@pytest.mark.parametrize("bad,message", BAD_SPECS)
def test_bad_specs_are_one_line_errors(bad, message):
    for read in (load_gaussian_spec, gaussian_spec_structure):
        with pytest.raises(BNError, match=message) as err:
            read(bad)
        assert "\n" not in str(err.value)


def test_spec_example_and_weight_forms():
    net = load_gaussian_spec(spec(C={"weights": {"B": 0.3, "A": -1.0}, "intercept": 1.0, "sigma": 2.0},
                                  A={"intercept": 0.5, "sigma": 1.0},
                                  B={"parents": ["A"], "weights": [2.0], "intercept": 0.0, "sigma": 0.5}))
    assert net.names == ("A", "B", "C")  # topological, stable with respect to the spec's order
    assert [[net.names[p] for p in pa] for pa in net.graph.parents] == [[], ["A"], ["B", "A"]]  # mapping order
    assert net.weights == ((), (2.0,), (0.3, -1.0)) and net.intercepts == (0.5, 0.0, 1.0)
    assert net.sigmas == (1.0, 0.5, 2.0)
    same = load_gaussian_spec(spec(A={"intercept": 0.5, "sigma": 1.0},
                                   B={"parents": ["A"], "weights": {"A": 2.0}, "intercept": 0.0, "sigma": 0.5},
                                   C={"parents": ["B", "A"], "weights": [0.3, -1.0], "intercept": 1, "sigma": 2}))
    assert bits(same) == bits(net)
    given_order = load_gaussian_spec(spec(A={"intercept": 0, "sigma": 1}, B={"intercept": 0, "sigma": 1},
                                          C={"parents": ["A", "B"], "weights": {"B": 0.3, "A": -1.0},
                                             "intercept": 0, "sigma": 1}))
    assert given_order.weights[2] == (-1.0, 0.3)  # a mapping is read in the order of 'parents'


def test_spec_round_trip_exact_through_dict_json_and_yaml(tmp_path):
    for seed in range(5):
        net = random_net(seed, n=8)
        data = to_gaussian_spec(net)
        assert spec_variables(data) == "gaussian"
        assert bits(load_gaussian_spec(data)) == bits(net)
        assert bits(load_gaussian_spec(parse_spec_text(json.dumps(data), True))) == bits(net)
        assert bits(load_gaussian_spec(parse_spec_text(yaml.safe_dump(data), False))) == bits(net)
        assert gaussian_spec_structure(data) == net.graph
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(to_gaussian_spec(random_net(9))))
    assert bits(load_gaussian_spec(path)) == bits(random_net(9)) == bits(load_gaussian_spec(read_spec(path)))


def test_structure_only_spec():
    data = spec(X={}, Y={"parents": ["X"]}, Z={"parents": ["X", "Y"]})
    graph = gaussian_spec_structure(data)
    assert graph.variables == "gaussian" and graph.cards == (1, 1, 1)
    assert graph.names == ("X", "Y", "Z") and graph.parents == ((), (0,), (0, 1))
    drawn = load_gaussian_spec(data, seed=4)  # parameters from the NIG prior, seeded
    assert drawn.graph == graph and bits(drawn) == bits(load_gaussian_spec(data, seed=4))
    assert bits(drawn) != bits(load_gaussian_spec(data, seed=5))


def test_spec_variables_dispatch():
    assert spec_variables({"nodes": {"A": {"states": ["no", "yes"]}}}) == "discrete"
    assert spec_variables({"variables": "discrete", "nodes": {}}) == "discrete"
    assert spec_variables(spec(A={})) == "gaussian"
    assert spec_variables([1, 2]) == "discrete"  # not a spec at all: the discrete reader says why
    with pytest.raises(BNError, match="variables must be discrete or gaussian"):
        spec_variables({"variables": "Gaussian", "nodes": {}})


# ----- pgmpy round trip and the real networks ------------------------------------------------

def test_pgmpy_round_trip_exact_on_random_dags():
    for seed in range(20):
        net = random_net(seed, n=int(3 + seed % 8), p=0.6)
        model = to_pgmpy(net)
        assert model.check_model()
        for m, name in enumerate(net.names):
            cpd = model.get_cpds(name)
            assert cpd.evidence == [net.names[p] for p in net.graph.parents[m]]
            assert [float(v).hex() for v in cpd.beta] == [v.hex() for v in (net.intercepts[m], *net.weights[m])]
            assert float(cpd.std).hex() == net.sigmas[m].hex()  # the standard deviation, not the variance
        assert bits(from_pgmpy(model)) == bits(net)


def test_from_pgmpy_reads_parent_order_from_the_cpd_evidence():
    from pgmpy.factors.continuous import LinearGaussianCPD
    from pgmpy.models import LinearGaussianBayesianNetwork

    model = LinearGaussianBayesianNetwork([("B", "C"), ("A", "C")])  # edges in the other order
    model.add_cpds(LinearGaussianCPD("A", [1.0], 0.5), LinearGaussianCPD("B", [-1.0], 2.0),
                   LinearGaussianCPD("C", [0.25, 3.0, -7.0], 1.5, ["A", "B"]))
    net = from_pgmpy(model)
    c = net.names.index("C")
    assert [net.names[p] for p in net.graph.parents[c]] == ["A", "B"] and net.weights[c] == (3.0, -7.0)
    assert to_pgmpy(net).get_cpds("C").evidence == ["A", "B"]
    bare = LinearGaussianBayesianNetwork([("A", "B")])
    bare.add_cpds(LinearGaussianCPD("A", [1.0], 0.5))
    with pytest.raises(BNError, match="node 'B' has no LinearGaussianCPD"):
        from_pgmpy(bare)


def pgmpy_file_model(name):
    from importlib import resources

    from pgmpy.models import LinearGaussianBayesianNetwork

    path = resources.files("pgmpy") / "utils" / "example_models" / f"{name}.json"
    return LinearGaussianBayesianNetwork.load(str(path))


@pytest.mark.parametrize("name", REAL_GAUSSIAN_NETWORKS)
def test_real_networks_load_and_round_trip(name):
    net = load_gaussian_network(name)
    assert (net.graph.n_nodes, len(net.graph.edges)) == REAL_COUNTS[name]
    assert net.graph.variables == "gaussian" and is_real(name) and network_variables(name) == "gaussian"
    assert get_graph(name) == net.graph and load_network(name) is net
    model = pgmpy_file_model(name)  # pgmpy's own reader of the same file
    assert by_name(from_pgmpy(model)) == by_name(net)
    assert bits(from_pgmpy(to_pgmpy(net))) == bits(net)
    back = to_pgmpy(from_pgmpy(model))  # pgmpy -> ours -> pgmpy
    assert set(back.nodes()) == set(model.nodes()) and set(back.edges()) == set(model.edges())
    for node in model.nodes():
        a, b = model.get_cpds(node), back.get_cpds(node)
        assert a.evidence == b.evidence and float(a.std).hex() == float(b.std).hex()
        assert [float(v).hex() for v in a.beta] == [float(v).hex() for v in b.beta]


def test_ecoli70_reads_variance_as_sigma_squared():
    net = load_gaussian_network("ecoli70")
    m = net.names.index("aceB")  # the file: aceB = 0.1324 + 1.0464 icdA, "variance" 0.0853
    assert net.intercepts[m] == 0.1324 and net.weights[m] == (1.0464,) and net.sigmas[m] == math.sqrt(0.0853)


# ----- the sampler and the joint against pgmpy -----------------------------------------------

def pgmpy_joint(model, names):
    """pgmpy's to_joint_gaussian in the order ``names`` (it returns its own topological order)."""
    mean, cov = model.to_joint_gaussian()
    order = [list(nx.topological_sort(model)).index(n) for n in names]
    return mean[order], cov[np.ix_(order, order)]


def joint_agrees(net: GaussianNet, model) -> bool:
    """Our joint equals pgmpy's to 1e-10 once rounded as pgmpy rounds its output (to 8 decimals)."""
    mean, cov = (t[0].numpy() for t in joint_gaussian(net.graph, net.params()))
    p_mean, p_cov = pgmpy_joint(model, net.names)
    return bool(np.allclose(mean.round(8), p_mean, rtol=0, atol=1e-10)
                and np.allclose(cov.round(8), p_cov, rtol=0, atol=1e-10))


def test_joint_matches_pgmpy_to_joint_gaussian():
    for seed in range(15):
        net = random_net(seed, n=6 + seed % 5, p=0.6)
        assert joint_agrees(net, to_pgmpy(net)), seed
    for name in REAL_GAUSSIAN_NETWORKS:
        assert joint_agrees(load_gaussian_network(name), pgmpy_file_model(name)), name


def test_joint_check_fails_on_pgmpy_with_std_as_variance(monkeypatch):
    """The old pgmpy bug (std used as the variance in to_joint_gaussian), planted in a copy of the
    installed method: the check above must then fail."""
    from pgmpy.models import LinearGaussianBayesianNetwork

    source = textwrap.dedent(inspect.getsource(LinearGaussianBayesianNetwork.to_joint_gaussian))
    if source.count("(cpd.std) ** 2") != 1:
        pytest.skip("the installed pgmpy writes to_joint_gaussian differently; plant the bug by hand")
    scope = dict(inspect.getmodule(LinearGaussianBayesianNetwork).__dict__)
    exec(source.replace("(cpd.std) ** 2", "cpd.std"), scope)  # noqa: S102  pgmpy's own code, one token changed
    monkeypatch.setattr(LinearGaussianBayesianNetwork, "to_joint_gaussian", scope["to_joint_gaussian"])
    net = random_net(0, n=6, p=0.6)
    assert not joint_agrees(net, to_pgmpy(net))


def moments_agree(x: np.ndarray, y: np.ndarray, z: float = 5.0) -> bool:
    """Two samples with the same mean and covariance, within z Monte Carlo standard errors."""
    nx_, ny = len(x), len(y)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    se_mean = np.sqrt(np.diag(sx) / nx_ + np.diag(sy) / ny)
    d = np.sqrt(np.diag(sx))
    s = (sx + sy) / 2  # Var of a sample covariance entry ~ (s_ii s_jj + s_ij^2) / n
    se_cov = np.sqrt((np.outer(d, d) ** 2 + s**2) * (1 / nx_ + 1 / ny))
    return bool((np.abs(x.mean(0) - y.mean(0)) < z * se_mean).all() and (np.abs(sx - sy) < z * se_cov).all())


def test_sampler_matches_pgmpy_simulate():
    for net, n in ((random_net(3, n=6, p=0.7), 4000), (load_gaussian_network("ecoli70"), 4000)):
        ours = net.sample(n, seed=1).numpy()
        theirs = to_pgmpy(net).simulate(n, seed=2)[list(net.names)].to_numpy()
        assert moments_agree(ours, theirs)
        # the check is sharp: a sampler that read sigma as the variance fails it
        wrong = [p.clone() for p in net.params()]
        for p in wrong:
            p[:, -1] = p[:, -1] ** 2
        planted = sample_gaussian(net.graph, wrong, n, torch.Generator().manual_seed(1))[0].numpy()
        assert not moments_agree(planted, theirs)


# ----- the Pyro model ---------------------------------------------------------------------

def test_pyro_model_log_density_is_the_joint_normal():
    for seed in range(4):
        net = random_net(seed, n=6, p=0.6)
        x = net.sample(50, seed=seed)
        trace = poutine.trace(gaussian_model).get_trace(net.graph, net.params(), data=x)
        mean, cov = joint_gaussian(net.graph, net.params())
        joint = torch.distributions.MultivariateNormal(mean[0], cov[0]).log_prob(x).sum()
        assert torch.allclose(trace.log_prob_sum(), joint, rtol=1e-10, atol=1e-8)
    drawn = poutine.trace(gaussian_model).get_trace(net.graph, net, n=7)
    assert drawn.nodes["_RETURN"]["value"].shape == (7, net.graph.n_nodes)
    assert drawn.nodes[f"x_{net.names[0]}"]["is_observed"] is False
    with pytest.raises(BNError, match="observed data or a number of rows"):
        gaussian_model(net.graph, net)


# ----- families --------------------------------------------------------------------------

def test_gaussian_families_have_the_discrete_structures():
    for fam in ("chain", "tree", "general"):
        for n in (5, 7, 10):
            g, d = get_graph(f"gaussian-{fam}-{n}"), get_graph(f"{fam}-{n}")
            assert (g.names, g.parents, g.variables, set(g.cards)) == (d.names, d.parents, "gaussian", {1})
            assert f"gaussian-{fam}-{n}" in available() and not is_real(f"gaussian-{fam}-{n}")
        assert get_graph(f"gaussian-{fam}") == get_graph(f"gaussian-{fam}-7")
    for seed in range(3):
        g, d = get_graph("gaussian-random-9", seed=seed), get_graph("random-9", seed=seed)
        assert (g.names, g.parents) == (d.names, d.parents) and g.variables == "gaussian"
    assert {"gaussian-random-N", *REAL_GAUSSIAN_NETWORKS} <= set(available())
    assert network_variables("tree") == "discrete" and network_variables("Gaussian-Tree") == "gaussian"
    net = load_network("gaussian-tree", seed=2)  # parameters drawn from the NIG prior
    assert isinstance(net, GaussianNet) and net.graph == get_graph("gaussian-tree")
    assert bits(net) == bits(load_network("gaussian-tree", seed=2))
    for bad, message in (("gaussian-tree-6", "tree comes in sizes"), ("gaussian-foo", "unknown Gaussian network"),
                         ("ecoli70-5", "unknown network")):
        with pytest.raises(BNError, match=message):
            get_graph(bad)
    with pytest.raises(BNError, match="no card option"):
        get_graph("gaussian-chain", card=3)
