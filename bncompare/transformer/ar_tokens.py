"""Token encoding of an autoregressive prefix ``s_1 .. s_t`` (in-context autoregression): one token per state.

Token layout (width ``d_in = 2 d + 2 + POSITION_FEATURES``)::

    [ current s_tau (d) | previous s_{tau-1} (d) | query flag (1) | sink flag (1) | position (5) ]

A sequence is ``[sink, context rows tau = 1..t, query]``, as for the other encodings. Context row tau
carries the pair ``(s_tau, s_{tau-1})`` with ``s_0 = 0``: the pair a least-squares fit of W reads. The
ONE query token per sequence carries ``s_t`` in the previous slot, zeros in the current slot (the
state to predict) and the query flag; the readout answers the d coordinates of ``s_{t+1}`` at once
(a linear head of width d), so one forward pass per prefix, not d.

The model's attention has no positions of its own: each token carries ``u = tau / horizon`` (the query
``u = (t + 1) / horizon``, the position of the pair it completes) and ``sin``/``cos`` of ``pi u`` and
``2 pi u``. ``horizon`` is the training's longest prefix (``n_context_max``), fixed at training time.
Values are the raw float64 states cast to the model's dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

POSITION_FEATURES = 5  # u, sin(pi u), cos(pi u), sin(2 pi u), cos(2 pi u)


@dataclass(frozen=True)
class ARLayout:
    """Where each field sits in a token, for a process of dimension ``d``."""

    d: int

    @property
    def cards(self) -> tuple[int, ...]:
        """Card 1 per coordinate, as the process graph has (a model config records it)."""
        return (1,) * self.d

    @property
    def current(self) -> slice:
        return slice(0, self.d)

    @property
    def previous(self) -> slice:
        return slice(self.d, 2 * self.d)

    @property
    def query_flag(self) -> int:
        return 2 * self.d

    @property
    def sink_flag(self) -> int:
        return 2 * self.d + 1

    @property
    def position(self) -> slice:
        return slice(2 * self.d + 2, 2 * self.d + 2 + POSITION_FEATURES)

    @property
    def d_in(self) -> int:
        return 2 * self.d + 2 + POSITION_FEATURES

    @property
    def d_out(self) -> int:
        return self.d  # the forecast of s_{t+1}


def position_features(u: torch.Tensor) -> torch.Tensor:
    """(..., POSITION_FEATURES) features of relative positions ``u`` (...)."""
    return torch.stack([u, torch.sin(math.pi * u), torch.cos(math.pi * u),
                        torch.sin(2 * math.pi * u), torch.cos(2 * math.pi * u)], -1)


def encode_ar(contexts: torch.Tensor, horizon: int, dtype=torch.float32) -> torch.Tensor:
    """Tokens (B, 1 + t + 1, d_in) for prefixes (B, t, d): the sink, t context rows, one query token.
    The query token holds only the prefix (s_t): nothing of the state it predicts."""
    B, t, d = contexts.shape
    lay = ARLayout(d)
    device = contexts.device
    x = contexts.to(dtype)
    tokens = torch.zeros(B, t + 2, lay.d_in, dtype=dtype, device=device)
    tokens[:, 0, lay.sink_flag] = 1
    tokens[:, 1 : t + 1, lay.current] = x
    tokens[:, 2 : t + 1, lay.previous] = x[:, :-1]  # s_0 = 0 in row tau = 1
    tokens[:, t + 1, lay.previous] = x[:, -1]
    tokens[:, t + 1, lay.query_flag] = 1
    u = torch.arange(1, t + 2, dtype=torch.float64, device=device) / max(int(horizon), 1)
    tokens[:, 1:, lay.position] = position_features(u).to(dtype)
    return tokens
