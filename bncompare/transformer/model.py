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

Other declared options, each a lever of the learning benchmark:

- ``attention="softmax_1"`` adds a null key with logit 0 and value 0 (softmax_1 of
  the outlier-efficient Hopfield paper): a head may attend to "nothing";
- ``attn_scale``: ``"fixed"`` (1/sqrt(head_dim)), ``"learned"`` (times a learned
  per-head temperature) or ``"log_n"`` (also times log of the number of keys, as
  Scalable-Softmax, arXiv 2501.19399, so attention does not fade as N grows);
- ``qk_norm``: queries and keys RMS-normalized per head before the product;
- ``mlp``: ``"relu"`` or ``"swiglu"`` (a gated unit: the product of two linear
  maps, which is what "this value, if its node is a parent of the target" is);
- ``output``: ``"logits"`` (a linear head), ``"probs"`` (constructed: the head already
  emits probabilities) or ``"mixture"`` (trained: one more attention over the sink and
  the context rows reads out the target's own values, so the answer is a mixture of
  observed values and a learned prior, the form of every counting estimator; the
  model still has to learn which rows to weigh, and how much prior. It returns
  log-probabilities and needs ``cards``);
- ``match_scores`` (the one-guess mixture readout only): the readout's score of a context row also adds
  sum_n g_n [row's value of n == the query's], one learned gain g_n per node,
  computed from the query's state. Exact matching on a conjunction of parents is
  then a sum of per-parent matches at any network size; a key and query of
  width ``d_model`` alone cannot tell apart all ``sum(cards)`` values once that
  sum exceeds ``d_model`` (insurance: 89, alarm: 105);
- ``evidence_rounds`` (mixture, prefix view): the readout searches the target's parents in context
  instead of scoring rows with one learned guess (see :class:`EvidenceReadout`): one extra
  "structure" token per node proposes soft parent gains, and each round averages that guess and
  its one-node edits by their leave-one-out likelihood on the context rows, the in-context
  analogue of Bayesian model averaging over parent sets;
- ``query_view`` is read by the encoder, not the model: ``"prefix"`` shows a query
  every earlier variable (the paper's), ``"parents"`` only the target's parents.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bncompare.errors import BNError
from bncompare.transformer.encoding import Layout, onehots

CHOICES = {
    "norm": ("layer", "none"),
    "attention": ("softmax", "softmax_1"),
    "output": ("logits", "probs", "mixture"),
    "context_attention": ("full", "self"),
    "attn_scale": ("fixed", "learned", "log_n"),
    "mlp": ("relu", "swiglu"),
    "query_view": ("prefix", "parents"),
}


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
    output: str = "logits"  # "logits" | "probs" | "mixture"
    context_attention: str = "full"  # "full" | "self"
    attn_scale: str = "fixed"  # "fixed" | "learned" | "log_n"
    qk_norm: bool = False
    attn_temp_init: float = 1.0  # initial per-head temperature of "learned" / "log_n" scales
    mlp: str = "relu"  # "relu" | "swiglu"
    query_view: str = "prefix"  # "prefix" | "parents" (used by the encoder)
    cards: tuple[int, ...] | None = None  # the nodes' cardinalities ("mixture" reads values out of tokens)
    match_scores: bool = False  # the mixture readout adds learned per-node gains on matching values
    evidence_rounds: int = 0  # > 0: the evidence readout (parent search by leave-one-out likelihood), this many rounds

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise BNError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("d_in", "d_out", "d_model", "n_layer", "n_head", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise BNError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise BNError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not self.attn_temp_init > 0:
            raise BNError(f"attn_temp_init must be > 0, got {self.attn_temp_init}")
        if self.cards is not None:
            self.cards = tuple(int(c) for c in self.cards)
        if self.output == "mixture" and (not self.cards or max(self.cards) != self.d_out):
            raise BNError("output='mixture' needs the nodes' cardinalities (cards) with max(cards) == d_out")
        if self.match_scores and self.output != "mixture":
            raise BNError(f"match_scores needs output='mixture', got output={self.output!r} "
                          "(set match_scores=false too)")
        if self.evidence_rounds < 0:
            raise BNError(f"evidence_rounds must be >= 0, got {self.evidence_rounds}")
        if self.evidence_rounds and (self.output != "mixture" or self.query_view != "prefix"):
            raise BNError("evidence_rounds needs output='mixture' and query_view='prefix' (it searches the parents "
                          f"a query is not shown), got output={self.output!r}, query_view={self.query_view!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cards"] = None if self.cards is None else list(self.cards)  # as JSON gives it back
        return d


def _norm(cfg: TransformerConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "layer" else nn.Identity()


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg, self.n_head = cfg, cfg.n_head
        self.null_key = cfg.attention == "softmax_1"
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.v = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
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
        if self.cfg.qk_norm:
            q, k = _rms(q), _rms(k)

        # queries: keys are the sink, the context rows and the query itself
        qq, kq, vq = q[:, :, -(L - n_seen):], k[:, :, n_seen:], v[:, :, n_seen:]  # (B, H, Lq, hs)
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
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        if self.gated:
            self.gate = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, h):
        a = F.silu(self.gate(h)) * self.up(h) if self.gated else F.relu(self.up(h))
        return self.down(a)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1, self.attn = _norm(cfg), SelfAttention(cfg)
        self.norm2, self.mlp = _norm(cfg), MLP(cfg)

    def forward(self, h, n_context: int, return_weights: bool = False, queries_only: bool = False):
        """``queries_only``: return the query rows alone (the last block: nothing reads context rows after it)."""
        a = self.attn(self.norm1(h), n_context, return_weights, queries_only)
        a, w = a if return_weights else (a, None)
        h = (h[:, 1 + n_context :] if queries_only else h) + a
        h = h + self.mlp(self.norm2(h))
        return (h, w) if return_weights else h


def slot_maps(cards: tuple[int, ...], d_out: int) -> dict[str, torch.Tensor]:
    """Where each node's values sit among the S one-hot slots of a token:
    ``node_of_slot`` (M, S), ``state_of_slot`` (S, d_out) and ``valid`` (M, d_out), the states a node has."""
    S, M = sum(cards), len(cards)
    node_of_slot, state_of_slot = torch.zeros(M, S), torch.zeros(S, d_out)
    valid = torch.zeros(M, d_out, dtype=torch.bool)
    at = 0
    for m, c in enumerate(cards):
        node_of_slot[m, at : at + c] = 1
        state_of_slot[at : at + c, :c] = torch.eye(c)
        valid[m, :c] = True
        at += c
    return {"node_of_slot": node_of_slot, "state_of_slot": state_of_slot, "valid": valid}


class MixtureReadout(nn.Module):
    """The answer as a mixture: one attention over the sink and the context rows, whose values are each
    row's one-hot of the query's target node; the sink's value is a learned prior distribution.

    With weights w_sink and w_r it returns log(w_sink * prior + sum_r w_r * onehot(x_r[target])):
    Dirichlet posterior means have exactly this form, so the head needs no function approximation
    to turn counts into probabilities, only the right weights.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_k = _norm(cfg)
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.prior = nn.Linear(cfg.d_model, cfg.d_out)
        self.log_temp = nn.Parameter(torch.full((1,), math.log(cfg.attn_temp_init)))
        S, M = sum(cfg.cards), len(cfg.cards)
        self.gain = nn.Linear(cfg.d_model, M) if cfg.match_scores else None  # per-node weight of a matching value
        for name, t in slot_maps(cfg.cards, cfg.d_out).items():
            self.register_buffer(name, t, persistent=False)
        self.n_slots, self.n_nodes = S, M

    def forward(self, h_q, h_seen, tokens, n_context: int):
        """h_q (B, Lq, D) final query states; h_seen (B, 1 + N, D) the sink's and context rows' states;
        tokens the raw input -> (B, Lq, d_out) log-probabilities, and the weights (B, 1, Lq, 1 + N)."""
        S, M = self.n_slots, self.n_nodes
        q, k = self.q(h_q), self.k(self.norm_k(h_seen))
        scale = self.log_temp.exp() / math.sqrt(q.shape[-1])
        scores = (q @ k.transpose(-1, -2)) * scale  # (B, Lq, 1 + N)
        if self.gain is not None:  # + sum over nodes n of g_n [x_r[n] == the query's shown value of n]
            shown = tokens[:, 1 + n_context :, :S] * (self.gain(h_q) @ self.node_of_slot)  # (B, Lq, S)
            scores = scores + F.pad(shown @ tokens[:, 1 : 1 + n_context, :S].transpose(-1, -2), (1, 0))
        w = torch.softmax(scores, -1)  # (B, Lq, 1 + N)
        target = tokens[:, 1 + n_context :, S + 1 : S + 1 + M]  # (B, Lq, M) one-hot of the target node
        seen = w[..., 1:] @ tokens[:, 1 : 1 + n_context, :S]  # (B, Lq, S): weighted values of every node
        from_rows = (seen * (target @ self.node_of_slot)) @ self.state_of_slot  # the target's slots only
        prior = self.prior(h_q).masked_fill(~(target @ self.valid.to(target.dtype)).bool(), float("-inf"))
        probs = from_rows + w[..., :1] * torch.softmax(prior, -1)
        return torch.log(probs.clamp_min(1e-30)), w[:, None]


class EvidenceReadout(nn.Module):
    """The answer as an evidence-weighted average of mixture readouts: a search for the parents, in context.

    A hypothesis about target t is a gain g_n >= 0 for each node n before t. For a query, a context row
    weighs exp(sum_n g_n [x_r[n] == x_q[n]]) and the sink exp(beta + sum_n g_n) times a learned prior over
    t's states. With every gain 0 or very large, the answer is the Dirichlet posterior mean given the
    parent set {n : g_n large}, whose prior weighs exp(beta) fully matching rows.

    A hypothesis' evidence is its leave-one-out log-likelihood on the context: each row's value of t
    predicted from the other rows. For a Dirichlet model this measures, like the marginal likelihood,
    how well a parent set explains the data without rewarding extra parents that only fit noise.

    Structure token t (an extra token that shows nothing and asks for t) proposes g = G sigmoid(z).
    The hypotheses are g and its one-node edits (g_n -> G - g_n: add a missing parent or drop one).
    They are mixed with weights softmax(c + lambda * evidence); each further round starts from the
    mixture's mean gains. G grows like log(N + 2), as in Scalable-Softmax, so with a fixed learned
    multiple a row that misses a parent weighs a vanishing share as N grows.

    Cost: the evidence for target t needs only its t + 1 hypotheses and the nodes up to t, and rows
    that show the same values score the same: when those nodes have at most ``MAX_CONFIGS`` joint
    configurations, the context is counted into them and the products run over configurations (at
    most 128 for 7 binary nodes) rather than rows. A round costs B * sum_t (t + 1) * U_t^2 for
    U_t = min(configurations of nodes 0..t, N).
    """

    MAX_CONFIGS = 512

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        D, M = cfg.d_model, len(cfg.cards)
        self.rounds, self.n_slots, self.n_nodes = cfg.evidence_rounds, sum(cfg.cards), M
        self.guess = nn.Linear(D, M)  # z: how likely each node is a parent of the token's target
        self.level = nn.Linear(D, 1)  # G / log(N + 2), through a softplus
        self.strength = nn.Linear(D, 1)  # beta: log of the prior's weight, in fully matching rows
        self.plausible = nn.Linear(D, M + 1)  # c: prior log-odds of the guess and of each edit
        self.prior = nn.Linear(D, cfg.d_out)
        self.log_lambda = nn.Parameter(torch.zeros(1))
        for name, t in slot_maps(cfg.cards, cfg.d_out).items():
            self.register_buffer(name, t, persistent=False)
        earlier = torch.ones(M, M).tril(-1)  # [t, n]: node n comes before t, so a query for t shows it
        self.register_buffer("earlier", earlier, persistent=False)
        self.register_buffer("edit", torch.eye(M), persistent=False)
        allowed = torch.cat([torch.ones(M, 1), earlier], 1).bool()  # the guess, and edits of earlier nodes
        self.register_buffer("allowed", allowed, persistent=False)
        self.prefix_slots = [sum(cfg.cards[: t + 1]) for t in range(M)]  # the slots of nodes 0..t
        for t in range(M):  # configs_t: every joint configuration of nodes 0..t (none when there are too many)
            self.register_buffer(f"configs_{t}", _all_configs(cfg.cards[: t + 1], self.MAX_CONFIGS), persistent=False)
        self.count_configs = True  # False: every product runs over rows (the same numbers, slower)

    def forward(self, h_q, h_struct, tokens, n_context: int):
        """h_q (B, Lq, D) query states; h_struct (B, M, D) the structure tokens' states; tokens the raw
        input -> (B, Lq, d_out) log-probabilities, and the weights on [sink, rows] (B, 1, Lq, 1 + N)."""
        S, N = self.n_slots, n_context
        rows = tokens[:, 1 : 1 + N, :S]
        basis, counts, row_config = self._count(rows, getattr(self, f"configs_{self.n_nodes - 1}"))
        value = (basis[:, :, None, :] * self.node_of_slot) @ self.state_of_slot  # (B|1, U, M, d_out)

        G = F.softplus(self.level(h_struct) + 1.0) * math.log(N + 2)  # (B, M, 1); the offsets are the start
        gains = G * torch.sigmoid(self.guess(h_struct) - 2.0) * self.earlier  # (B, M, M): few parents at first
        beta = self.strength(h_struct) + self.valid.sum(-1, keepdim=True).log()  # (B, M, 1): Dirichlet(1) at first
        log_prior = self.prior(h_struct).masked_fill(~self.valid, float("-inf")).log_softmax(-1)  # (B, M, d_out)
        plausible = self.plausible(h_struct).masked_fill(~self.allowed, float("-inf"))
        tables = self._context_tables(rows)  # the same in every round
        for _ in range(self.rounds):
            hyp = torch.cat([gains[:, :, None], gains[:, :, None] * (1 - self.edit)
                             + ((G - gains) * self.earlier)[:, :, None] * self.edit], 2)  # (B, M, M + 1, M)
            evidence = self._evidence(hyp, beta, log_prior, tables)  # (B, M, M + 1)
            mix = torch.softmax(plausible + self.log_lambda.exp() * evidence, -1)
            gains = (mix[..., None] * hyp).sum(2)

        # each query: its target's hypotheses, scored on the values it shows
        target = tokens[:, 1 + N :, S + 1 : S + 1 + self.n_nodes]  # (B, Lq, M)
        pick = lambda t: torch.einsum("bqt,bt...->bq...", target, t)  # noqa: E731
        shown_q = tokens[:, 1 + N :, :S]
        g_q = pick(hyp) * (shown_q @ self.node_of_slot.T)[:, :, None]  # (B, Lq, K, M)
        scores = (shown_q[:, :, None] * (g_q @ self.node_of_slot)) @ basis.transpose(-1, -2)[:, None]  # (B, Lq, K, U)
        weight = torch.exp(scores - g_q.sum(-1, keepdim=True)) * counts[:, None, None]  # each configuration's
        sink = pick(beta).exp()[..., None]  # (B, Lq, 1, 1)
        norm = sink + weight.sum(-1, keepdim=True)  # (B, Lq, K, 1)
        value_q = torch.einsum("bqt,buto->bquo", target, value.expand(target.shape[0], -1, -1, -1))
        # (B, Lq, K, d_out); the prior is exponentiated before it is picked: 0 * -inf is nan
        probs = (sink * pick(log_prior.exp())[:, :, None] + weight @ value_q) / norm
        mix_q = pick(mix)[..., None]  # (B, Lq, K, 1)
        probs = (mix_q * probs).sum(2)
        w_rows = (mix_q * weight / counts.clamp_min(1)[:, None, None] / norm).sum(2)  # one row's weight
        w = torch.cat([(mix_q * sink / norm).sum(2), torch.gather(w_rows, 2, row_config[:, None].expand(
            -1, w_rows.shape[1], -1))], -1)
        return torch.log(probs.clamp_min(1e-30)), w[:, None]

    def _count(self, rows: torch.Tensor, configs: torch.Tensor):
        """The context as configurations and their counts: (basis (B|1, U, S), counts (B, U), each row's
        configuration (B, N)). With more configurations than rows, every row is its own configuration."""
        B, N, _ = rows.shape
        if N <= configs.shape[0] or configs.shape[0] == 0 or not self.count_configs:
            return rows, rows.new_ones(B, N), torch.arange(N, device=rows.device).expand(B, N)
        index = (rows @ configs.T).argmax(-1)  # (B, N): the one configuration that shows all of a row's values
        counts = torch.zeros(B, configs.shape[0], dtype=rows.dtype, device=rows.device)
        counts.scatter_add_(1, index, torch.ones_like(index, dtype=rows.dtype))
        return configs[None], counts, index

    def _context_tables(self, rows):
        """Per target t = 1..M-1, what its evidence needs from the context (none without rows)."""
        if rows.shape[1] == 0:
            return []
        tables = []
        for t in range(1, self.n_nodes):
            basis, counts, _ = self._count(rows[..., : self.prefix_slots[t]], getattr(self, f"configs_{t}"))
            tables.append(self._context_table(basis, counts, t))
        return tables

    def _context_table(self, basis, counts, t: int):
        """basis (B|1, U, S_t) the one-hots of nodes 0..t of each configuration, counts (B, U) ->
        same (B|1, t, U * U): 1 where configurations u and v agree on node n (a pair's score is then one
        product); own (B|1, U, d_out): each configuration's value of t; and the counts."""
        U, width = basis.shape[1], basis.shape[2]
        same = torch.einsum("bus,ns,bvs->bnuv", basis, self.node_of_slot[:t, :width], basis)
        own = (basis * self.node_of_slot[t, :width]) @ self.state_of_slot[:width]
        return same.reshape(same.shape[0], t, U * U), own, counts

    def _evidence(self, hyp, beta, log_prior, tables):
        """(B, M, K): each hypothesis' leave-one-out log-likelihood (0 where it is not allowed)."""
        B, M, K, _ = hyp.shape
        if not tables:  # no rows: no evidence
            return hyp.new_zeros(B, M, K)
        out = [hyp.new_zeros(B, K)]  # the first node has nothing to search
        for t, table in enumerate(tables, 1):
            ll = self._loo_loglik(hyp[:, t, : t + 1, :t], beta[:, t], log_prior[:, t], *table)
            out.append(F.pad(ll, (0, K - t - 1)))
        return torch.stack(out, 1)

    def _loo_loglik(self, hyp, beta, log_prior, same, own, counts):
        """Sum over context rows of log p(row's value of t | the other rows), for each of K hypotheses on the
        nodes before t: hyp (B, K, t), beta (B, 1), log_prior (B, d_out) and t's context table -> (B, K)."""
        B, K, _ = hyp.shape
        U = own.shape[1]
        scores = (hyp @ same).reshape(B, K, U, U)
        near = torch.exp(scores - hyp.sum(-1)[..., None, None])  # 1 for a configuration and itself
        # the rows near each configuration u, by their value of t (u's own rows included)
        by_value = (near.reshape(B, K * U, U) @ (own * counts[..., None])).reshape(B, K, U, -1)
        agree = (by_value * own[:, None]).sum(-1) - 1  # the other rows with u's value of t
        every = by_value.sum(-1) - 1  # all the other rows
        sink = beta.exp()[:, :, None]  # (B, 1, 1)
        prior_own = (own * log_prior.exp()[:, None]).sum(-1)[:, None]  # (B, 1, U)
        log_p = torch.log(agree.clamp_min(0) + sink * prior_own) - torch.log(every.clamp_min(0) + sink)
        return (counts[:, None] * log_p).sum(-1)


def _all_configs(cards: tuple[int, ...], limit: int) -> torch.Tensor:
    """One-hots of every joint configuration of the nodes (C, S), or (0, S) when there are more than ``limit``."""
    if math.prod(cards) > limit:
        return torch.zeros(0, sum(cards))
    grids = torch.cartesian_prod(*[torch.arange(c) for c in cards]).reshape(-1, len(cards))  # (C, M) even for M = 1
    return onehots(Layout(cards), grids)


class InContextTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.d_in, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = _norm(cfg)
        if cfg.evidence_rounds:
            self.readout = EvidenceReadout(cfg)
        elif cfg.output == "mixture":
            self.readout = MixtureReadout(cfg)
        else:
            self.head = nn.Linear(cfg.d_model, cfg.d_out)
        init_weights(self, seed)

    def forward(self, tokens: torch.Tensor, n_context: int, return_weights: bool = False):
        """(B, 1 + N + Lq, d_in) tokens -> (B, Lq, d_out) logits or probabilities of the query tokens; with
        ``return_weights`` also a list over layers of the query rows' attention weights."""
        n_queries = tokens.shape[1] - 1 - n_context
        if self.cfg.evidence_rounds:  # one structure token per node, after the queries: asks for it, shows nothing
            M, S = len(self.cfg.cards), sum(self.cfg.cards)
            structure = tokens.new_zeros(tokens.shape[0], M, tokens.shape[-1])
            structure[:, :, S + 1 : S + 1 + M] = torch.eye(M, dtype=tokens.dtype, device=tokens.device)
            tokens = torch.cat([tokens, structure], 1)
        h = self.embed(tokens)
        weights = []
        for i, block in enumerate(self.blocks):
            h_seen = h[:, : 1 + n_context]  # the last block's input: what a mixture readout weighs
            # queries read the context rows' keys and values from a block's input, so after the
            # last block nothing reads a context row: it computes the query rows alone
            h = block(h, n_context, return_weights, queries_only=i == len(self.blocks) - 1)
            if return_weights:
                h, w = h
                weights.append(w[:, :, :n_queries])
        if self.cfg.evidence_rounds:
            h = self.norm_f(h)
            out, w = self.readout(h[:, :n_queries], h[:, n_queries:], tokens[:, : 1 + n_context + n_queries], n_context)
            weights.append(torch.cat([w, w.new_zeros(*w.shape[:-1], 1)], -1))
        elif self.cfg.output == "mixture":
            out, w = self.readout(self.norm_f(h), h_seen, tokens, n_context)
            # same layout as a block's weights: sink, rows, then a zero for "itself"
            weights.append(torch.cat([w, w.new_zeros(*w.shape[:-1], 1)], -1))
        else:
            out = self.head(self.norm_f(h))
        return (out, weights) if return_weights else out

    @property
    def n_attention_layers(self) -> int:
        """How many attention maps ``return_weights`` gives: one per block, then the mixture readout's."""
        return self.cfg.n_layer + (self.cfg.output == "mixture")  # the evidence readout is a mixture too

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs restricted to a node's states -> its probabilities (logits and the mixture's
        log-probabilities through a softmax; the construction's probabilities renormalized)."""
        if self.cfg.output == "probs":
            return out.clamp_min(0) / out.clamp_min(0).sum(-1, keepdim=True)
        return torch.softmax(out, -1)

    def n_params(self) -> int:
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
        elif name.endswith("log_temp"):
            nn.init.constant_(p, math.log(model.cfg.attn_temp_init))
    return model
