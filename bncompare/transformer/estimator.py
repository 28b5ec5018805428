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
        return self

    @torch.no_grad()
    def predict_proba(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        param = next(self.model.parameters())
        device, dtype = param.device, param.dtype
        ctx, queries = self.contexts_.to(device), queries.to(device)
        B, N, _ = ctx.shape
        Q, T = queries.shape[1], len(nodes)
        # Queries never see each other, so answering them in chunks changes nothing
        # but bounds the memory of one forward pass.
        q_chunk = max(1, max(self.max_query_tokens, N) // T)
        self.model.eval()
        out = torch.empty(B, Q, T, self.model.cfg.d_out, dtype=torch.float64, device=device)
        for q0 in range(0, Q, q_chunk):
            qs = queries[:, q0 : q0 + q_chunk]
            for s in range(0, B, self.batch_size):
                tokens = encode(self.graph_, ctx[s : s + self.batch_size], qs[s : s + self.batch_size], nodes, dtype,
                                view=self.model.cfg.query_view)
                o = self.model(tokens, N)  # the query tokens
                o = o.reshape(o.shape[0], qs.shape[1], T, -1)
                out[s : s + self.batch_size, q0 : q0 + q_chunk] = o.to(torch.float64)
        return [self.model.probabilities(out[:, :, j, : self.graph_.cards[m]]) for j, m in enumerate(nodes)]
