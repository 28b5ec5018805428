"""Estimators of an autoregressive process ``s_{t+1} = W s_t + sigma eps`` from one prefix ``s_1 .. s_t``.

Every estimator here fits B prefixes at once (contexts ``(B, t, d)``) and predicts the next state
(:class:`bncompare.estimators.base.AREstimator`).

One step of gradient descent on the in-context least-squares loss
``L(W) = 1/2 sum_{u < t} ||s_{u+1} - W s_u||^2`` from ``W = 0`` gives ``W_1 = eta * A_t`` with
``A_t = sum_{u < t} s_{u+1} s_u'``, and the forecast ``eta * A_t s_t`` (:func:`gd_direction`).
:func:`optimal_step` is the step that minimizes the expected squared error of that forecast over
the law of the sequences, pooled over t = 1 .. horizon (one step for every t, as one set of weights
of a linear attention layer has).
"""
from __future__ import annotations

import torch

OPTIMUM_SEQUENCES = 2**14  # Monte Carlo sequences behind the optimal step (its relative sd is ~1e-3)
OPTIMUM_SEED = 7_919  # their own seed stream: never an evaluation or training draw


def gd_direction(contexts: torch.Tensor) -> torch.Tensor:
    """``A_t s_t`` (B, d) for prefixes (B, t, d): the forecast of one GD step from W = 0 with step 1."""
    x, y = contexts[:, :-1], contexts[:, 1:]  # pairs (s_u, s_{u+1}), u < t
    last = contexts[:, -1]
    return torch.einsum("bui,buj,bj->bi", y, x, last)


def gd_directions(sequences: torch.Tensor) -> torch.Tensor:
    """``A_t s_t`` for every prefix t = 1 .. L of sequences (B, L, d), as (B, L, d), in one pass."""
    B, L, d = sequences.shape
    outer = torch.einsum("bui,buj->buij", sequences[:, 1:], sequences[:, :-1])  # s_{u+1} s_u'
    A = torch.cat([torch.zeros(B, 1, d, d, dtype=sequences.dtype), torch.cumsum(outer, 1)], 1)  # A_1 .. A_L
    return torch.einsum("btij,btj->bti", A, sequences)


def optimal_step(prior, d: int, horizon: int, n_sequences: int = OPTIMUM_SEQUENCES, seed: int = OPTIMUM_SEED) -> float:
    """The step eta minimizing E sum_{t=1..horizon} ||eta A_t s_t - s_{t+1}||^2 under ``prior``'s sequences:
    eta = sum E<A_t s_t, s_{t+1}> / sum E||A_t s_t||^2, the expectations by Monte Carlo on a seed of its own."""
    from bncompare.networks.autoregressive import ar_graph

    gen = torch.Generator().manual_seed(seed)
    num = den = 0.0
    for start in range(0, n_sequences, 1024):
        n = min(1024, n_sequences - start)
        seqs = prior.sequences(prior.sample(ar_graph(d), n, gen), horizon + 1, gen)
        f = gd_directions(seqs[:, :-1])
        num += float((f * seqs[:, 1:]).sum())
        den += float((f * f).sum())
    return num / den if den > 0 else 0.0
