"""Any :class:`InContextTransformer` as an estimator behind the common interface.

``fit`` only stores the contexts (the model reads them in context);
``predict_proba`` encodes contexts + queries and runs the model in chunks of
contexts, answering all requested targets of all queries in one forward pass.
Generation (``_generate``) asks the same model one node at a time, in the same
chunks, with tokens it updates from node to node instead of encoding them again.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator
from bncompare.networks.sampling import draw_categorical
from bncompare.transformer.encoding import Layout, encode, shown_slots
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
    def _generate(self, x, u):
        """The base class's loop (``_predict_proba(x, [m])`` for each node m in turn), bit for bit, in the chunks
        ``answer`` uses, but each chunk's tokens are encoded once: from one node to the next a query token
        changes only in the slots of the nodes it stops or starts showing (the node just drawn, in the prefix
        view) and in its target flag, which are rewritten in place. On munin's 1041 nodes, encoding the whole
        token (5651 one-hot slots) for every node was most of a generation step."""
        model, graph = self.model, self.graph_
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        layout, M, N = Layout(graph.cards), graph.n_nodes, self.contexts_.shape[1]
        shown = shown_slots(graph, layout, range(M), model.cfg.query_view).to(device)  # (M, S)
        q_chunk = max(self.max_query_tokens, N)  # answer's chunk of query rows at one target
        model.eval()
        for s in range(0, x.shape[0], self.batch_size):
            ctx = self.contexts_[s : s + self.batch_size].to(device)
            for q0 in range(0, x.shape[1], q_chunk):
                rows = x[s : s + self.batch_size, q0 : q0 + q_chunk]  # a view: draws go straight into x
                draws = u[s : s + self.batch_size, q0 : q0 + q_chunk]
                tokens = encode(graph, ctx, rows.to(device), [0], dtype, view=model.cfg.query_view)
                if s not in self.context_states_:
                    self.context_states_[s] = model.context_states(tokens, N)
                values = tokens[:, 1 + N :, : layout.n_onehot]  # the query tokens' shown values
                drawn = torch.zeros_like(values)  # one-hots of the nodes drawn so far, every slot
                for m in range(M):
                    if m:
                        changed = shown[m] ^ shown[m - 1]
                        values[..., changed] = drawn[..., changed] * shown[m][changed]
                        tokens[:, 1 + N :, layout.target(m - 1)] = 0
                        tokens[:, 1 + N :, layout.target(m)] = 1
                    out = model(tokens, N, seen=self.context_states_[s]).to(torch.float64)
                    probs = model.probabilities(out[..., : graph.cards[m]])
                    rows[..., m] = draw_categorical(probs.to(draws.device), draws[..., m])
                    lo = layout.offsets[m]
                    drawn[..., lo : lo + graph.cards[m]] = torch.nn.functional.one_hot(
                        rows[..., m].to(device), graph.cards[m]).to(dtype)


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
