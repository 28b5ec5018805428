"""Any :class:`InContextTransformer` as an estimator behind the common interface.

``fit`` only stores the contexts (the model reads them in context);
``predict_proba`` encodes contexts + queries and runs the model in chunks of
contexts, answering all requested targets of all queries in one forward pass.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator
from bncompare.transformer.encoding import Layout, encode
from bncompare.transformer.model import InContextTransformer


class TransformerEstimator(Estimator):
    name = "transformer"

    def __init__(self, model: InContextTransformer, batch_size: int = 256, max_query_tokens: int = 256,
                 name: str | None = None):
        self.model = model
        self.batch_size = batch_size
        self.max_query_tokens = max_query_tokens
        if name:
            self.name = name

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        layout = Layout(graph.cards)
        if layout.d_in != self.model.cfg.d_in or layout.d_out != self.model.cfg.d_out:
            raise BNError(
                f"{self.name}: model expects tokens of width {self.model.cfg.d_in} and {self.model.cfg.d_out} outputs, "
                f"but this graph needs {layout.d_in} and {layout.d_out}: it was built for another network"
            )
        self.contexts_ = contexts
        self.context_states_ = {}  # filled by answer: the contexts' states, computed once for every query
        return self

    def _predict_proba(self, queries, nodes):
        return answer(self.model, self.graph_, self.contexts_, queries, nodes, self.batch_size, self.max_query_tokens,
                      self.context_states_)


@torch.no_grad()
def answer(model: InContextTransformer, graph, contexts: torch.Tensor, queries: torch.Tensor, nodes: list[int],
           batch_size: int = 256, max_query_tokens: int = 256, states: dict | None = None) -> list[torch.Tensor]:
    """``model``'s probabilities of ``nodes`` for each query, (B, Q, card) float64 each, in chunks of contexts.

    ``states``: a dict kept with these contexts (empty at first) that holds their :meth:`context_states`
    between calls, so that asking again (generation asks once per node) computes only the query rows."""
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    ctx, queries = contexts.to(device), queries.to(device)
    B, N, _ = ctx.shape
    Q, T = queries.shape[1], len(nodes)
    # Queries never see each other, so answering them in chunks changes nothing
    # but bounds the memory of one forward pass.
    q_chunk = max(1, max(max_query_tokens, N) // T)
    model.eval()
    states = {} if states is None else states
    out = torch.empty(B, Q, T, model.cfg.d_out, dtype=torch.float64, device=device)
    for s in range(0, B, batch_size):
        c = ctx[s : s + batch_size]
        for q0 in range(0, Q, q_chunk):
            qs = queries[s : s + batch_size, q0 : q0 + q_chunk]
            tokens = encode(graph, c, qs, nodes, dtype, view=model.cfg.query_view)
            if s not in states:  # the context rows' states: the same for every chunk of queries
                states[s] = model.context_states(tokens, N)
            o = model(tokens, N, seen=states[s])  # the query tokens
            out[s : s + batch_size, q0 : q0 + q_chunk] = o.reshape(o.shape[0], qs.shape[1], T, -1).to(torch.float64)
    return [model.probabilities(out[:, :, j, : graph.cards[m]]) for j, m in enumerate(nodes)]
