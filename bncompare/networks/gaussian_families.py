"""Named linear-Gaussian graphs, so a study can ask for one by name (registered in ``families``).

Synthetic: ``gaussian-<family>[-N]`` for each discrete family (chain, tree, general, star,
collider, complete, random): the SAME structure as the discrete family of that name, with
``variables="gaussian"`` (card 1 on every node). A bare family name means its 7-node variant
(``gaussian-tree`` == ``gaussian-tree-7``), as for the discrete ones.

Real: ecoli70, magic-niab, magic-irri, arth150 (structure and parameters from pgmpy's wheel,
:func:`bncompare.networks.gaussian_io.load_gaussian_network`).
"""
from __future__ import annotations

import re

from bncompare.errors import BNError
from bncompare.networks.families import PAPER_SIZES, SYNTHETIC, NetworkNames, register_names
from bncompare.networks.gaussian import GaussianNet, from_params
from bncompare.networks.gaussian_io import REAL_GAUSSIAN_NETWORKS, load_gaussian_network
from bncompare.networks.graph import Graph

PREFIX = "gaussian-"


def as_gaussian(graph: Graph) -> Graph:
    """The same nodes and parents (same order) as linear-Gaussian variables."""
    return Graph(graph.names, (1,) * graph.n_nodes, graph.parents, "gaussian")


def _normalized(name) -> str:
    return str(name).strip().lower()


def is_gaussian_name(name) -> bool:
    """Whether ``name`` is a linear-Gaussian network name (a ``gaussian-`` family or a real one)."""
    name = _normalized(name)
    return name.startswith(PREFIX) or name in REAL_GAUSSIAN_NETWORKS


def network_variables(name) -> str:
    """``"gaussian"`` or ``"discrete"``: the variables of the network a name stands for."""
    return "gaussian" if is_gaussian_name(name) else "discrete"


def gaussian_names() -> list[str]:
    """Every linear-Gaussian name :func:`get_gaussian_graph` accepts."""
    names = []
    for fam in ("chain", "tree", "general"):
        names += [f"{PREFIX}{fam}"] + [f"{PREFIX}{fam}-{n}" for n in PAPER_SIZES]
    for fam in ("star", "collider", "complete", "random"):
        names += [f"{PREFIX}{fam}", f"{PREFIX}{fam}-N"]
    return names + list(REAL_GAUSSIAN_NETWORKS)


def _family(name: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"gaussian-([a-z]+)(?:-(\d+))?", name)
    if not m or m.group(1) not in SYNTHETIC:
        raise BNError(f"unknown Gaussian network {name!r}; valid names: {', '.join(gaussian_names())}")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def get_gaussian_graph(name, **kw) -> Graph:
    """The structure of a linear-Gaussian family or real network, e.g. ``get_gaussian_graph("gaussian-tree-5")``.

    Options (``kw``) go to the discrete family's function (e.g. ``seed`` and ``p`` for random); a
    Gaussian node has no states, so ``card`` is refused.
    """
    name = _normalized(name)
    if name in REAL_GAUSSIAN_NETWORKS:
        if kw:
            raise BNError(f"the real network {name!r} takes no options, got {sorted(kw)}")
        return load_gaussian_network(name).graph
    fam, n = _family(name)
    if "card" in kw:
        raise BNError(f"{name!r} is linear-Gaussian: its nodes hold real values, so there is no card option")
    if n is not None:
        kw["n"] = n
    try:
        return as_gaussian(SYNTHETIC[fam](**kw))
    except TypeError as e:
        raise BNError(f"bad options for {name!r}: {e}") from None


def load_gaussian(name, seed: int = 0, prior=None, **kw) -> GaussianNet:
    """A linear-Gaussian network: the bundled parameters for a real one, a prior draw otherwise
    (``prior`` defaults to ``NIGPrior()``; ``seed`` seeds the draw)."""
    name = _normalized(name)
    if name in REAL_GAUSSIAN_NETWORKS:
        return load_gaussian_network(name)
    import torch

    from bncompare.networks.priors import NIGPrior

    graph = get_gaussian_graph(name, **kw)
    prior = prior or NIGPrior()
    if getattr(prior, "variables", None) != "gaussian":
        raise BNError(f"{name!r} is linear-Gaussian: its parameters come from a Gaussian prior (nig), not {prior!r}")
    return from_params(graph, prior.sample(graph, 1, torch.Generator().manual_seed(int(seed))))


def is_real_gaussian(name) -> bool:
    """Whether ``name`` is one of the real linear-Gaussian networks bundled with pgmpy."""
    return _normalized(name) in REAL_GAUSSIAN_NETWORKS


# families.get_graph / load_network / is_real / available answer these names through this module
register_names(NetworkNames(owns=is_gaussian_name, names=gaussian_names, graph=get_gaussian_graph,
                            network=load_gaussian, real=is_real_gaussian))
