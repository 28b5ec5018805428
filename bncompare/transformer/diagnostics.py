"""Where does a query look? Attention diagnostics for the in-context transformer.

The counting solution (NOTES section 3) has each query for node m put its
attention on the context rows whose parent values match the query's. For a
trained model we measure how close it comes: the share of a head's attention
mass that query tokens put on matching rows, on the other context rows, on the
sink, on themselves and (softmax_1) on the null key.

``scaled_dot_product_attention`` does not return its weights, so they are
recomputed from each block's own modules (same inputs, same scale, same mask).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from bncompare.networks.graph import Graph, check_data
from bncompare.transformer.encoding import attention_mask, encode
from bncompare.transformer.model import InContextTransformer


@torch.no_grad()
def attention_weights(model: InContextTransformer, tokens: torch.Tensor, mask: torch.Tensor,
                      layers: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
    """Attention weights of the requested layers, {layer: (B, H, L, L + null)}; the
    last column is the null key when ``attention="softmax_1"``."""
    n_layer = len(model.blocks)
    layers = [n_layer - 1] if layers is None else [int(i) % n_layer for i in layers]
    out = {}
    h = model.embed(tokens)
    for i, block in enumerate(model.blocks):
        if i in layers:
            attn = block.attn
            x = block.norm1(h)
            B, L, D = x.shape
            heads = lambda t: t.view(B, L, attn.n_head, D // attn.n_head).transpose(1, 2)  # noqa: E731
            q, k = heads(attn.q(x)), heads(attn.k(x))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D // attn.n_head)
            scores = scores.masked_fill(~mask, float("-inf"))
            if attn.null_key:  # the zero key: logit 0 for every row
                scores = torch.cat([scores, scores.new_zeros(B, attn.n_head, L, 1)], -1)
            out[i] = torch.softmax(scores, -1)
        h = block(h, mask)
    return out


@torch.no_grad()
def attention_to_parents(model: InContextTransformer, graph: Graph, contexts, queries,
                         nodes: Sequence[int] | None = None, layers: Sequence[int] | None = None) -> list[dict]:
    """Share of query-token attention on parent-matching context rows, one dict per (layer, head).

    ``contexts`` (B, N, M) and ``queries`` (B, Q, M) are samples; every query asks
    for each node in ``nodes`` (default: all). ``layers`` defaults to the last
    layer; negative indices count from the end. Each dict holds ``layer``,
    ``head``, ``n_context`` and the mean shares ``match``, ``other``, ``sink``,
    ``self``, ``null`` (they sum to 1), plus ``chance``: the fraction of context
    rows that match, i.e. the ``match`` share of a head that attends uniformly
    over the context.
    """
    contexts = check_data(graph, contexts, "context")
    queries = check_data(graph, queries, "query")
    nodes = list(range(graph.n_nodes)) if nodes is None else [int(m) for m in nodes]
    param = next(model.parameters())
    contexts, queries = contexts.to(param.device), queries.to(param.device)
    B, N, _ = contexts.shape
    Q, T = queries.shape[1], len(nodes)
    tokens = encode(graph, contexts, queries, nodes, param.dtype)
    mask = attention_mask(N, Q * T, device=param.device)
    weights = attention_weights(model, tokens, mask, layers)

    # match[b, q, j, i]: context row i has the query's values on every parent of nodes[j]
    match = torch.ones(B, Q, T, N, dtype=torch.bool, device=contexts.device)
    for j, m in enumerate(nodes):
        for p in graph.parents[m]:
            match[:, :, j] &= contexts[:, None, :, p] == queries[:, :, None, p]
    chance = float(match.float().mean()) if N else float("nan")

    rows = []
    for layer, w in sorted(weights.items()):
        H = w.shape[1]
        wq = w[:, :, 1 + N : 1 + N + Q * T].reshape(B, H, Q, T, -1)  # query rows only
        ctx_w = wq[..., 1 : 1 + N]
        on_match = (ctx_w * match[:, None].to(w.dtype)).sum(-1)
        on_ctx = ctx_w.sum(-1)
        own = torch.diagonal(w[:, :, 1 + N : 1 + N + Q * T, 1 + N : 1 + N + Q * T], dim1=-2, dim2=-1)
        null = wq[..., -1] if w.shape[-1] > w.shape[-2] else torch.zeros_like(on_ctx)
        for head in range(H):
            mean = lambda t: float(t[:, head].mean())  # noqa: E731
            rows.append({
                "layer": layer, "head": head, "n_context": N,
                "match": mean(on_match), "other": mean(on_ctx - on_match), "sink": mean(wq[..., 0]),
                "self": float(own[:, head].mean()), "null": mean(null), "chance": chance,
            })
    return rows
