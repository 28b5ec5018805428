"""The in-context transformer, whole, in one file (in the spirit of nanoGPT's model.py).

A non-causal, pre-norm transformer over the tokens of :mod:`encoding`. The same
:class:`Block` serves the trained model and the constructed one
(:mod:`construct`), which writes closed-form weights into a member of this
family with ``norm="none"`` and one head, so the family provably contains an
exact counting solution.

``attention="softmax_1"`` adds an implicit null key with logit 0 and value 0
(softmax_1 of the outlier-efficient Hopfield paper): a head may then attend to
"nothing". ``output="logits"`` (trained) or ``"probs"`` (constructed: the head
already emits probabilities).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TransformerConfig:
    d_in: int
    d_out: int
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_ff: int = 256
    norm: str = "layer"  # "layer" (pre-norm) | "none"
    attention: str = "softmax"  # "softmax" | "softmax_1"
    output: str = "logits"  # "logits" | "probs"

    def __post_init__(self):
        if self.norm not in ("layer", "none"):
            raise ValueError(f"norm must be 'layer' or 'none', got {self.norm!r}")
        if self.attention not in ("softmax", "softmax_1"):
            raise ValueError(f"attention must be 'softmax' or 'softmax_1', got {self.attention!r}")
        if self.output not in ("logits", "probs"):
            raise ValueError(f"output must be 'logits' or 'probs', got {self.output!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(cfg: TransformerConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "layer" else nn.Identity()


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head, self.null_key = cfg.n_head, cfg.attention == "softmax_1"
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.v = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = h.shape
        heads = lambda t: t.view(B, -1, self.n_head, D // self.n_head).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
        if self.null_key:  # a zero key (logit 0) with a zero value, visible to every row
            k = torch.cat([k, k.new_zeros(B, self.n_head, 1, k.shape[-1])], 2)
            v = torch.cat([v, v.new_zeros(B, self.n_head, 1, v.shape[-1])], 2)
            mask = torch.cat([mask, mask.new_ones(L, 1)], 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, h):
        return self.down(F.relu(self.up(h)))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1, self.attn = _norm(cfg), SelfAttention(cfg)
        self.norm2, self.mlp = _norm(cfg), MLP(cfg)

    def forward(self, h, mask):
        h = h + self.attn(self.norm1(h), mask)
        return h + self.mlp(self.norm2(h))


class InContextTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.d_in, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = _norm(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.d_out)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d_in) tokens and an (L, L) bool mask -> (B, L, d_out) logits or probabilities."""
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm_f(h))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(model: InContextTransformer, seed: int | None = None) -> InContextTransformer:
    """GPT-2 style init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
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
    return model
