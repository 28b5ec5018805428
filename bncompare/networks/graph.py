"""The structure of a Bayesian network: named nodes, cardinalities, parents, and the kind of variables.

``variables`` says what every node holds: ``"discrete"`` (states 0..card-1, a CPT per
node) or ``"gaussian"`` (one real number; card is 1, the width of the value; each node
is linear-Gaussian in its parents, :mod:`bncompare.networks.gaussian`) or ``"autoregressive"``
(node m is coordinate m of the state of a sequence ``s_{t+1} = W s_t + noise``; card 1; its parents,
the previous state, are not drawn: :mod:`bncompare.networks.autoregressive`).

Nodes are always stored in a topological order, so node ``m``'s parents all have
indices ``< m``. A parent configuration is coded in mixed radix with the LAST
parent varying fastest, which is pgmpy's column order for ``TabularCPD``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from bncompare.errors import BNError

MAX_CPT_ENTRIES = 2**40  # exact Python ints, far below int64 overflow; memory is the study budget's job
MAX_CARD = 1024  # states per node; pgmpy's bundled networks have at most 63 (pathfinder). Readers check it
# before they build a list of states, so a card of 10**18 is refused, not allocated.
OVERALL = "all"  # the node name results use for the average over nodes (studies/frames.py writes it)
RESERVED_NAMES = frozenset({OVERALL})  # so no node may be called that
VARIABLES = ("discrete", "gaussian", "autoregressive")  # the kinds of variable a network can hold
REAL_VALUED = ("gaussian", "autoregressive")  # one real number per node: card 1


@dataclass(frozen=True)
class Graph:
    names: tuple[str, ...]
    cards: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    variables: str = "discrete"

    def __post_init__(self):
        if self.variables not in VARIABLES:
            raise BNError(f"variables must be one of {', '.join(VARIABLES)}, got {self.variables!r}")
        min_card = 2 if self.variables == "discrete" else 1
        if len(set(self.names)) != len(self.names):
            raise BNError(f"duplicate node names in {list(self.names)}")
        reserved = sorted(RESERVED_NAMES.intersection(self.names))
        if reserved:
            raise BNError(f"node name {reserved[0]!r} is reserved (results name the average over nodes so); "
                          "rename the node")
        if not (len(self.names) == len(self.cards) == len(self.parents)):
            raise BNError("names, cards and parents must have the same length")
        for m, (name, card) in enumerate(zip(self.names, self.cards)):
            if self.variables in REAL_VALUED and int(card) != 1:
                raise BNError(f"node {name!r} holds one real value ({self.variables}), so its card is 1, not {card}")
            if int(card) < min_card:
                raise BNError(f"node {name!r} has cardinality {card}; every node needs at least 2 states")
            if int(card) > MAX_CARD:
                raise BNError(f"node {name!r} has cardinality {card}, above the limit of {MAX_CARD} states")
            for p in self.parents[m]:
                if not 0 <= p < m:
                    raise BNError(f"node {name!r}: parent index {p} is not an earlier node "
                                  "(nodes must be topologically ordered)")
            if len(set(self.parents[m])) != len(self.parents[m]):
                raise BNError(f"node {name!r} lists a parent twice")
            entries = math.prod(int(self.cards[p]) for p in self.parents[m]) * int(card)  # exact: no int64 overflow
            if entries > MAX_CPT_ENTRIES:
                raise BNError(f"node {name!r} would have a CPT of {entries:.3g} entries "
                              f"({len(self.parents[m])} parents); at most {MAX_CPT_ENTRIES:.3g} are supported")

    # ----- construction -------------------------------------------------
    @classmethod
    def from_edges(
        cls,
        nodes: Sequence[str],
        edges: Iterable[tuple[str, str]],
        cards: int | Mapping[str, int] | Sequence[int] = 2,
        parent_order: Mapping[str, Sequence[str]] | None = None,
        variables: str = "discrete",
    ) -> Graph:
        """Build a graph from edges; nodes are sorted topologically (stable w.r.t. ``nodes``).

        ``parent_order`` fixes the order of a node's parents (it matters for the CPT
        layout); by default parents keep the order of ``nodes``. A ``variables="gaussian"``
        graph has card 1 everywhere (``cards`` is then ignored).
        """
        if variables in REAL_VALUED:
            cards = 1
        nodes = [str(n) for n in nodes]
        if len(set(nodes)) != len(nodes):
            raise BNError(f"duplicate node names in {nodes}")
        if isinstance(cards, int):
            card_of = {n: cards for n in nodes}
        elif isinstance(cards, Mapping):
            missing = [n for n in nodes if n not in cards]
            if missing:
                raise BNError(f"no cardinality given for nodes {missing}")
            card_of = {n: int(cards[n]) for n in nodes}
        else:
            if len(cards) != len(nodes):
                raise BNError(f"got {len(cards)} cardinalities for {len(nodes)} nodes")
            card_of = dict(zip(nodes, (int(c) for c in cards)))
        known = set(nodes)
        pa: dict[str, list[str]] = {n: [] for n in nodes}
        for u, v in edges:
            u, v = str(u), str(v)
            for end in (u, v):
                if end not in known:
                    raise BNError(f"edge {u}->{v} names unknown node {end!r}; nodes are {nodes}")
            if u == v:
                raise BNError(f"self-loop on node {u!r}: the graph must be acyclic")
            if u not in pa[v]:
                pa[v].append(u)
        if parent_order:
            for n, order in parent_order.items():
                if n in pa:
                    if sorted(order) != sorted(pa[n]):
                        raise BNError(f"parent order for {n!r} {list(order)} does not match its parents {pa[n]}")
                    pa[n] = [str(p) for p in order]
        rank = {n: i for i, n in enumerate(nodes)}
        for n in nodes:
            if not parent_order or n not in parent_order:
                pa[n].sort(key=rank.__getitem__)
        order = _topological_order(nodes, pa)
        index = {n: i for i, n in enumerate(order)}
        return cls(
            names=tuple(order),
            cards=tuple(card_of[n] for n in order),
            parents=tuple(tuple(index[p] for p in pa[n]) for n in order),
            variables=variables,
        )

    @classmethod
    def from_dict(cls, record: Mapping) -> Graph:
        """The inverse of :meth:`to_dict` (each node's parents keep their order: the CPT layout)."""
        names, parents = list(record["names"]), list(record["parents"])
        edges = [(p, child) for child, ps in zip(names, parents) for p in ps]
        return cls.from_edges(names, edges, list(record["cards"]), dict(zip(names, parents)),
                              record.get("variables", "discrete"))

    def to_dict(self) -> dict:
        """The graph as plain data: node names, cardinalities, and each node's parents by name, in CPT order
        (what graph.json and a network spec hold)."""
        out = {"names": list(self.names), "cards": list(self.cards),
               "parents": [[self.names[p] for p in ps] for ps in self.parents]}
        if self.variables != "discrete":  # discrete graph.json files stay as they were
            out["variables"] = self.variables
        return out

    # ----- derived quantities -------------------------------------------
    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise BNError(f"unknown node {name!r}; nodes are {list(self.names)}") from None

    @cached_property
    def n_configs(self) -> tuple[int, ...]:
        """Number of parent configurations (CPT rows) of each node."""
        return tuple(math.prod(self.cards[p] for p in pa) for pa in self.parents)

    @cached_property
    def strides(self) -> tuple[tuple[int, ...], ...]:
        """Mixed-radix weights of each node's parents, last parent fastest."""
        out = []
        for pa in self.parents:
            s, acc = [], 1
            for p in reversed(pa):
                s.append(acc)
                acc *= self.cards[p]
            out.append(tuple(reversed(s)))
        return tuple(out)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(self.names[p], self.names[m]) for m in range(self.n_nodes) for p in self.parents[m]]

    @property
    def max_card(self) -> int:
        return max(self.cards)

    def config_index(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """Row index of node ``m``'s CPT for each sample in ``x`` (shape ``(..., M)``)."""
        code = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
        for p, s in zip(self.parents[m], self.strides[m]):
            code = code + x[..., p].long() * s
        return code

    def configs(self, m: int) -> np.ndarray:
        """All parent configurations of node ``m`` in row order, shape ``(n_configs, n_parents)``."""
        cards = [self.cards[p] for p in self.parents[m]]
        if not cards:
            return np.zeros((1, 0), dtype=np.int64)
        grids = np.meshgrid(*[np.arange(c) for c in cards], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1)

    def __repr__(self) -> str:
        if self.variables == "gaussian":
            return f"Graph({self.n_nodes} linear-Gaussian nodes, {len(self.edges)} edges)"
        if self.variables == "autoregressive":
            return f"Graph(an autoregressive process of {self.n_nodes}-dimensional states)"
        return f"Graph({self.n_nodes} nodes, {len(self.edges)} edges, cards={list(self.cards)})"


def _topological_order(nodes: list[str], pa: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm, taking the earliest-listed ready node first (deterministic)."""
    remaining = {n: set(pa[n]) for n in nodes}
    order: list[str] = []
    while remaining:
        ready = [n for n in nodes if n in remaining and not remaining[n]]
        if not ready:
            cycle = _find_cycle(remaining)
            raise BNError(f"graph has a cycle: {' -> '.join(cycle)}")
        n = ready[0]
        order.append(n)
        del remaining[n]
        for deps in remaining.values():
            deps.discard(n)
    return order


def _find_cycle(remaining: dict[str, set[str]]) -> list[str]:
    start = next(iter(remaining))
    path, seen = [start], {start: 0}
    while True:
        nxt = next(iter(remaining[path[-1]]))
        if nxt in seen:
            cyc = path[seen[nxt]:] + [nxt]
            return list(reversed(cyc))
        seen[nxt] = len(path)
        path.append(nxt)


def check_data(graph: Graph, x, what: str = "data") -> torch.Tensor:
    """Validate samples ``x`` of shape ``(..., M)`` and return them as a long tensor."""
    if graph.variables != "discrete":
        raise BNError(f"{what}: this estimator reads discrete states, but the network's variables are "
                      f"{graph.variables} (use an estimator made for them)")
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dtype.is_floating_point:
        if torch.isnan(x).any():
            raise BNError(f"{what} contains NaN")
        if (x != x.round()).any():
            raise BNError(f"{what} contains non-integer states")
    elif x.dtype == torch.bool or x.dtype.is_complex:
        raise BNError(f"{what} must hold integer states, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != graph.n_nodes:
        raise BNError(f"{what} has shape {tuple(x.shape)}; the last axis must have {graph.n_nodes} columns, "
                      "one per node")
    x = x.long()
    if x.numel():
        cards = torch.tensor(graph.cards, device=x.device)
        bad = (x < 0) | (x >= cards)
        if bad.any():
            idx = bad.nonzero()[0].tolist()
            m = idx[-1]
            raise BNError(
                f"{what} has state {int(x[tuple(idx)])} for node {graph.names[m]!r}, "
                f"outside 0..{graph.cards[m] - 1}"
            )
    return x
