"""Token encoding of real-valued rows (linear-Gaussian networks): one token per sample.

Token layout (width ``d_in = 3 M + 2``)::

    [ values x_1..x_M (M) | shown flags (M) | query flag (1) | target one-hot (M) | sink flag (1) ]

As for discrete rows (:mod:`encoding`), a sequence is ``[sink, context rows..., query tokens...]``:
a context token shows every value (all shown flags 1); a query token for target ``m`` shows
the values of the nodes before ``m`` (topological order), their shown flags, the query flag and
the one-hot of ``m``. A value that is not shown is 0 with shown flag 0, so a shown 0 and a hidden
value differ. The values are the raw float64 rows cast to the model's dtype: no scaling, so a
readout can compute in the data's own units (a Normal-inverse-gamma prior is not scale-free).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

PREDICTION_WIDTH = 3  # (df, loc, scale): a Student-t, networks.gaussian's prediction layout


@dataclass(frozen=True)
class GaussianLayout:
    """Where each field sits in a token, for a Gaussian network of ``n_nodes`` nodes."""

    n_nodes: int

    @property
    def cards(self) -> tuple[int, ...]:
        """Card 1 per node, as a Gaussian Graph has (a model config records it)."""
        return (1,) * self.n_nodes

    @property
    def values(self) -> slice:
        return slice(0, self.n_nodes)

    @property
    def shown(self) -> slice:
        return slice(self.n_nodes, 2 * self.n_nodes)

    @property
    def query_flag(self) -> int:
        return 2 * self.n_nodes

    @property
    def targets(self) -> slice:
        return slice(2 * self.n_nodes + 1, 3 * self.n_nodes + 1)

    @property
    def sink_flag(self) -> int:
        return 3 * self.n_nodes + 1

    @property
    def d_in(self) -> int:
        return 3 * self.n_nodes + 2

    @property
    def d_out(self) -> int:
        return PREDICTION_WIDTH


def encode_gaussian(contexts: torch.Tensor, queries: torch.Tensor, nodes: Sequence[int],
                    dtype=torch.float32) -> torch.Tensor:
    """Tokens (B, 1 + N + Q*T, d_in) for contexts (B, N, M) and queries (B, Q, M), T = len(nodes) targets
    per query, ordered query-major (token ``1 + N + q*T + j`` asks for node ``nodes[j]`` of query ``q``)."""
    B, N, M = contexts.shape
    Q, T = queries.shape[1], len(nodes)
    lay = GaussianLayout(M)
    device = contexts.device
    sink = torch.zeros(B, 1, lay.d_in, dtype=dtype, device=device)
    sink[..., lay.sink_flag] = 1
    ctx = torch.zeros(B, N, lay.d_in, dtype=dtype, device=device)
    ctx[..., lay.values] = contexts.to(dtype)
    ctx[..., lay.shown] = 1
    qry = torch.zeros(B, Q, T, lay.d_in, dtype=dtype, device=device)
    for j, m in enumerate(nodes):
        qry[:, :, j, :m] = queries[..., :m].to(dtype)  # the nodes before m (topological order)
        qry[:, :, j, M : M + m] = 1
        qry[:, :, j, lay.query_flag] = 1
        qry[:, :, j, lay.targets.start + m] = 1
    return torch.cat([sink, ctx, qry.reshape(B, Q * T, lay.d_in)], 1)
