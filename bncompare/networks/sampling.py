"""Vectorized ancestral sampling: G CPT sets x N rows in one call."""
from __future__ import annotations

import torch

from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch, check_cpt_batch


def draw_categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the first state whose cumulative probability exceeds ``u``.

    ``probs`` has shape ``(..., d)`` and ``u`` shape ``(...)``. Using explicit
    uniforms lets two samplers be coupled (same ``u`` -> same sample).
    """
    cdf = probs.cumsum(-1)
    x = (cdf <= u.unsqueeze(-1).to(cdf.dtype)).sum(-1)
    return x.clamp_max(probs.shape[-1] - 1)


def sample_with_uniforms(graph: Graph, cpts: CPTBatch, u: torch.Tensor) -> torch.Tensor:
    """Ancestral samples driven by uniforms ``u`` of shape ``(G, N, M)``."""
    check_cpt_batch(graph, cpts)
    G, N, M = u.shape
    x = torch.zeros(G, N, M, dtype=torch.long, device=u.device)
    batch = torch.arange(G, device=u.device)[:, None]
    for m in range(M):
        rows = cpts[m][batch, graph.config_index(x, m)]  # (G, N, d_m)
        x[..., m] = draw_categorical(rows, u[..., m])
    return x


def sample(graph: Graph, cpts: CPTBatch, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples from each of the G CPT sets: a long tensor of shape ``(G, n, M)``."""
    G = cpts[0].shape[0]
    device = cpts[0].device
    u = torch.rand(G, n, graph.n_nodes, generator=generator, dtype=torch.float64).to(device)
    return sample_with_uniforms(graph, cpts, u)
