"""Token encoding: one token per sample, as in the paper.

Token layout (width ``d_in = S + M + 2`` with ``S = sum(cards)``)::

    [ one-hots of x_1..x_M (S) | query flag (1) | target one-hot (M) | sink flag (1) ]

A sequence for one context is ``[sink, context rows..., query tokens...]``:

- the sink is an always-present empty token with only its flag set (it lets
  attention fall back to a prior when nothing in the context matches);
- a context token shows every variable, with query flag 0 and no target;
- a query token for target ``m`` shows the variables before ``m`` (in
  topological order; ``view="prefix"``, the paper's) or only the parents of ``m``
  (``view="parents"``: the graph is known to a structure-aware estimator), query
  flag 1 and the one-hot of ``m``.

There is no positional encoding, so the output cannot depend on the order of
the context rows. Who attends to whom is set by the model (``model.py``): queries
never see each other, so they can be answered in any chunks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from bncompare.networks.graph import Graph


@dataclass(frozen=True)
class Layout:
    """Where each field sits in a token, for one graph's cardinalities."""

    cards: tuple[int, ...]

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for c in self.cards:
            out.append(acc)
            acc += c
        return tuple(out)

    @property
    def n_nodes(self) -> int:
        return len(self.cards)

    @property
    def n_onehot(self) -> int:
        return sum(self.cards)

    @property
    def query_flag(self) -> int:
        return self.n_onehot

    def target(self, m: int) -> int:
        return self.n_onehot + 1 + m

    @property
    def values(self) -> slice:
        """A token's one-hots of every node's value."""
        return slice(0, self.n_onehot)

    @property
    def targets(self) -> slice:
        """A token's one-hot of the node it asks for."""
        return slice(self.n_onehot + 1, self.n_onehot + 1 + self.n_nodes)

    @staticmethod
    def context_rows(n_context: int) -> slice:
        """The context rows of a sequence ``[sink, n_context rows, queries...]``."""
        return slice(1, 1 + n_context)

    @staticmethod
    def query_rows(n_context: int) -> slice:
        """Every token after the context rows (the queries, then any tokens a readout adds)."""
        return slice(1 + n_context, None)

    @property
    def sink_flag(self) -> int:
        return self.n_onehot + 1 + self.n_nodes

    @property
    def d_in(self) -> int:
        return self.n_onehot + self.n_nodes + 2

    @property
    def d_out(self) -> int:
        return max(self.cards)


def onehots(layout: Layout, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Concatenated one-hots of samples ``x`` (..., M) -> (..., S)."""
    parts = [torch.nn.functional.one_hot(x[..., m], c) for m, c in enumerate(layout.cards)]
    return torch.cat(parts, -1).to(dtype)


def encode(
    graph: Graph,
    contexts: torch.Tensor,
    queries: torch.Tensor,
    nodes: Sequence[int],
    dtype=torch.float32,
    view: str = "prefix",
) -> torch.Tensor:
    """Tokens of shape (B, 1 + N + Q*T, d_in) for T = len(nodes) targets per query sample.

    Query tokens are ordered query-major: token ``1 + N + q*T + j`` asks for node ``nodes[j]`` of query ``q``.
    """
    layout = Layout(graph.cards)
    B, N, M = contexts.shape
    Q, T = queries.shape[1], len(nodes)
    sink = torch.zeros(B, 1, layout.d_in, dtype=dtype, device=contexts.device)
    sink[..., layout.sink_flag] = 1
    ctx = torch.zeros(B, N, layout.d_in, dtype=dtype, device=contexts.device)
    ctx[..., : layout.n_onehot] = onehots(layout, contexts, dtype)
    qry = torch.zeros(B, Q, T, layout.d_in, dtype=dtype, device=contexts.device)
    x_q = onehots(layout, queries, dtype)  # (B, Q, S)
    for j, m in enumerate(nodes):
        if view == "parents":
            for p in graph.parents[m]:
                lo = layout.offsets[p]
                qry[:, :, j, lo : lo + layout.cards[p]] = x_q[..., lo : lo + layout.cards[p]]
        else:
            shown = layout.offsets[m]  # the one-hots of nodes before m end here (topological order)
            qry[:, :, j, :shown] = x_q[..., :shown]
        qry[:, :, j, layout.query_flag] = 1
        qry[:, :, j, layout.target(m)] = 1
    return torch.cat([sink, ctx, qry.reshape(B, Q * T, layout.d_in)], 1)
