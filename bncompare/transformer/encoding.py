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


def onehots(layout: Layout, x: torch.Tensor, dtype=torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenated one-hots of samples ``x`` (..., M) -> (..., S), written into ``out`` when given.

    One scatter of ones at each node's offset plus its value: no per-node tensors to concatenate and no
    integer copy to convert (on munin's 1041 nodes that was 2082 small tensors per call, most of a
    generation step)."""
    out = torch.empty(*x.shape[:-1], layout.n_onehot, dtype=dtype, device=x.device) if out is None else out
    offsets = torch.tensor(layout.offsets, dtype=torch.long, device=x.device)
    return out.zero_().scatter_(-1, x + offsets, 1.0)


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
    device = contexts.device
    # one allocation, every entry written once (a big network's tokens are hundreds of MB: no zero-fill, no cat)
    out = torch.empty(B, 1 + N + Q * T, layout.d_in, dtype=dtype, device=device)
    out[:, 0] = 0
    out[:, 0, layout.sink_flag] = 1
    onehots(layout, contexts, dtype, out=out[:, 1 : 1 + N, : layout.n_onehot])
    out[:, 1 : 1 + N, layout.n_onehot :] = 0
    # every query token at once (no loop over the targets): the slots each target shows, as one (T, S) mask
    qry = out[:, 1 + N :].view(B, Q, T, layout.d_in)
    qry[..., : layout.n_onehot] = onehots(layout, queries, dtype)[:, :, None]
    qry[..., : layout.n_onehot].masked_fill_(~shown_slots(graph, layout, nodes, view).to(device), 0)
    asks = torch.zeros(T, layout.d_in - layout.n_onehot, dtype=dtype, device=device)  # flags and target one-hot
    asks[:, 0] = 1
    asks[torch.arange(T), 1 + torch.as_tensor(list(nodes), dtype=torch.long)] = 1
    qry[..., layout.n_onehot :] = asks
    return out


def shown_slots(graph: Graph, layout: Layout, nodes: Sequence[int], view: str) -> torch.Tensor:
    """(T, S) bool: the one-hot slots a query token for each of ``nodes`` shows: those of the nodes before it
    in topological order (``view="prefix"``) or of its parents (``"parents"``)."""
    node_of_slot = torch.repeat_interleave(torch.arange(layout.n_nodes), torch.tensor(layout.cards))  # (S,)
    targets = torch.as_tensor(list(nodes), dtype=torch.long)
    if view == "parents":
        is_parent = torch.zeros(layout.n_nodes, layout.n_nodes, dtype=torch.bool)  # [m, p]: p is a parent of m
        for m, parents in enumerate(graph.parents):
            is_parent[m, list(parents)] = True
        return is_parent[targets][:, node_of_slot]
    return node_of_slot[None, :] < targets[:, None]
