"""Autoregressive generation from any fitted in-context estimator.

New samples are drawn variable by variable in topological order: the estimator
predicts ``x_m`` given the prefix drawn so far (``predict_proba(x, [m])``) and
``x_m`` is drawn by inverse CDF from a uniform. The samples are states generate drew
itself, so they are validated once, not at every node: the estimator's ``_generate``
draws them (one validated ``_predict_proba(x, [m])`` per node unless it carries work
from node to node, as the naive prefix MLE does). With the same uniforms, an
estimator that knows the graph reproduces ancestral sampling from its CPTs
exactly, which makes generation testable deterministically::

    mle = MLE().fit(graph, contexts)
    x = generate(mle, n=100, u=u)                      # == sample_with_uniforms(graph, mle.cpts_, u)
    x = generate(ConstructedTransformer().fit(graph, contexts), n=100, u=u)   # the same samples

Works for counting estimators, the naive prefix MLE, and constructed or trained transformers.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator


def generate(
    estimator: Estimator,
    n: int,
    generator: torch.Generator | None = None,
    u: torch.Tensor | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """``n`` new samples per fitted context: a long tensor of shape ``(B, n, M)``.

    ``u`` (shape ``(B, n, M)``, values in [0, 1)) fixes the uniforms, to couple
    two generators; otherwise they are drawn from ``generator`` in float64,
    exactly as :func:`bncompare.networks.sampling.sample` draws them.
    Samples are predicted ``chunk_size`` at a time: a transformer puts every
    query in one sequence, so its cost grows with the square of that length.
    """
    if not isinstance(estimator, Estimator):
        raise BNError(f"generate needs a fitted Estimator, got {type(estimator).__name__}")
    if not hasattr(estimator, "graph_"):
        raise BNError(f"{estimator.name}: call fit before generate")
    graph, B = estimator.graph_, estimator.n_contexts_
    M = graph.n_nodes
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BNError(f"number of samples to generate must be an integer >= 0, got {n!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise BNError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if u is None:
        u = torch.rand(B, n, M, generator=generator, dtype=torch.float64)
    else:
        if not isinstance(u, torch.Tensor) or not u.dtype.is_floating_point:
            raise BNError("uniforms u must be a floating-point tensor")
        if tuple(u.shape) != (B, n, M):
            raise BNError(f"uniforms u must have shape (B={B}, n={n}, M={M}), got {tuple(u.shape)}")
        if u.numel() and not ((u >= 0) & (u < 1)).all():
            raise BNError("uniforms u must lie in [0, 1)")
    x = torch.zeros(B, n, M, dtype=torch.long, device=u.device)
    if x.numel() == 0:
        return x
    x, _ = estimator._check_queries(x, None)  # the one validation: every state drawn below is in range
    for s in range(0, n, chunk_size):  # samples are independent given the context: chunks change nothing
        estimator._generate(x[:, s : s + chunk_size], u[:, s : s + chunk_size])
    return x
