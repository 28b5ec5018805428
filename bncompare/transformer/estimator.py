"""Any :class:`InContextTransformer` as an estimator behind the common interface.

``fit`` only stores the contexts (the model reads them in context);
``predict_proba`` encodes contexts + queries and runs the model in chunks of
contexts, answering all requested targets of all queries in one forward pass.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator
from bncompare.transformer.encoding import Layout, attention_mask, encode
from bncompare.transformer.model import InContextTransformer


class TransformerEstimator(Estimator):
    name = "transformer"

    def __init__(self, model: InContextTransformer, batch_size: int = 256, name: str | None = None):
        self.model = model
        self.batch_size = batch_size
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
        mask = attention_mask(N, Q * T, device=device)
        self.model.eval()
        outs = []
        for s in range(0, B, self.batch_size):
            tokens = encode(self.graph_, ctx[s : s + self.batch_size], queries[s : s + self.batch_size], nodes, dtype)
            out = self.model(tokens, mask)[:, 1 + N :]  # query positions
            outs.append(out.reshape(out.shape[0], Q, T, -1).to(torch.float64))
        out = torch.cat(outs, 0)
        return [self._to_probs(out[:, :, j, : self.graph_.cards[m]]) for j, m in enumerate(nodes)]

    def _to_probs(self, out: torch.Tensor) -> torch.Tensor:
        if self.model.cfg.output == "logits":
            return torch.softmax(out, -1)
        return out.clamp_min(0) / out.clamp_min(0).sum(-1, keepdim=True)
