"""Linear-Gaussian networks in and out: pgmpy models, the real networks in pgmpy's wheel, YAML/JSON specs.

pgmpy: :func:`to_pgmpy` / :func:`from_pgmpy` convert a :class:`GaussianNet` to and from a
``pgmpy.models.LinearGaussianBayesianNetwork`` whose ``LinearGaussianCPD`` holds
``beta = [intercept, weights in the graph's parent order]`` and the standard deviation ``std``.
Both directions keep names, parent order and every float bit for bit.

Real networks: :func:`load_gaussian_network` reads ecoli70, magic-niab, magic-irri and arth150
offline from the JSON files bundled in pgmpy (``pgmpy/utils/example_models/``).

A spec for your own network (YAML or JSON; ``variables: gaussian`` marks it as linear-Gaussian,
``weights`` follow ``parents``, or map parent -> weight)::

    variables: gaussian
    nodes:
      A: {intercept: 0.5, sigma: 1.0}
      B: {parents: [A], weights: [2.0], intercept: 0.0, sigma: 0.5}
      C: {weights: {A: -1.0, B: 0.3}, intercept: 1.0, sigma: 2.0}   # parents from the mapping
      D: {parents: [C]}    # no parameters: drawn from a prior by load_gaussian_spec(..., seed=...)

A spec whose nodes carry no parameters at all is a structure (:func:`gaussian_spec_structure`),
for ``truth=prior``. Reading is data-only (``io.read_text`` and ``io.parse_spec_text``: safe YAML,
JSON, duplicate keys refused); every problem is a one-line BNError naming the node and field.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path

from bncompare.errors import BNError
from bncompare.networks.gaussian import GaussianNet
from bncompare.networks.graph import Graph
from bncompare.networks.io import parse_spec_text, read_text

REAL_GAUSSIAN_NETWORKS = ("ecoli70", "magic-niab", "magic-irri", "arth150")
PARAMETER_KEYS = ("intercept", "weights", "sigma")
NODE_KEYS = ("parents", *PARAMETER_KEYS)
SPEC_KEYS = ("variables", "nodes", "name")


# ----- pgmpy -------------------------------------------------------------------------------

def to_pgmpy(net: GaussianNet):
    """A ``pgmpy.models.LinearGaussianBayesianNetwork`` with the same parameters.

    Each node's ``LinearGaussianCPD`` has ``beta = [intercept, w_1, .., w_k]`` with the evidence
    in the graph's parent order, and ``std = sigma`` (pgmpy takes the standard deviation).
    """
    from pgmpy.factors.continuous import LinearGaussianCPD
    from pgmpy.models import LinearGaussianBayesianNetwork

    g = net.graph
    model = LinearGaussianBayesianNetwork()
    model.add_nodes_from(g.names)
    model.add_edges_from(g.edges)
    cpds = [LinearGaussianCPD(name, [net.intercepts[m], *net.weights[m]], net.sigmas[m],
                              [g.names[p] for p in g.parents[m]])
            for m, name in enumerate(g.names)]
    model.add_cpds(*cpds)
    return model


def from_pgmpy(model) -> GaussianNet:
    """The exact inverse of :func:`to_pgmpy`: parent order from each CPD's evidence, floats unchanged.

    The node order becomes a topological order, stable with respect to ``model.nodes()``.
    """
    from pgmpy.factors.continuous import LinearGaussianCPD

    nodes = [str(n) for n in model.nodes()]
    cpds = {}
    for n in model.nodes():
        cpd = model.get_cpds(n)
        if not isinstance(cpd, LinearGaussianCPD):
            raise BNError(f"pgmpy model: node {str(n)!r} has no LinearGaussianCPD (got {type(cpd).__name__})")
        evidence = [str(v) for v in cpd.evidence]
        graph_parents = sorted(str(p) for p in model.get_parents(n))
        if sorted(evidence) != graph_parents:
            raise BNError(f"pgmpy model: the CPD of node {str(n)!r} has evidence {evidence}, "
                          f"but its parents in the graph are {graph_parents}")
        if len(cpd.beta) != len(evidence) + 1:
            raise BNError(f"pgmpy model: node {str(n)!r} has {len(cpd.beta)} coefficients (beta) for "
                          f"{len(evidence)} parents; expected the intercept and one per parent")
        cpds[str(n)] = (evidence, cpd.beta, cpd.std)
    order = {n: cpds[n][0] for n in nodes}
    graph = Graph.from_edges(nodes, [(p, n) for n, pa in order.items() for p in pa], parent_order=order,
                             variables="gaussian")
    rows = [cpds[n] for n in graph.names]
    return GaussianNet(graph, tuple(float(beta[0]) for _, beta, _ in rows),
                       tuple(tuple(float(v) for v in beta[1:]) for _, beta, _ in rows),
                       tuple(_number(std, n, "std") for n, (_, _, std) in zip(graph.names, rows)))


# ----- the real networks in pgmpy's wheel ---------------------------------------------------

@cache
def load_gaussian_network(name: str) -> GaussianNet:
    """ecoli70, magic-niab, magic-irri or arth150, read offline from pgmpy's bundled JSON.

    The std-versus-variance convention, checked: bnlearn documents a Gaussian node
    (``bn.fit.gnode``) by its regression coefficients and ``sd``, the standard deviation of the
    residuals. pgmpy's JSON files store per node ``coefficients`` (``(Intercept)`` and one per
    parent), ``parents`` and ``variance``; pgmpy's converter from bnlearn objects
    (``devtools/scripts/convert_bnrep_models.R`` in pgmpy's repository) writes
    ``variance = sd^2``, pgmpy's reader takes ``std = sqrt(variance)`` and its writer stores
    ``std ** 2``. So ``sigma = sqrt(variance)`` here, exactly the sigma of
    ``from_pgmpy(LinearGaussianBayesianNetwork.load(file))`` (e.g. ecoli70 aceB: variance 0.0853,
    sigma 0.2921). Every number in the files has 4 decimals (R's jsonlite rounds to 4 by default),
    so the parameters are bnlearn's to about 4 decimals (the smallest variance, 0.0166 in
    magic-irri, to 0.3%). The arcs of the file are checked against the parents of its CPDs.
    """
    if name not in REAL_GAUSSIAN_NETWORKS:
        raise BNError(f"unknown Gaussian network {name!r}; the bundled ones are {', '.join(REAL_GAUSSIAN_NETWORKS)}")
    path = resources.files("pgmpy") / "utils" / "example_models" / f"{name}.json"
    if not path.is_file():
        raise BNError(f"pgmpy's bundled {name}.json is missing from this install")
    return _network_from_bnlearn_json(json.loads(path.read_text("utf-8")), name)


def _network_from_bnlearn_json(data: dict, where: str) -> GaussianNet:
    nodes = [str(n) for n in data["nodes"]]
    cpds = data["cpds"]
    if sorted(cpds) != sorted(nodes):
        raise BNError(f"{where}: the CPDs do not name the same nodes as the node list")
    parents = {n: [str(p) for p in cpds[n]["parents"]] for n in nodes}
    arcs = sorted((str(u), str(v)) for u, v in data["arcs"])
    if arcs != sorted((p, n) for n, pa in parents.items() for p in pa):
        raise BNError(f"{where}: the arcs do not match the parents of the CPDs")
    graph = Graph.from_edges(nodes, arcs, parent_order=parents, variables="gaussian")
    intercepts, weights, sigmas = [], [], []
    for n in graph.names:
        coef = cpds[n]["coefficients"]
        intercepts.append(_number(coef["(Intercept)"][0], n, "intercept"))
        weights.append(tuple(_number(coef[p][0], n, f"weight of {p}") for p in parents[n]))
        sigmas.append(math.sqrt(_number(cpds[n]["variance"][0], n, "variance")))
    return GaussianNet(graph, tuple(intercepts), tuple(weights), tuple(sigmas))


# ----- YAML / JSON spec ---------------------------------------------------------------------

def read_spec(path) -> dict:
    """A YAML or JSON network spec file as data (``.json`` is JSON, anything else YAML)."""
    path = Path(path)
    return parse_spec_text(read_text(path, "network spec"), path.suffix == ".json", path)


def spec_variables(data) -> str:
    """``"gaussian"`` when a parsed spec says ``variables: gaussian``, else ``"discrete"``."""
    if not isinstance(data, Mapping) or "variables" not in data:
        return "discrete"
    kind = data["variables"]
    if kind not in ("discrete", "gaussian"):
        raise BNError(f"network spec: variables must be discrete or gaussian, got {kind!r}")
    return kind


def _spec_nodes(data) -> dict:
    if isinstance(data, (str, Path)):
        data = read_spec(data)
    if not isinstance(data, Mapping):
        raise BNError("network spec must be a mapping with a 'nodes' mapping")
    if spec_variables(data) != "gaussian":
        raise BNError("network spec: not a linear-Gaussian spec (it needs 'variables: gaussian')")
    unknown = sorted(str(k) for k in set(data) - set(SPEC_KEYS))
    if unknown:
        raise BNError(f"network spec: unknown keys {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    nodes = data.get("nodes")
    if not isinstance(nodes, Mapping) or not nodes:
        raise BNError("network spec needs a non-empty 'nodes' mapping")
    out = {}
    for n, body in nodes.items():
        body = {} if body is None else body
        if not isinstance(body, Mapping):
            raise BNError(f"spec for node {str(n)!r} must be a mapping, got {body!r}")
        unknown = sorted(str(k) for k in set(body) - set(NODE_KEYS))
        if unknown:
            raise BNError(f"node {str(n)!r}: unknown keys {unknown}; allowed: {', '.join(NODE_KEYS)}")
        out[str(n)] = body
    return out


def _parents(name: str, body: Mapping, names: list[str]) -> list[str]:
    given, weights = body.get("parents"), body.get("weights")
    if given is None:
        given = list(weights) if isinstance(weights, Mapping) else []
    if not isinstance(given, list):
        raise BNError(f"node {name!r}: parents must be a list, got {given!r}")
    pa = [str(p) for p in given]
    for p in pa:
        if p not in names:
            raise BNError(f"node {name!r}: unknown parent {p!r}; nodes are {names}")
    twice = sorted({p for p in pa if pa.count(p) > 1})
    if twice:
        raise BNError(f"node {name!r} lists parent {twice[0]!r} twice")
    return pa


def _structure(nodes: dict) -> tuple[Graph, dict[str, list[str]]]:
    names = list(nodes)
    parents = {n: _parents(n, body, names) for n, body in nodes.items()}
    graph = Graph.from_edges(names, [(p, n) for n, pa in parents.items() for p in pa], parent_order=parents,
                             variables="gaussian")  # names a cycle if there is one
    return graph, parents


def gaussian_spec_structure(data) -> Graph:
    """The validated graph of a linear-Gaussian spec (a parsed dict, or a path), ignoring any parameters."""
    nodes = _spec_nodes(data)
    for n, body in nodes.items():
        _node_parameters(n, body, _parents(n, body, list(nodes)))  # validate what is given
    return _structure(nodes)[0]


def load_gaussian_spec(data, seed: int = 0, prior=None) -> GaussianNet:
    """A GaussianNet from a linear-Gaussian spec (a parsed dict, or a path).

    A node gives all of intercept, sigma and (with parents) weights, or none of them; nodes with
    none are drawn from ``prior`` (default ``NIGPrior()``) with ``seed``, as the discrete spec draws
    missing CPTs.
    """
    nodes = _spec_nodes(data)
    graph, parents = _structure(nodes)
    given = {n: _node_parameters(n, nodes[n], parents[n]) for n in graph.names}
    drawn = None
    if any(v is None for v in given.values()):
        import torch

        from bncompare.networks.priors import NIGPrior

        prior = prior or NIGPrior()
        if getattr(prior, "variables", None) != "gaussian":
            raise BNError(f"a linear-Gaussian spec draws missing parameters from a Gaussian prior, not {prior!r}")
        drawn = prior.sample(graph, 1, torch.Generator().manual_seed(int(seed)))
    intercepts, weights, sigmas = [], [], []
    for m, n in enumerate(graph.names):
        if given[n] is None:
            row = [float(v) for v in drawn[m][0]]
            b, w, s = row[0], tuple(row[1:-1]), row[-1]
        else:
            b, w, s = given[n]
        intercepts.append(b)
        weights.append(w)
        sigmas.append(s)
    return GaussianNet(graph, tuple(intercepts), tuple(weights), tuple(sigmas))


def _node_parameters(name: str, body: Mapping, parents: list[str]):
    """(intercept, weights in parents order, sigma) of one node, or None when it gives none."""
    present = [k for k in PARAMETER_KEYS if k in body]
    if not present:
        return None
    needed = ["intercept", "sigma"] + (["weights"] if parents else [])
    missing = [k for k in needed if k not in body]
    if missing:
        raise BNError(f"node {name!r} gives {', '.join(present)} but not {', '.join(missing)} "
                      "(give all of intercept, sigma and weights, or none to draw them from the prior)")
    intercept = _number(body["intercept"], name, "intercept")
    sigma = _number(body["sigma"], name, "sigma")
    if not sigma > 0:
        raise BNError(f"node {name!r}: sigma must be > 0, got {sigma!r}")
    raw = body.get("weights", [])
    if isinstance(raw, Mapping):
        keys = [str(k) for k in raw]
        if sorted(keys) != sorted(parents):
            raise BNError(f"node {name!r}: weights name {keys}, but its parents are {parents}")
        by_name = {str(k): v for k, v in raw.items()}
        raw = [by_name[p] for p in parents]
    if not isinstance(raw, list):
        raise BNError(f"node {name!r}: weights must be a list (parents order) or a mapping parent -> weight, "
                      f"got {raw!r}")
    if len(raw) != len(parents):
        raise BNError(f"node {name!r} has {len(raw)} weights for {len(parents)} parents {parents}")
    weights = tuple(_number(w, name, f"weight of {p}") for w, p in zip(raw, parents))
    return intercept, weights, sigma


def _number(value, node: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BNError(f"node {node!r}: {field} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise BNError(f"node {node!r}: {field} must be finite, got {out!r}")
    return out


def to_gaussian_spec(net: GaussianNet) -> dict:
    """The inverse of :func:`load_gaussian_spec`: a JSON/YAML-ready dict (floats kept exactly)."""
    g = net.graph
    nodes = {}
    for m, n in enumerate(g.names):
        body = {"parents": [g.names[p] for p in g.parents[m]], "weights": list(net.weights[m])} if g.parents[m] else {}
        nodes[n] = {**body, "intercept": net.intercepts[m], "sigma": net.sigmas[m]}
    return {"variables": "gaussian", "nodes": nodes}
