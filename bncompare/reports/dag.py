"""Draw a DAG with matplotlib only: layers by topological depth, top to bottom.

depth(m) = 0 for a root, else 1 + max depth of its parents. Within a layer,
nodes are ordered by the mean position of their parents (a few barycenter
sweeps), which removes most edge crossings on the graphs bncompare meets.
"""
from __future__ import annotations

import numpy as np
from matplotlib.patches import FancyArrowPatch

from bncompare.networks.graph import Graph


def layers(graph: Graph) -> list[list[int]]:
    depth = []
    for m in range(graph.n_nodes):  # nodes are topologically ordered
        depth.append(1 + max(depth[p] for p in graph.parents[m]) if graph.parents[m] else 0)
    out = [[] for _ in range(max(depth) + 1)] if depth else []
    for m, d in enumerate(depth):
        out[d].append(m)
    return out


def layout(graph: Graph, sweeps: int = 4) -> dict[int, tuple[float, float]]:
    """Node -> (x, y) in [0, 1] x [0, 1]; y = 1 is the top layer."""
    ls = layers(graph)
    pos_in_layer = {m: float(i) for layer in ls for i, m in enumerate(layer)}
    for _ in range(sweeps):
        for layer in ls[1:]:
            def bary(m):
                ps = graph.parents[m]
                return np.mean([_norm_x(pos_in_layer, ls, p) for p in ps]) if ps else 0.5

            layer.sort(key=bary)
            for i, m in enumerate(layer):
                pos_in_layer[m] = float(i)
    pos = {}
    n_layers = len(ls)
    for d, layer in enumerate(ls):
        y = 1.0 - (d + 0.5) / n_layers
        for i, m in enumerate(layer):
            pos[m] = ((i + 0.5) / len(layer), y)
    return pos


def _norm_x(pos_in_layer, ls, m):
    for layer in ls:
        if m in layer:
            return (pos_in_layer[m] + 0.5) / len(layer)
    return 0.5


MAX_NAMED_WIDTH = 24  # more nodes in one layer than this: names would not fit at a readable size


def uses_numbers(graph: Graph) -> bool:
    """True when the drawing labels nodes by number (1-based, graph order) and a node table gives the names."""
    return max((len(layer) for layer in layers(graph)), default=0) > MAX_NAMED_WIDTH


def draw_dag(ax, graph: Graph, fontsize: float | None = None) -> None:
    """Boxes for nodes (name and number of states, or the node's number on wide graphs), arrows for edges."""
    pos = layout(graph)
    depth = {m: d for d, layer in enumerate(layers(graph)) for m in layer}
    n = graph.n_nodes
    widest = max(len(layers_) for layers_ in layers(graph))
    numbers = uses_numbers(graph)
    longest = len(str(n)) if numbers else max(len(s) for s in graph.names)
    fontsize = fontsize or float(np.clip(110 / max(widest, 1) / max(1, longest / 4), 3, 14))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    texts = {}
    for m in range(n):
        x, y = pos[m]
        if numbers:
            label = str(m + 1)
        else:
            label = graph.names[m] if graph.cards[m] <= 2 else f"{graph.names[m]}\n({graph.cards[m]} states)"  # 1: real
        texts[m] = ax.text(x, y, label, ha="center", va="center", fontsize=fontsize, zorder=3,
                           bbox=dict(boxstyle=f"round,pad={0.15 if numbers else 0.35}", fc="#dbe9f6", ec="#2b5d8a",
                                     lw=1))
    for m in range(n):
        for p in graph.parents[m]:
            arrow = FancyArrowPatch(pos[p], pos[m], patchA=texts[p].get_bbox_patch(), patchB=texts[m].get_bbox_patch(),
                                    arrowstyle="-|>", mutation_scale=10 + fontsize * 0.5, color="#444444",
                                    lw=0.4 if numbers else 1,
                                    connectionstyle=f"arc3,rad={0.25 if depth[m] - depth[p] > 1 else 0.0}", zorder=2)
            ax.add_patch(arrow)
