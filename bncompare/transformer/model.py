"""The in-context transformer, whole, in one file (in the spirit of nanoGPT's model.py).

A non-causal, pre-norm transformer over the tokens of :mod:`encoding`: a
sequence is ``[sink, N context rows, query tokens]``. The same :class:`Block`
serves the trained model and the constructed one (:mod:`construct`), which
writes closed-form weights into a member of this family with ``norm="none"``
and one head, so the family provably contains an exact counting solution.

Who attends to whom (``context_attention``):

- ``"full"``: sink and context rows attend to the sink and every context row;
- ``"self"``: sink and context rows attend only to the sink and themselves, so
  each context row is processed on its own. Counting needs nothing more (the
  construction never reads what context rows gather), and the cost drops from
  (N + Q)^2 to N * Q per head.

In both, a query token attends to the sink, every context row and itself, never
to another query.

Other settings, each a lever of the learning benchmark (docs/levers.md gives their measured effect):

- ``attention="softmax_1"`` adds a null key with logit 0 and value 0 (softmax_1 of
  the outlier-efficient Hopfield paper): a head may attend to "nothing";
- ``attn_scale``: ``"fixed"`` (1/sqrt(head_dim)), ``"learned"`` (times a learned
  per-head temperature) or ``"log_n"`` (also times log of the number of keys, as
  Scalable-Softmax, arXiv 2501.19399, so attention does not fade as N grows);
- ``mlp``: ``"relu"`` or ``"swiglu"`` (a gated unit: the product of two linear
  maps, which is what "this value, if its node is a parent of the target" is);
- ``output``: the readout (:mod:`readouts`: ``"logits"``, ``"probs"``, ``"mixture"``,
  ``"evidence"``), with its settings ``match_scores`` and ``evidence_rounds``;
- ``query_view`` is read by the encoder, not the model: ``"prefix"`` shows a query
  every earlier variable (the paper's), ``"parents"`` only the target's parents;
- ``sparse``: the blocks' linear maps hold sparse matrices (:class:`SparseLinear`), for weights that are
  written rather than trained (the construction's are almost all zero: dense, they would not fit in memory
  on a network of a thousand nodes). Only a readout that is not trained may have them.

``d_in``, ``d_out`` and ``cards`` come from the graph: they are filled in when a model
is built for one (:meth:`TransformerConfig.for_layout`), never set by hand.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from bncompare.errors import BNError, check_setting_types
from bncompare.transformer.encoding import Layout
from bncompare.transformer.readouts import READOUTS, TRAINED_OUTPUTS, norm_layer

CHOICES = {
    "norm": ("layer", "none"),
    "attention": ("softmax", "softmax_1"),
    "output": tuple(READOUTS),
    "context_attention": ("full", "self"),
    "attn_scale": ("fixed", "learned", "log_n"),
    "mlp": ("relu", "swiglu"),
    "query_view": ("prefix", "parents"),
}
GRAPH_FIELDS = ("d_in", "d_out", "cards")  # filled from the graph's layout when a model is built
WRITTEN_FIELDS = ("sparse",)  # settings of written (constructed) models only: no training takes or keys them


@dataclass
class TransformerConfig:
    """The model's settings; the defaults are the trained recipe's."""

    d_model: int = 64
    n_layer: int = 2
    n_head: int = 2  # few wide heads: one head must score every parent of a target at once
    d_ff: int = 256
    norm: str = "layer"  # "layer" (pre-norm) | "none" (the construction's)
    attention: str = "softmax"  # "softmax" | "softmax_1"
    context_attention: str = "self"  # "full" | "self"
    attn_scale: str = "learned"  # "fixed" | "learned" | "log_n"
    mlp: str = "swiglu"  # "relu" | "swiglu"
    query_view: str = "prefix"  # "prefix" | "parents" (used by the encoder)
    output: str = "mixture"  # the readout, a key of readouts.READOUTS
    match_scores: bool = True  # the mixture readout adds learned per-node gains on matching values
    evidence_rounds: int = 4  # rounds of the evidence readout's parent search
    sparse: bool = False  # sparse weight matrices in the embedding and the blocks (written, not trained)
    d_in: int | None = None  # token width (from the graph)
    d_out: int | None = None  # largest cardinality (from the graph)
    cards: tuple[int, ...] | None = None  # the nodes' cardinalities (from the graph)

    def __post_init__(self):
        check_setting_types(self, "model")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise BNError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("d_in", "d_out", "d_model", "n_layer", "n_head", "d_ff"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise BNError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise BNError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.cards is not None:
            self.cards = tuple(int(c) for c in self.cards)
        READOUTS[self.output].check(self)
        if self.sparse:
            if self.output in TRAINED_OUTPUTS:
                raise BNError(f"sparse weights are written, not trained: output={self.output!r} is a trained readout")

    def for_layout(self, layout: Layout) -> TransformerConfig:
        """This config with the graph-derived fields of ``layout`` filled in."""
        return replace(self, d_in=layout.d_in, d_out=layout.d_out, cards=tuple(layout.cards))

    def to_dict(self) -> dict:
        """The fields as plain JSON values."""
        d = asdict(self)
        d["cards"] = None if self.cards is None else list(self.cards)  # as JSON gives it back
        return d


class SparseLinear(nn.Module):
    """``x @ W.T + b`` with ``W`` a sparse (CSR) matrix, written by :meth:`set_weight`; cost: its nonzeros per row."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.register_buffer("weight", torch.sparse_csr_tensor(
            torch.zeros(n_out + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0), (n_out, n_in)))
        self.bias = nn.Parameter(torch.zeros(n_out))

    @torch.no_grad()
    def set_weight(self, rows, cols, values) -> None:
        """``W[rows[i], cols[i]] = values[i]`` (distinct positions) and 0 elsewhere."""
        dtype, device = self.bias.dtype, self.bias.device
        idx = torch.tensor([list(rows), list(cols)], dtype=torch.long).reshape(2, -1)
        w = torch.sparse_coo_tensor(idx, torch.tensor(list(values), dtype=torch.float64), (self.n_out, self.n_in))
        self.weight = w.coalesce().to_sparse_csr().to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.reshape(-1, self.n_in).T).T
        return y.reshape(*x.shape[:-1], self.n_out) + self.bias


def linear(cfg: TransformerConfig, n_in: int, n_out: int) -> nn.Module:
    """A block's linear map: dense (trained) or sparse (``cfg.sparse``: written)."""
    return SparseLinear(n_in, n_out) if cfg.sparse else nn.Linear(n_in, n_out)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg, self.n_head = cfg, cfg.n_head
        self.null_key = cfg.attention == "softmax_1"
        self.q, self.k, self.v, self.proj = (linear(cfg, cfg.d_model, cfg.d_model) for _ in range(4))
        if cfg.attn_scale != "fixed":  # log of a per-head temperature; kept out of weight decay (1-d)
            self.log_temp = nn.Parameter(torch.zeros(cfg.n_head))

    def scale(self, n_keys: int) -> torch.Tensor | float:
        """Multiplier of q.k for each head, (H, 1, 1) or a float."""
        s = 1.0 / math.sqrt(self.cfg.d_model // self.n_head)
        if self.cfg.attn_scale == "fixed":
            return s
        s = s * self.log_temp.exp()[:, None, None]
        return s * math.log(max(n_keys, 2)) if self.cfg.attn_scale == "log_n" else s

    def forward(self, h: torch.Tensor, n_context: int, return_weights: bool = False, queries_only: bool = False):
        """(B, L, D) -> (B, L, D), or (B, Lq, D) for the query rows only; with ``return_weights`` also
        the query rows' attention, (B, H, Lq, 1 + N + 1 [+ 1]): on the sink, each context row, itself
        [, the null key]."""
        B, L, D = h.shape
        n_seen = 1 + n_context  # sink + context rows
        heads = lambda t: t.view(B, -1, self.n_head, D // self.n_head).transpose(1, 2)  # (B, H, L, hs)  # noqa: E731
        q = heads(self.q(h[:, n_seen:] if queries_only else h))
        k, v = heads(self.k(h)), heads(self.v(h))

        # queries: keys are the sink, the context rows and the query itself
        qq, kq, vq = q if queries_only else q[:, :, n_seen:], k[:, :, n_seen:], v[:, :, n_seen:]  # (B, H, Lq, hs)
        scale_q = self.scale(n_seen + 1)
        logits = torch.cat([qq @ k[:, :, :n_seen].transpose(-1, -2), (qq * kq).sum(-1, keepdim=True)], -1)
        logits = logits * scale_q  # (B, H, Lq, n_seen + 1)
        if self.null_key:
            logits = torch.cat([logits, logits.new_zeros(*logits.shape[:-1], 1)], -1)
        w = torch.softmax(logits, -1)
        y_q = w[..., :n_seen] @ v[:, :, :n_seen] + w[..., n_seen : n_seen + 1] * vq  # null value is 0
        if queries_only:
            out = self.proj(y_q.transpose(1, 2).reshape(B, L - n_seen, D))
            return (out, w) if return_weights else out

        # sink and context rows
        qc, kc, vc = q[:, :, :n_seen], k[:, :, :n_seen], v[:, :, :n_seen]
        if self.cfg.context_attention == "full":
            scale_c = self.scale(n_seen)
            if self.null_key:
                kc = torch.cat([kc, kc.new_zeros(B, self.n_head, 1, kc.shape[-1])], 2)
                vc = torch.cat([vc, vc.new_zeros(B, self.n_head, 1, vc.shape[-1])], 2)
            if isinstance(scale_c, float):
                y_c = F.scaled_dot_product_attention(qc, kc, vc, scale=scale_c)
            else:
                y_c = torch.softmax((qc @ kc.transpose(-1, -2)) * scale_c, -1) @ vc
        else:  # each row sees the sink and itself (the sink: itself, once)
            scale_c = self.scale(2)
            to_sink = (qc * kc[:, :, :1]).sum(-1, keepdim=True)
            to_self = (qc * kc).sum(-1, keepdim=True)
            pair = torch.cat([to_sink, to_self], -1) * scale_c
            sink_self = torch.zeros(n_seen, 2, dtype=torch.bool, device=h.device)
            sink_self[0, 1] = True  # the sink's "self" is the sink: count it once
            pair = pair.masked_fill(sink_self, float("-inf"))
            if self.null_key:
                pair = torch.cat([pair, pair.new_zeros(*pair.shape[:-1], 1)], -1)
            wc = torch.softmax(pair, -1)
            y_c = wc[..., :1] * vc[:, :, :1] + wc[..., 1:2] * vc

        y = torch.cat([y_c, y_q], 2).transpose(1, 2).reshape(B, L, D)
        out = self.proj(y)
        return (out, w) if return_weights else out


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.gated = cfg.mlp == "swiglu"
        self.up = linear(cfg, cfg.d_model, cfg.d_ff)
        if self.gated:
            self.gate = linear(cfg, cfg.d_model, cfg.d_ff)
        self.down = linear(cfg, cfg.d_ff, cfg.d_model)

    def forward(self, h):
        a = F.silu(self.gate(h)) * self.up(h) if self.gated else F.relu(self.up(h))
        return self.down(a)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1, self.attn = norm_layer(cfg), SelfAttention(cfg)
        self.norm2, self.mlp = norm_layer(cfg), MLP(cfg)

    def forward(self, h, n_context: int, return_weights: bool = False, queries_only: bool = False):
        """``queries_only``: return the query rows alone (the last block: nothing reads context rows after it)."""
        a = self.attn(self.norm1(h), n_context, return_weights, queries_only)
        a, w = a if return_weights else (a, None)
        h = (h[:, 1 + n_context :] if queries_only else h) + a
        h = h + self.mlp(self.norm2(h))
        return (h, w) if return_weights else h


class InContextTransformer(nn.Module):
    """The backbone (embedding, blocks, final norm) and the readout ``cfg.output`` names."""

    def __init__(self, cfg: TransformerConfig, seed: int | None = None):
        super().__init__()
        if any(getattr(cfg, name) is None for name in GRAPH_FIELDS):
            raise BNError("TransformerConfig: d_in, d_out and cards come from the graph: build it with for_layout")
        self.cfg = cfg
        self.embed = linear(cfg, cfg.d_in, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = norm_layer(cfg)
        readout = READOUTS[cfg.output]
        self._readout_name = readout.module_name
        self.add_module(readout.module_name, readout(cfg))
        init_weights(self, seed)

    @property
    def readout_module(self):
        """The readout (:mod:`readouts`)."""
        return getattr(self, self._readout_name)

    def forward(self, tokens: torch.Tensor, n_context: int, return_weights: bool = False,
                seen: list[torch.Tensor] | None = None):
        """(B, 1 + N + Lq, d_in) tokens -> (B, Lq, d_out) logits or probabilities of the query tokens; with
        ``return_weights`` also a list over layers of the query rows' attention weights. ``seen``: these
        contexts' :meth:`context_states`, so that only the query rows are computed."""
        n_queries = tokens.shape[1] - 1 - n_context
        readout = self.readout_module
        tokens = readout.add_tokens(tokens)
        h = self.embed(tokens if seen is None else tokens[:, 1 + n_context :])
        weights = []
        for i, block in enumerate(self.blocks):
            if seen is not None:
                h = torch.cat([seen[i], h], 1)
            h_seen = h[:, : 1 + n_context]  # the last block's input: what a mixture readout weighs
            # queries read the context rows' keys and values from a block's input, so after the
            # last block nothing reads a context row: it computes the query rows alone
            h = block(h, n_context, return_weights, queries_only=seen is not None or i == len(self.blocks) - 1)
            if return_weights:
                h, w = h
                weights.append(w[:, :, :n_queries])
        out, w = readout(self.norm_f(h), h_seen, tokens, n_context)
        if w is not None:  # same layout as a block's weights: sink, rows, then a zero for "itself"
            weights.append(torch.cat([w, w.new_zeros(*w.shape[:-1], 1)], -1))
        return (out, weights) if return_weights else out

    def context_states(self, tokens: torch.Tensor, n_context: int) -> list[torch.Tensor]:
        """The sink's and context rows' states at the input of every block, each (B, 1 + N, d_model), from tokens
        whose first 1 + N rows are the sink and the context. Context rows never attend to a query, so these serve
        every chunk of queries of the same contexts (``forward(..., seen=)``): they are computed once."""
        h = self.embed(tokens[:, : 1 + n_context])
        states = [h]
        for block in self.blocks[:-1]:
            h = block(h, n_context)
            states.append(h)
        return states

    @property
    def n_attention_layers(self) -> int:
        """How many attention maps ``return_weights`` gives: one per block, then the readout's."""
        return self.cfg.n_layer + self.readout_module.attention_layers

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs restricted to a node's states -> its probabilities (as the readout says)."""
        return self.readout_module.probabilities(out)

    def n_params(self) -> int:
        """The number of weights."""
        return sum(p.numel() for p in self.parameters())


def init_weights(model: InContextTransformer, seed: int | None = None) -> InContextTransformer:
    """GPT-2 style init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), zero biases."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        std = 0.02 / math.sqrt(2 * model.cfg.n_layer) if name.endswith(("proj.weight", "down.weight")) else 0.02
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif name.endswith("log_temp"):  # temperature 1
            nn.init.zeros_(p)
    return model
