"""Networks in and out: pgmpy models, BIF files, and YAML/JSON specs.

YAML/JSON spec (every key but ``nodes`` optional; CPT rows follow the parent
order given in ``parents``, last parent fastest)::

    nodes:
      Rain:      {states: [no, yes]}
      Sprinkler: {parents: [Rain], cpt: [[0.6, 0.4], [0.99, 0.01]]}
      Wet:       {card: 2, parents: [Rain, Sprinkler]}
    # nodes without "cpt" need one from a prior (load_spec(..., seed=...))

All loading is data-only (yaml.safe_load / json); nothing is evaluated.
"""
from __future__ import annotations

import gzip
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from bncompare.errors import BNError
from bncompare.networks.graph import Graph
from bncompare.networks.network import BayesNet


# ----- pgmpy -------------------------------------------------------------
def to_pgmpy(net: BayesNet):
    """A ``pgmpy.models.DiscreteBayesianNetwork`` with the same CPTs."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    g = net.graph
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(g.names)
    model.add_edges_from(g.edges)
    states = _state_names(net)
    for m, name in enumerate(g.names):
        pa = [g.names[p] for p in g.parents[m]]
        cpd = TabularCPD(
            name,
            g.cards[m],
            net.cpts[m].T,  # pgmpy: child axis first, last evidence variable fastest
            evidence=pa or None,
            evidence_card=[g.cards[p] for p in g.parents[m]] or None,
            state_names={n: list(states[g.index(n)]) for n in [name, *pa]},
        )
        model.add_cpds(cpd)
    return model


def from_pgmpy(model) -> BayesNet:
    """Exact inverse of :func:`to_pgmpy` (node order becomes a topological order)."""
    nodes = list(model.nodes())
    cpds = {}
    for n in nodes:
        cpd = model.get_cpds(n)
        if cpd is None:
            raise BNError(f"pgmpy model has no CPD for node {n!r}")
        cpds[str(n)] = cpd
    parent_order = {str(n): [str(v) for v in cpds[str(n)].variables[1:]] for n in nodes}
    edges = [(p, n) for n, pa in parent_order.items() for p in pa]
    cards = {str(n): int(cpds[str(n)].cardinality[0]) for n in nodes}
    graph = Graph.from_edges([str(n) for n in nodes], edges, cards, parent_order=parent_order)
    cpts, states = [], []
    for name in graph.names:
        cpd = cpds[name]
        values = np.asarray(cpd.get_values(), dtype=np.float64)
        cpts.append(values.T)
        states.append(tuple(str(s) for s in cpd.state_names[name]))
    return BayesNet(graph, tuple(cpts), tuple(states))


def _state_names(net: BayesNet) -> tuple[tuple[str, ...], ...]:
    if net.state_names is not None:
        return net.state_names
    return tuple(tuple(str(v) for v in range(c)) for c in net.graph.cards)


# ----- BIF ---------------------------------------------------------------
def load_bif(path_or_text: str | Path) -> BayesNet:
    """Read a BIF file (plain or .gz) or a BIF string."""
    text = str(path_or_text)
    if "network" not in text or "{" not in text:  # a path, not BIF text
        path = Path(text)
        if not path.exists():
            raise BNError(f"BIF file not found: {path}")
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8", "replace")
    from pgmpy.readwrite import BIFReader

    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BIFReader(string=text).get_model()
    except Exception as e:  # pgmpy raises many types on malformed input
        raise BNError(f"could not parse BIF: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return from_pgmpy(model)


# ----- YAML / JSON spec --------------------------------------------------
def load_spec(path_or_dict, seed: int = 0, prior=None) -> BayesNet:
    """Read a network from a YAML or JSON spec (a path or an already-parsed dict)."""
    if isinstance(path_or_dict, dict):
        spec = path_or_dict
    else:
        path = Path(path_or_dict)
        if not path.exists():
            raise BNError(f"network spec not found: {path}")
        text = path.read_text()
        if path.suffix == ".json":
            spec = json.loads(text)
        else:
            import yaml

            spec = yaml.safe_load(text)
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), dict) or not spec["nodes"]:
        raise BNError("network spec needs a non-empty 'nodes' mapping")
    nodes = spec["nodes"]
    names = [str(n) for n in nodes]
    states, cards, parent_order = {}, {}, {}
    for n, body in nodes.items():
        n, body = str(n), (body or {})
        if not isinstance(body, dict):
            raise BNError(f"spec for node {n!r} must be a mapping")
        unknown = set(body) - {"states", "card", "parents", "cpt"}
        if unknown:
            raise BNError(f"node {n!r}: unknown keys {sorted(unknown)}; allowed: states, card, parents, cpt")
        st = body.get("states")
        card = body.get("card", len(st) if st else 2)
        if st is not None and len(st) != card:
            raise BNError(f"node {n!r}: {len(st)} states but card {card}")
        cards[n] = int(card)
        states[n] = tuple(str(s) for s in st) if st else tuple(str(v) for v in range(int(card)))
        parent_order[n] = [str(p) for p in body.get("parents", []) or []]
    edges = [(p, n) for n, pa in parent_order.items() for p in pa]
    graph = Graph.from_edges(names, edges, cards, parent_order=parent_order)
    given = {str(n): (b or {}).get("cpt") for n, b in nodes.items()}
    drawn = None
    if any(v is None for v in given.values()):
        import torch

        from bncompare.networks.priors import DirichletPrior

        drawn = (prior or DirichletPrior(1.0)).sample(graph, 1, torch.Generator().manual_seed(seed))
    cpts = []
    for m, n in enumerate(graph.names):
        if given[n] is None:
            cpts.append(drawn[m][0].numpy())
        else:
            try:
                cpts.append(np.asarray(given[n], dtype=np.float64).reshape(graph.n_configs[m], graph.cards[m]))
            except ValueError:
                raise BNError(
                    f"CPT of node {n!r} has {np.size(given[n])} entries, expected "
                    f"{graph.n_configs[m]} rows x {graph.cards[m]} states"
                ) from None
    return BayesNet(graph, tuple(cpts), tuple(states[n] for n in graph.names))


def to_spec(net: BayesNet) -> dict:
    """The inverse of :func:`load_spec`: a JSON/YAML-ready dict."""
    g, states = net.graph, _state_names(net)
    return {
        "nodes": {
            n: {
                "states": list(states[m]),
                "parents": [g.names[p] for p in g.parents[m]],
                "cpt": net.cpts[m].tolist(),
            }
            for m, n in enumerate(g.names)
        }
    }
