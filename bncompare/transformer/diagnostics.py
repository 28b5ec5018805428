"""Where does a query look? Attention diagnostics for the in-context transformer.

The counting solution (the construction in construct.py) has each query for node m put its
attention on the context rows whose parent values match the query's. For a
trained model we measure how close it comes: the share of a head's attention
mass that query tokens put on matching rows, on the other context rows, on the
sink, on themselves and (softmax_1) on the null key.

The weights come from the model's own forward pass (``return_weights=True``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from bncompare.networks.graph import Graph, check_data
from bncompare.transformer.encoding import encode
from bncompare.transformer.model import InContextTransformer


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
    tokens = encode(graph, contexts, queries, nodes, param.dtype, view=model.cfg.query_view)
    n_layer = model.n_attention_layers  # the blocks, then a mixture readout (the counting attention)
    layers = [n_layer - 1] if layers is None else sorted({int(i) % n_layer for i in layers})
    _, per_layer = model(tokens, N, return_weights=True)
    weights = {i: per_layer[i] for i in layers}  # (B, H, Q*T, sink + N context + self [+ null])

    # match[b, q, j, i]: context row i has the query's values on every parent of nodes[j]
    match = torch.ones(B, Q, T, N, dtype=torch.bool, device=contexts.device)
    for j, m in enumerate(nodes):
        for p in graph.parents[m]:
            match[:, :, j] &= contexts[:, None, :, p] == queries[:, :, None, p]
    chance = float(match.float().mean()) if N else float("nan")

    rows = []
    for layer, w in sorted(weights.items()):
        H = w.shape[1]
        wq = w.reshape(B, H, Q, T, -1)
        ctx_w = wq[..., 1 : 1 + N]
        on_match = (ctx_w * match[:, None].to(w.dtype)).sum(-1)
        on_ctx = ctx_w.sum(-1)
        null = wq[..., N + 2] if w.shape[-1] > N + 2 else torch.zeros_like(on_ctx)
        for head in range(H):
            def mean(t, head=head):
                return float(t[:, head].mean())
            rows.append({
                "layer": layer, "head": head, "n_context": N,
                "match": mean(on_match), "other": mean(on_ctx - on_match), "sink": mean(wq[..., 0]),
                "self": mean(wq[..., N + 1]), "null": mean(null), "chance": chance,
            })
    return rows
