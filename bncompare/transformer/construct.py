"""A transformer whose weights are written down: it counts, in context, exactly.

``construct_model(graph)`` returns an :class:`InContextTransformer` with two
:class:`Block` s (``norm="none"``, one softmax head, ReLU MLPs; the same class
the trained model uses) whose weights compute the in-context MLE, or the
Dirichlet posterior mean, of every conditional of ``graph``. So the trainable
family provably contains an exact counting solution.

Residual stream (width ``d_model = d_in + 2S + d_out``, ``S = sum(cards)``)::

    [ token (d_in) | g: gated parent one-hots (S) | o: attention average (S) | out (d_out) ]

- embed: copies the token into the first ``d_in`` dims.
- block 1, attention: all zero. MLP (one ReLU unit per state ``(m, v)``):
  ``g_{m,v} = ReLU(x_{m,v} + sum_{c: m in pa(c)} t_c - 1)``, i.e. the query's
  one-hot of ``m`` if ``m`` is a parent of the target, else 0 (exact: x, t are 0/1).
  On context and sink tokens ``t = 0``, so ``g = 0``.
- block 2, attention (one head): query ``beta * g`` (plus two bias/target terms
  below), key = the token's one-hots, so the score of context row ``i`` is
  ``beta * (number of the target's parents on which row i agrees with the
  query)``. Value = the one-hots, written into ``o``. Two more key dims:

  * query flag: the query bias puts ``-C`` there (``C = beta * (max in-degree
    + 1) + 1000``), so a query token's weight on itself is below ``exp(-1000)``
    times the sink's (for any sensible alpha): zero in float64 and float32.
    (The mask already stops queries seeing each other.)
  * sink flag: the score of the sink is linear in the target one-hot ``t``:
    ``beta * |pa(m0)| + log(alpha * d_m0)`` in mode "dirichlet", so the sink
    weighs like ``alpha * d`` full matches and, with value ``1/d`` in every
    block, turns the average into ``(n_v + alpha) / (n + alpha d)``;
    ``beta * (|pa(m0)| - 1/2)`` in mode "mle": negligible next to one full
    match, but it dominates every partial match when no full match exists, so
    an unseen configuration gets the uniform row (pgmpy's convention).

  SDPA divides scores by ``sqrt(head_dim)``; that factor is folded into ``W_q``.
- block 2, MLP: picks the target's block, ``out_v += ReLU(o_{m,v} + t_m - 1)``
  (exact, since ``0 <= o <= 1``); the head reads ``out`` (padded to the
  largest cardinality). ``output="probs"``.

Sharpness and error. Only rows that agree with the query on every parent
should count. A row with ``j >= 1`` mismatches keeps relative weight
``exp(-beta j)``, so with ``N`` context rows the largest absolute error of any
probability is at most (:func:`error_bound`)

- "dirichlet": ``N exp(-beta) / (alpha d)``;
- "mle": ``(N + 1) exp(-beta / 2)`` (the sink costs ``exp(-beta/2)`` when the
  configuration was seen; partial matches cost ``N exp(-beta/2)`` relative to
  the sink when it was not).

The default ``beta = 50`` gives < 1e-8 for N <= 500 in both modes (float64);
beta >= 41 suffices for 1e-6 at N = 500. Scores stay far from overflow (SDPA
subtracts the row maximum).

Cost. Every weight matrix has a few nonzeros per row, so the weights are written as
(row, col, value) entries and stored sparse above :data:`DENSE_UP_TO` (munin:
``d_model`` ~18k, ~5 MB instead of ~2 GB a matrix). The estimator answers target ``m``
with the construction for ``m``'s family alone (:class:`ConstructedTransformer`), so a
prediction costs the family's size per token rather than the network's.
"""
from __future__ import annotations

import math
from functools import cache

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, Tags
from bncompare.networks.graph import Graph
from bncompare.runtime import resolve_device, single_thread
from bncompare.transformer.encoding import Layout
from bncompare.transformer.estimator import answer
from bncompare.transformer.model import InContextTransformer, TransformerConfig

DEFAULT_BETA = 50.0
# Widest model whose weights are stored dense: torch's sparse matmul on CPU costs milliseconds a call even for
# tiny matrices (measured: ~15 ms on a family's 30-wide model, against well under 1 ms dense), and a dense
# 512 x 512 matrix takes 2 MB. The models of single families are this small; whole networks are not.
DENSE_UP_TO = 512
LINEARS = ("embed",) + tuple(f"blocks.{i}.{part}" for i in range(2)
                             for part in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.up", "mlp.down"))
MODES = ("mle", "dirichlet")


def _check_settings(mode: str, alpha: float, beta: float) -> None:
    if mode not in MODES:
        raise BNError(f"constructed transformer mode must be 'mle' or 'dirichlet', got {mode!r}")
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise BNError(f"constructed transformer pseudo-count alpha must be a finite number > 0, got {alpha!r}")
    if not (isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta)):
        raise BNError(f"constructed transformer sharpness beta must be a finite number > 0, got {beta!r}")


def error_bound(mode: str, beta: float, n_context: int, alpha: float = 1.0, card: int = 2) -> float:
    """Upper bound on ``|constructed - counting|`` for any probability, with ``n_context`` rows."""
    _check_settings(mode, alpha, beta)
    if mode == "dirichlet":
        return min(1.0, n_context * math.exp(-beta) / (alpha * card))
    return min(1.0, (n_context + 1) * math.exp(-beta / 2))


def construct_model(
    graph: Graph,
    mode: str = "mle",
    alpha: float = 1.0,
    beta: float = DEFAULT_BETA,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    sparse: bool | None = None,
) -> InContextTransformer:
    """The 2-block transformer computing the in-context MLE ("mle") or Dirichlet(alpha) posterior mean of ``graph``.

    ``sparse``: the weight matrices' layout (the same entries either way); by default sparse when the model is
    wider than :data:`DENSE_UP_TO`."""
    if not isinstance(graph, Graph):
        raise BNError(f"construct_model needs a Graph, got {type(graph).__name__}")
    _check_settings(mode, alpha, beta)
    lay = Layout(graph.cards)
    S, M, D = lay.n_onehot, lay.n_nodes, lay.d_out
    G, OA, OUT = lay.d_in, lay.d_in + S, lay.d_in + 2 * S  # where g, o (attention average), out start
    d_model = lay.d_in + 2 * S + D
    # Every setting spelled out: the construction relies on each. Context rows attend to the sink and themselves
    # only ("self"): the same function as the paper's full attention here, since block 1's attention is zero and
    # nothing reads what block 2's context rows gather, at a cost linear in N instead of quadratic.
    cfg = TransformerConfig(
        d_model=d_model, n_layer=2, n_head=1, d_ff=S, norm="none", attention="softmax",
        context_attention="self", attn_scale="fixed", mlp="relu", query_view="prefix", output="probs",
        match_scores=False, sparse=d_model > DENSE_UP_TO if sparse is None else bool(sparse),
    ).for_layout(lay)
    model = InContextTransformer(cfg).to(torch.float64)  # write the weights in float64, cast at the end
    children = [[c for c in range(M) if m in graph.parents[c]] for m in range(M)]
    n_pa = [len(pa) for pa in graph.parents]
    penalty = beta * (max(n_pa) + 1) + 1000.0  # C: keeps a query's weight on itself below exp(-1000)
    scale = math.sqrt(d_model)  # undo SDPA's 1/sqrt(head_dim)

    # Every weight is a list of (row, col, value) entries at distinct positions, written sparse (cfg.sparse) or
    # dense: a sparse construction costs its nonzeros, never d_model^2.
    W = {name: [] for name in LINEARS}
    W["embed"] += [(i, i, 1.0) for i in range(G)]

    # Block 1 MLP: g_{m,v} = ReLU(x_{m,v} + sum of targets that m is a parent of - 1).
    b1 = "blocks.0.mlp."
    for m in range(M):
        for v in range(graph.cards[m]):
            s = lay.offsets[m] + v
            W[b1 + "up"] += [(s, s, 1.0)] + [(s, lay.target(c), 1.0) for c in children[m]]
            W[b1 + "down"].append((G + s, s, 1.0))
    model.blocks[0].mlp.up.bias.data.fill_(-1.0)

    # Block 2 attention. Head coordinates reuse the token's: one-hots, query flag, sink flag.
    a2 = "blocks.1.attn."
    qf, sf = lay.query_flag, lay.sink_flag
    W[a2 + "q"] += [(s, G + s, beta * scale) for s in range(S)]
    W[a2 + "k"] += [(s, s, 1.0) for s in range(S)] + [(qf, qf, 1.0), (sf, sf, 1.0)]
    W[a2 + "v"] += [(OA + s, s, 1.0) for s in range(S)]
    model.blocks[1].attn.q.bias.data[qf] = -penalty * scale
    for m in range(M):
        d = graph.cards[m]
        sink_score = beta * n_pa[m] + math.log(alpha * d) if mode == "dirichlet" else beta * (n_pa[m] - 0.5)
        W[a2 + "q"].append((sf, lay.target(m), sink_score * scale))
        W[a2 + "v"] += [(OA + lay.offsets[m] + v, sf, 1.0 / d) for v in range(d)]  # the sink's value: uniform
    W[a2 + "proj"] += [(i, i, 1.0) for i in range(d_model)]

    # Block 2 MLP: out_v = sum_m ReLU(o_{m,v} + t_m - 1) = o_{m0,v}.
    b2 = "blocks.1.mlp."
    for m in range(M):
        for v in range(graph.cards[m]):
            s = lay.offsets[m] + v
            W[b2 + "up"] += [(s, OA + s, 1.0), (s, lay.target(m), 1.0)]
            W[b2 + "down"].append((OUT + v, s, 1.0))
    model.blocks[1].mlp.up.bias.data.fill_(-1.0)

    for name, entries in W.items():
        rows, cols, values = zip(*entries) if entries else ((), (), ())  # block 1's attention stays all zero
        layer = model.get_submodule(name)
        if cfg.sparse:
            layer.set_weight(rows, cols, values)
        else:
            layer.weight.data.zero_()
            layer.weight.data[list(rows), list(cols)] = torch.tensor(values, dtype=torch.float64)
    head = torch.zeros(D, d_model, dtype=torch.float64)  # the readout's head is dense: d_out x d_model
    head[:, OUT:] = torch.eye(D)
    model.head.weight.data.copy_(head)
    model.head.bias.data.zero_()
    return model.to(device=device or resolve_device(), dtype=dtype).eval()


@cache
def family_graph(cards: tuple[int, ...]) -> Graph:
    """Node ``m`` with its parents as a network of its own: the parents (roots, ``cards[:-1]``), then ``m``."""
    k = len(cards) - 1
    return Graph(tuple(f"P{i}" for i in range(k)) + ("T",), tuple(cards), ((),) * k + (tuple(range(k)),))


class ConstructedTransformer(Estimator):
    """The constructed transformer behind the estimator interface; ``fit`` writes the weights for the graph.

    Names: ``"transformer_mle"`` and ``"transformer_dirichlet"``. ``model_`` is the
    :class:`InContextTransformer` of the whole graph (sparse weights; the attention diagnostics read it).

    Predictions are the same model's, evaluated on the coordinates each answer reads. The answer for
    target ``m`` reads only the one-hots of ``m``'s family (block 1's gate zeroes every other parent's,
    block 2's MLP reads ``m``'s block; the self and sink terms depend on ``|pa(m)|`` and ``d_m`` alone),
    and restricted to them the model is the construction for the family alone (:func:`family_graph`; its
    penalty ``C`` is smaller, but a query's weight on itself is exactly 0 in both). So target ``m`` is
    answered by that small model on the family's columns, through :func:`answer` (the path of every
    transformer): a cost of the family's size per token instead of the whole graph's, for predictions
    and for generation (one node at a time). The answers equal the whole model's up to rounding.
    """

    tags = Tags(family="constructed", has_attention=True, floors_are_zeros=True)

    def __init__(self, mode: str = "mle", alpha: float = 1.0, beta: float = DEFAULT_BETA,
                 dtype: torch.dtype = torch.float64, batch_size: int = 256):
        _check_settings(mode, alpha, beta)
        self.mode, self.alpha, self.beta = mode, float(alpha), float(beta)
        self.dtype, self.batch_size = dtype, batch_size

    @property
    def name(self) -> str:
        return f"transformer_{self.mode}"

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        settings = (graph, self.mode, self.alpha, self.beta, self.dtype)
        if getattr(self, "built_for_", None) != settings:  # the weights depend on the graph and settings alone
            self.model_ = construct_model(graph, self.mode, self.alpha, self.beta, self.dtype)
            # a family's columns: its parents, most states first (a score sums over parents, so their order is
            # free: families that differ only in it share one model), then the target
            self.families_ = [tuple(sorted(pa, key=lambda p: (-graph.cards[p], p))) + (m,)
                              for m, pa in enumerate(graph.parents)]
            self.family_models_ = {}  # by the family's cardinalities, built when first asked for
            self.built_for_ = settings
        self.contexts_ = contexts
        # Mode "mle" answers ~1e-12 where MLE answers exactly 0. Below the error bound a probability is one of
        # those zeros, as long as the bound stays under half the smallest nonzero MLE probability 1/N.
        n = contexts.shape[1]
        bound = error_bound(self.mode, self.beta, n, self.alpha)
        self.zero_below_ = bound if self.mode == "mle" and bound < 0.5 / max(n, 1) else 0.0
        return self

    def _predict_proba(self, queries, nodes):
        cards = self.graph_.cards
        by_shape: dict[tuple[int, ...], list[int]] = {}  # targets whose families have the same cardinalities
        for j, m in enumerate(nodes):
            by_shape.setdefault(tuple(cards[i] for i in self.families_[m]), []).append(j)
        out: list[torch.Tensor] = [None] * len(nodes)
        with single_thread():  # a family's model is tiny: a second thread costs more than it saves (50x, loaded)
            for shape, js in by_shape.items():  # one pass for all of them: their contexts stacked
                for j, p in zip(js, self._answer_family(shape, [nodes[j] for j in js], queries)):
                    out[j] = p
        return out

    def _answer_family(self, shape: tuple[int, ...], targets: list[int], queries: torch.Tensor) -> list[torch.Tensor]:
        """The probabilities of ``targets`` (families of cardinalities ``shape``), each (B, Q, card)."""
        B = queries.shape[0]
        cols = [list(self.families_[m]) for m in targets]
        ctx = torch.cat([self.contexts_[..., c] for c in cols])
        qry = torch.cat([queries[..., c] for c in cols])
        if shape not in self.family_models_:
            self.family_models_[shape] = construct_model(family_graph(shape), self.mode, self.alpha, self.beta,
                                                         self.dtype)
        probs = answer(self.family_models_[shape], family_graph(shape), ctx, qry, [len(shape) - 1],
                       self.batch_size)[0]
        return list(probs.split(B))
