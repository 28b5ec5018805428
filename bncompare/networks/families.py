"""Named graph families and real networks, so a study can ask for one by name.

Synthetic families (structure only; CPTs come from a prior):
  chain-N (N = 5, 7, 10), tree-N, general-N (the paper's graphs, nodes A, B, C, ...),
  star-N (one hub parent), collider-N (one child of N-1 roots),
  random-N (Erdos-Renyi DAG on a fixed order; see :func:`random_dag`).
  A bare family name means its 7-node variant ("tree" == "tree-7").

Real networks (structure AND CPTs, read offline from the BIF files bundled in
the pgmpy wheel): every ``<name>.bif.gz`` there, from asia to munin
(:func:`bncompare.bundled.discrete_names`; ``python -m bncompare.networks`` lists them).

Other kinds of network register their names here (:func:`register_names`): the
linear-Gaussian ones (``gaussian-tree``, ``gaussian-random-N``, ecoli70, magic-niab,
magic-irri, arth150; :mod:`bncompare.networks.gaussian_families`) are then accepted by
the same functions, and :func:`load_network` returns a ``GaussianNet`` for them.
"""
from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from bncompare.bundled import bif_path, discrete_names
from bncompare.errors import BNError
from bncompare.networks.graph import Graph
from bncompare.networks.network import BayesNet

LETTERS = string.ascii_uppercase

_TREE_EDGES = ["AB", "AC", "BD", "BE", "CF", "CG", "DH", "DI", "IJ"]
_GENERAL_PARENTS = {  # child: parents, in the order the paper adds them
    "C": "AB", "D": "AC", "E": "D",
    "F": "DE", "G": "CE",
    "H": "FG", "I": "EH", "J": "GI",
}
PAPER_SIZES = (5, 7, 10)


def chain(n: int = 7, card: int = 2) -> Graph:
    nodes = list(LETTERS[:n])
    return Graph.from_edges(nodes, zip(nodes, nodes[1:]), card)


def tree(n: int = 7, card: int = 2) -> Graph:
    edges = {5: _TREE_EDGES[:4], 7: _TREE_EDGES[:6], 10: _TREE_EDGES}.get(n)
    if edges is None:
        raise BNError(f"tree comes in sizes {list(PAPER_SIZES)}, not {n}")
    return Graph.from_edges(list(LETTERS[:n]), [tuple(e) for e in edges], card)


def general(n: int = 7, card: int = 2) -> Graph:
    if n not in PAPER_SIZES:
        raise BNError(f"general comes in sizes {list(PAPER_SIZES)}, not {n}")
    nodes = list(LETTERS[:n])
    edges = [(p, c) for c, pa in _GENERAL_PARENTS.items() if c in nodes for p in pa]
    return Graph.from_edges(nodes, edges, card)


def star(n: int = 7, card: int = 2) -> Graph:
    nodes = list(LETTERS[:n])
    return Graph.from_edges(nodes, [("A", c) for c in nodes[1:]], card)


def collider(n: int = 4, card: int = 2) -> Graph:
    nodes = list(LETTERS[:n])
    return Graph.from_edges(nodes, [(p, nodes[-1]) for p in nodes[:-1]], card)


def complete(n: int = 7, card: int = 2) -> Graph:
    """Every earlier node is a parent: the graph a structure-agnostic model must assume."""
    nodes = list(_node_names(n))
    return Graph.from_edges(nodes, [(u, v) for i, v in enumerate(nodes) for u in nodes[:i]], card)


def random_dag(n: int = 7, p: float | tuple[float, float] = (0.7, 1.0), seed: int = 0, card: int = 2,
               max_parents: int | None = None) -> Graph:
    """Erdos-Renyi DAG on the order A, B, C, ...: edge i -> j (i < j) with probability p.

    ``p`` may be a range (low, high): the edge probability is then drawn once
    from U[low, high] (the paper used U[0.7, 1.0]). ``max_parents`` keeps the
    latest-added parents only, to bound CPT size.
    """
    if n < 1:
        raise BNError(f"random DAG needs at least 1 node, got {n}")
    rng = np.random.default_rng(seed)
    if isinstance(p, (tuple, list)):
        lo, hi = float(p[0]), float(p[1])
        if not 0 <= lo <= hi <= 1:
            raise BNError(f"edge-probability range must satisfy 0 <= low <= high <= 1, got {list(p)}")
        p = rng.uniform(lo, hi)
    if not 0 <= p <= 1:
        raise BNError(f"edge probability must be in [0, 1], got {p}")
    nodes = list(_node_names(n))
    edges = []
    for j in range(n):
        pa = [i for i in range(j) if rng.random() < p]
        if max_parents is not None:
            pa = pa[-max_parents:]
        edges += [(nodes[i], nodes[j]) for i in pa]
    return Graph.from_edges(nodes, edges, card)


def _node_names(n: int):
    if n <= 26:
        return LETTERS[:n]
    return [f"X{i}" for i in range(n)]


SYNTHETIC = {
    "chain": chain, "tree": tree, "general": general, "star": star, "collider": collider,
    "complete": complete, "random": random_dag,
}


@dataclass(frozen=True)
class NetworkNames:
    """Names of another kind of network, answered by its own module (which registers itself here,
    so this module needs not import it)."""

    owns: Callable[[str], bool]  # is this name one of mine?
    names: Callable[[], list[str]]  # every name, for available()
    graph: Callable[..., Graph]  # (name, **kw) -> Graph
    network: Callable[..., object]  # (name, seed, prior, **kw) -> a network with parameters
    real: Callable[[str], bool]  # a real network (bundled parameters)?


REGISTERED: list[NetworkNames] = []


def register_names(names: NetworkNames) -> None:
    """Make :func:`get_graph`, :func:`load_network`, :func:`is_real` and :func:`available` know more names."""
    if names not in REGISTERED:
        REGISTERED.append(names)


def _registered(name) -> NetworkNames | None:
    return next((r for r in REGISTERED if r.owns(name)), None)


def available() -> list[str]:
    """Every name :func:`get_graph` and :func:`load_network` accept."""
    names = []
    for fam in ("chain", "tree", "general"):
        names += [fam] + [f"{fam}-{n}" for n in PAPER_SIZES]
    names += ["star", "star-N", "collider", "collider-N", "complete", "complete-N", "random", "random-N"]
    return names + list(discrete_names()) + [n for r in REGISTERED for n in r.names()]


def _parse(name: str) -> tuple[str, int | None]:
    name = str(name).strip().lower()
    if name in discrete_names():  # hepar2, munin1, win95pts: names with digits of their own
        return name, None
    m = re.fullmatch(r"([a-z]+)(?:-(\d+))?", name)
    if not m or m.group(1) not in SYNTHETIC:
        raise BNError(f"unknown network {name!r}; valid names: {', '.join(available())}")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def get_graph(name: str, **kw) -> Graph:
    """The structure of a named family or real network, e.g. ``get_graph("tree-7")``."""
    if other := _registered(name):
        return other.graph(name, **kw)
    fam, n = _parse(name)
    if fam in discrete_names():
        return load_network(fam).graph
    if n is not None:
        kw["n"] = n
    try:
        return SYNTHETIC[fam](**kw)
    except TypeError as e:
        raise BNError(f"bad options for {name!r}: {e}") from None


def is_real(name: str) -> bool:
    if other := _registered(name):
        return other.real(name)
    return _parse(name)[0] in discrete_names()


def load_network(name: str, seed: int = 0, prior=None, **kw) -> BayesNet:
    """A network with CPTs: the bundled CPTs for real networks, a prior draw otherwise.

    A registered name (a linear-Gaussian one) gives that module's network: a ``GaussianNet``."""
    if other := _registered(name):
        return other.network(name, seed, prior, **kw)
    fam, _ = _parse(name)
    if fam in discrete_names():
        return _load_real(fam)
    import torch

    from bncompare.networks.priors import DirichletPrior

    graph = get_graph(name, **kw)
    cpts = (prior or DirichletPrior(1.0)).sample(graph, 1, torch.Generator().manual_seed(seed))
    return BayesNet(graph, tuple(c[0].numpy() for c in cpts))


@cache
def _load_real(name: str) -> BayesNet:
    from bncompare.networks.io import load_bif

    return load_bif(bif_path(name))

