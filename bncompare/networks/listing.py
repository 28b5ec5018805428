"""``python -m bncompare.networks``: every discrete network by name, with its size.

Columns: nodes, states (the largest cardinality), the maximum in-degree, and the number of
free CPT parameters, sum over nodes of (card - 1) x parent configurations (bnlearn's count).
Bundled networks are measured from their BIF text by a scan of the ``variable`` and
``probability`` headers, not through pgmpy's parser (pathfinder alone takes it seconds, the
whole list about a minute); a test checks the scan against the loaded networks.
"""
from __future__ import annotations

import gzip
import math
import re
import sys
from dataclasses import dataclass

from bncompare.bundled import bif_path, discrete_names
from bncompare.errors import ArgumentParser, on_ctrl_c

VARIABLE = re.compile(r"\bvariable\s+([^\s{]+)\s*\{[^}]*?\[\s*(\d+)\s*\]")
PROBABILITY = re.compile(r"\bprobability\s*\(\s*([^\s|)]+)\s*(?:\|([^)]*))?\)")
SYNTHETIC = ("chain", "chain-5", "chain-10", "tree", "tree-5", "tree-10", "general", "general-5", "general-10",
             "star", "collider", "complete", "random")  # default sizes; card 2 (graph.options.card changes it)


@dataclass(frozen=True)
class Size:
    name: str
    nodes: int
    states: int
    in_degree: int
    parameters: int
    kind: str  # "bundled" (pgmpy's CPTs) or "prior" (a family: CPTs from the study prior)


def _size(name: str, cards: dict[str, int], parents: dict[str, list[str]], kind: str) -> Size:
    params = sum((cards[n] - 1) * math.prod(cards[p] for p in parents.get(n, [])) for n in cards)
    return Size(name, len(cards), max(cards.values()), max((len(p) for p in parents.values()), default=0),
                params, kind)


def bundled_size(name: str) -> Size:
    text = gzip.decompress(bif_path(name).read_bytes()).decode("utf-8", "replace")
    cards = {v: int(k) for v, k in VARIABLE.findall(text)}
    parents = {c: [p.strip() for p in pa.split(",") if p.strip()] for c, pa in PROBABILITY.findall(text)}
    return _size(name, cards, parents, "bundled")


def family_size(name: str) -> Size:
    from bncompare.networks.families import get_graph

    g = get_graph(name)
    return _size(name, dict(zip(g.names, g.cards)), {n: [g.names[p] for p in pa] for n, pa in zip(g.names, g.parents)},
                 "prior")


def sizes(which: str = "all") -> list[Size]:
    out = [bundled_size(n) for n in discrete_names()] if which in ("all", "bundled") else []
    if which in ("all", "families"):
        out += [family_size(n) for n in SYNTHETIC]
    return out


@on_ctrl_c("interrupted")
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m bncompare.networks",
                                     description="List every discrete network by name (graph=<name>) with its size.")
    parser.add_argument("--only", choices=("all", "bundled", "families"), default="all",
                        help="bundled: pgmpy's networks with their CPTs; families: synthetic graphs (default sizes)")
    args = parser.parse_args(argv)
    rows = sorted(sizes(args.only), key=lambda s: (s.kind, s.parameters, s.name))
    print(f"{'name':<12} {'nodes':>6} {'states':>6} {'in-degree':>9} {'parameters':>11}  truth")
    for s in rows:
        print(f"{s.name:<12} {s.nodes:>6} {s.states:>6} {s.in_degree:>9} {s.parameters:>11}  {s.kind}")
    print("states: the largest cardinality; parameters: free CPT entries, sum of (card - 1) x parent configurations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
