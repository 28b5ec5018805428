"""Vectorized ancestral sampling: G CPT sets x N rows in one call."""
from __future__ import annotations

import torch

from bncompare.networks.cpts import CPTBatch, check_cpt_batch
from bncompare.networks.graph import Graph


def draw_categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the first state whose cumulative probability exceeds ``u``.

    ``probs`` has shape ``(..., d)`` and ``u`` shape ``(...)``. Using explicit
    uniforms lets two samplers be coupled (same ``u`` -> same sample).
    """
    cdf = probs.cumsum(-1)
    x = (cdf <= u.unsqueeze(-1).to(cdf.dtype)).sum(-1)
    return x.clamp_max(probs.shape[-1] - 1)


def sample_with_uniforms(graph: Graph, cpts: CPTBatch, u: torch.Tensor) -> torch.Tensor:
    """Ancestral samples driven by uniforms ``u`` of shape ``(G, N, M)``.

    Same rule as :func:`draw_categorical` (state = number of CDF values <= u),
    but per node it gathers only the d - 1 CDF values it needs, on contiguous
    (G, N) planes: several times faster than gathering whole rows.
    """
    check_cpt_batch(graph, cpts)
    G, N, M = u.shape
    planes = u.permute(2, 0, 1).contiguous()  # (M, G, N)
    set_id = torch.arange(G, device=u.device)[:, None]
    cols: list[torch.Tensor] = []
    for m in range(M):
        q, d = graph.n_configs[m], graph.cards[m]
        row = (set_id * q).expand(G, N)
        for p, s in zip(graph.parents[m], graph.strides[m]):
            row = row + cols[p] * s
        row = row.reshape(-1)
        cdf = cpts[m].to(u.dtype).cumsum(-1).reshape(G * q, d)
        x = torch.zeros(G * N, dtype=torch.long, device=u.device)
        for v in range(d - 1):
            x += planes[m].reshape(-1) >= cdf[:, v][row]
        cols.append(x.reshape(G, N))
    return torch.stack(cols, -1)


def sample(graph: Graph, cpts: CPTBatch, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples from each of the G CPT sets: a long tensor of shape ``(G, n, M)``."""
    G = cpts[0].shape[0]
    device = cpts[0].device
    u = torch.rand(G, n, graph.n_nodes, generator=generator, dtype=torch.float64).to(device)
    return sample_with_uniforms(graph, cpts, u)
