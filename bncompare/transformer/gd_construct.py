"""A transformer whose weights are written down: k steps of gradient descent, in context, per node.

``GDTransformer(n_features, steps, eta)`` is a stack of ``steps`` linear
self-attention layers (no softmax, no MLP, no normalization inside) with
closed-form weights. For a node ``m`` of a linear-Gaussian network with
``k_m`` parents, regression features are ``x_i = (1, x_pa(m) of row i)``
(``d = k_m + 1`` of them) and the response is ``y_i = x_m of row i``. After
layer ``l`` the model holds what ``l`` steps of gradient descent from
``w = 0`` on the node's in-context least-squares objective

    L(w) = (1 / 2N) sum_i (y_i - w . x_i)^2

give: minus the prediction ``w_l . x_q`` in each query token, the residual
``y_i - w_l . x_i`` in each context token. ``ConstructedGD`` puts it behind
the estimator interface (study name ``constructed_gd``).

Tokens (width ``D + 1``, ``D`` = the largest ``d`` over the nodes; a node with
fewer features pads with zeros, which change no dot product)::

    context token i:  [ x_i / s (D) | y_i ]        query token:  [ x_q / s (D) | 0 ]

Embedding: every token's feature slots are divided by one scalar per context
and node, ``s^2 = (1/N) sum_i ||x_i||^2`` (the mean squared feature norm of
the context tokens; ``s >= 1`` because of the constant feature). It is
computed from the context tokens, like a normalization layer, and is the
only data-dependent step besides attention itself.

Layer (the same closed-form weights in every layer; ``P`` = identity)::

    W_Q = W_K = [[I_D, 0], [0, 0]]        (read the feature slots)
    W_V = -eta * e_y e_y'                 (read the y slot, scaled by -eta)
    e_j  <-  e_j + (1/N) sum_{i context} (W_V e_i) (W_K e_i . W_Q e_j)

Context tokens are the only keys and values (queries attend, nobody attends
to them), for context and query tokens alike. The sum is computed as
``q (K' V) / N``, which equals ``(q K') V / N`` by associativity: a linear
attention layer in its usual memory form (:meth:`LinearSelfAttention.scores`
gives the attention matrix itself).

Proof sketch. Write ``z_i = x_i / s``, ``r_i^l`` for the context token's y
slot and ``p^l`` for the query's after ``l`` layers, and define
``v_{l+1} = v_l + (eta/N) sum_i r_i^l z_i`` from ``v_0 = 0``. Claim: the
feature slots never change, ``r_i^l = y_i - v_l . z_i`` and
``p^l = -v_l . z_q``. At ``l = 0`` this is the embedding. W_V has only the
y row, so a layer leaves feature slots alone and adds to the y slot of token
``j`` the amount ``-(eta/N) sum_i r_i^l (z_i . z_j)``. For a context token:
``y_j - v_l . z_j - (eta/N) sum_i r_i^l z_i . z_j = y_j - v_{l+1} . z_j``; for
the query: ``-v_l . z_q - (eta/N) sum_i r_i^l z_i . z_q = -v_{l+1} . z_q``.
Induction. Now ``v_{l+1} = v_l - eta grad_v L~(v_l)`` for
``L~(v) = (1/2N) sum_i (y_i - v . z_i)^2``, and with ``w = v / s`` (so
``w . x = v . z``) the iterates ``w_l = v_l / s`` satisfy

    w_{l+1} = w_l + (eta / s^2)(1/N) sum_i (y_i - w_l . x_i) x_i = w_l - (eta / s^2) grad L(w_l):

exactly ``l`` steps of gradient descent on the SAME objective ``L`` from
``w = 0``, with step size ``eta / s^2``. So the query slot is
``-w_l . x_q`` and the context slots are the residuals at ``w_l``.

Step size and convergence. With ``H = (1/N) X'X`` the error after ``l``
steps is ``w_l - w* = (I - (eta/s^2) H)^l (0 - w*)`` for any least-squares
solution ``w*`` in the row space of ``X``; ``s^2 = trace H >= lambda_max``, so
every factor ``|1 - eta lambda / s^2|`` with ``lambda > 0`` is below 1 when
``0 < eta < 2``: the iterates converge to the minimum-norm least-squares
solution (the row space is where they live, since they start at 0), at rate
``rho = max |1 - eta lambda / trace H|`` over the positive eigenvalues. The
default ``eta = 1`` needs no knowledge of the data's scale, never
overshoots (every factor lies in [0, 1)), and solves a root node (one
feature, the constant) in one step: ``w_1 = mean(y)``.

Readouts (computed from the tokens after the last layer; not learned):
the prediction of node ``m`` at a query is minus its y slot; ``sigma`` is
the root mean square of the context tokens' y slots, ``sqrt(2 L(w_k))``
(the MLE divisor N, at the k-step weights), floored at ``min_sigma``. The
k-step weights themselves (``network_``) are read by probing the same model
with the basis query tokens ``e_j`` (raw feature ``j`` = 1, the rest 0), whose
outputs are ``-w_k[j]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bncompare.errors import BNError
from bncompare.estimators.base import GaussianEstimator, Tags
from bncompare.networks.gaussian import normal, pack
from bncompare.networks.graph import Graph
from bncompare.runtime import single_thread

DEFAULT_STEPS = 10
DEFAULT_ETA = 1.0
DEFAULT_MIN_SIGMA = 1e-6


def _check_settings(steps, eta, min_sigma) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BNError(f"constructed_gd steps must be a whole number >= 1, got {steps!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 < eta < 2:
        raise BNError(f"constructed_gd step size eta must be a number in (0, 2) (units of 1/trace of the "
                      f"features' second moments; >= 2 diverges), got {eta!r}")
    if isinstance(min_sigma, bool) or not isinstance(min_sigma, (int, float)) or not (
            min_sigma > 0 and math.isfinite(min_sigma)):
        raise BNError(f"constructed_gd min_sigma must be a finite number > 0, got {min_sigma!r}")


class ContextScale(nn.Module):
    """The embedding: divide every token's feature slots by ``s``, ``s^2`` the context tokens' mean ``||x||^2``."""

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features

    def inv_scale(self, context: torch.Tensor) -> torch.Tensor:
        """``1 / s`` of each batch element's context tokens (batch, N, w): (batch,)."""
        return torch.rsqrt(context[..., : self.n_features].square().sum(-1).mean(-1))

    def forward(self, tokens: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
        scale = torch.ones(tokens.shape[0], 1, tokens.shape[-1], dtype=tokens.dtype, device=tokens.device)
        scale[:, :, : self.n_features] = inv_scale[:, None, None]
        return tokens * scale


class LinearSelfAttention(nn.Module):
    """One linear self-attention layer (no softmax) with a residual connection; context tokens are the keys.

    ``e_j <- e_j + P (1/N) sum_i (W_V e_i)(W_K e_i . W_Q e_j)`` over the N context tokens ``e_i``; the four
    (w, w) matrices are given (they are written in closed form, not learned).
    """

    def __init__(self, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, P: torch.Tensor):
        super().__init__()
        self.W_Q, self.W_K, self.W_V, self.P = (nn.Parameter(w.to(torch.float64).clone(), requires_grad=False)
                                                for w in (W_Q, W_K, W_V, P))

    def scores(self, tokens: torch.Tensor, n_context: int) -> torch.Tensor:
        """The attention matrix ``(batch, T, n_context)``: ``q_j . k_i / N`` (keys: the context tokens)."""
        return (tokens @ self.W_Q.T) @ (tokens[:, :n_context] @ self.W_K.T).transpose(-1, -2) / n_context

    def forward_explicit(self, tokens: torch.Tensor, n_context: int) -> torch.Tensor:
        """The textbook order, ``e + P(scores V)``: (batch, T, N) scores; :meth:`forward` gives the same."""
        return tokens + (self.scores(tokens, n_context) @ (tokens[:, :n_context] @ self.W_V.T)) @ self.P.T

    def memory(self, context: torch.Tensor) -> torch.Tensor:
        """``K'V / N`` of the context tokens (batch, N, w): (batch, w, w), the layer's whole view of the context.

        ``K = E W_K'``, ``V = E W_V'``, so ``K'V = W_K (E'E) W_V'``: one pass over the tokens for their Gram matrix.
        """
        gram = context.transpose(-1, -2) @ context / context.shape[1]
        return self.W_K @ gram @ self.W_V.T

    def attend(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``e + P(q K'V / N)`` for every token, given the context's :meth:`memory`.

        ``q = W_Q e``, so the update is ``e (I + W_Q' M P')``: one (w, w) matrix per batch element.
        """
        eye = torch.eye(tokens.shape[-1], dtype=tokens.dtype, device=tokens.device)
        return tokens @ (eye + self.W_Q.T @ memory @ self.P.T)

    def forward(self, tokens: torch.Tensor, n_context: int) -> torch.Tensor:
        return self.attend(tokens, self.memory(tokens[:, :n_context]))


@dataclass
class ContextCache:
    """What the queries need from a context after it went through the model: the embedding's scale
    and each layer's attention memory ``K'V / N`` (a key-value cache), and the context tokens at the end."""

    inv_scale: torch.Tensor  # (batch,): 1 / s
    memories: list  # one (batch, w, w) per layer
    context_out: torch.Tensor  # (batch, N, w): the context tokens after the last layer


class GDTransformer(nn.Module):
    """``steps`` linear self-attention layers whose weights perform gradient descent (see the module docstring).

    Tokens are ``(batch, n_context + n_query, n_features + 1)``: features, then the y slot.
    """

    def __init__(self, n_features: int, steps: int = DEFAULT_STEPS, eta: float = DEFAULT_ETA):
        super().__init__()
        _check_settings(steps, eta, DEFAULT_MIN_SIGMA)
        self.n_features, self.steps, self.eta = n_features, steps, float(eta)
        width = n_features + 1
        self.embed = ContextScale(n_features)
        read_features = torch.zeros(width, width, dtype=torch.float64)
        read_features[:n_features, :n_features] = torch.eye(n_features, dtype=torch.float64)
        value = torch.zeros(width, width, dtype=torch.float64)
        value[n_features, n_features] = -self.eta  # the y slot, times -eta: the gradient step
        identity = torch.eye(width, dtype=torch.float64)
        self.layers = nn.ModuleList(LinearSelfAttention(read_features, read_features, value, identity)
                                    for _ in range(steps))

    @property
    def y_slot(self) -> int:
        return self.n_features

    def forward(self, tokens: torch.Tensor, n_context: int, explicit: bool = False) -> torch.Tensor:
        """All tokens after the last layer; ``explicit`` computes each layer's (T, N) scores (slow, for checks)."""
        if n_context < 1:
            raise BNError("the constructed gradient-descent transformer needs at least one context row")
        h = self.embed(tokens, self.embed.inv_scale(tokens[:, :n_context]))
        for layer in self.layers:
            h = layer.forward_explicit(h, n_context) if explicit else layer(h, n_context)
        return h

    def encode(self, context: torch.Tensor) -> ContextCache:
        """Run the context tokens (batch, N, w) through the layers, keeping what queries need."""
        if context.shape[1] < 1:
            raise BNError("the constructed gradient-descent transformer needs at least one context row")
        inv = self.embed.inv_scale(context)
        h, memories = self.embed(context, inv), []
        for layer in self.layers:
            memories.append(layer.memory(h))
            h = layer.attend(h, memories[-1])
        return ContextCache(inv, memories, h)

    def answer(self, queries: torch.Tensor, cache: ContextCache) -> torch.Tensor:
        """The query tokens (batch, Q, w) after the last layer, attending to the cached context."""
        h = self.embed(queries, cache.inv_scale)
        for layer, memory in zip(self.layers, cache.memories):
            h = layer.attend(h, memory)
        return h


# ----- tokens and readouts -------------------------------------------------------------------

def n_features(graph: Graph) -> int:
    """The token's feature slots: the largest ``1 + k_m`` over the nodes."""
    return 1 + max(len(pa) for pa in graph.parents)


def node_features(graph: Graph, rows: torch.Tensor, width: int) -> torch.Tensor:
    """Each node's regression features ``(1, x_pa, 0 ...)`` at each row: (B, M, R, width) float64."""
    B, R, M = rows.shape
    out = torch.zeros(B, M, R, width, dtype=torch.float64, device=rows.device)
    out[..., 0] = 1.0
    for m, pa in enumerate(graph.parents):
        if pa:
            out[:, m, :, 1 : 1 + len(pa)] = rows[..., list(pa)]
    return out


def context_tokens(graph: Graph, contexts: torch.Tensor) -> torch.Tensor:
    """Each node's context tokens ``(x_i, y_i)``: (B, M, N, D + 1)."""
    D = n_features(graph)
    return torch.cat([node_features(graph, contexts, D), contexts.transpose(1, 2)[..., None]], -1)


def query_tokens(graph: Graph, queries: torch.Tensor) -> torch.Tensor:
    """Each node's query tokens ``(x_q, 0)`` from query rows (B, Q, M) (only parents are read): (B, M, Q, D + 1)."""
    x = node_features(graph, queries, n_features(graph))
    return torch.cat([x, torch.zeros(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], -1)


def token_batch(ctx: torch.Tensor, qry: torch.Tensor) -> torch.Tensor:
    """Context tokens (B, M, N, w) and query tokens (B, M, Q, w) -> (B * M, N + Q, w)."""
    B, M = ctx.shape[:2]
    return torch.cat([ctx, qry], 2).reshape(B * M, ctx.shape[2] + qry.shape[2], ctx.shape[-1])


def probe_tokens(B: int, M: int, D: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The basis query tokens ``(e_j, 0)``, j < D, for every (context, node): (B, M, D, D + 1)."""
    eye = torch.eye(D, D + 1, dtype=dtype, device=device)
    return eye.expand(B, M, D, D + 1)


def read_predictions(model: GDTransformer, query_out: torch.Tensor) -> torch.Tensor:
    """The predictions from the query tokens after the last layer (batch, Q, w): minus their y slots, (batch, Q)."""
    return -query_out[..., model.y_slot]


def read_sigma(model: GDTransformer, context_out: torch.Tensor) -> torch.Tensor:
    """The context tokens' residuals after the last layer (batch, N, w), root mean square: ``sqrt(2 L(w_k))``."""
    return context_out[..., model.y_slot].square().mean(-1).sqrt()


# ----- the estimator -------------------------------------------------------------------------

class ConstructedGD(GaussianEstimator):
    """The constructed gradient-descent transformer as an estimator of a linear-Gaussian network.

    Settings: ``steps`` (layers = gradient steps, default 10), ``eta`` (step size in units of
    ``1 / s^2``, ``s^2`` the mean squared feature norm of the context; in (0, 2), default 1),
    ``min_sigma`` (floor of the sigma readout, default 1e-6; it is 0 when the k-step fit interpolates).
    Predictions are Normal ``(B, Q, 3)`` (df = inf): location from the query token, scale the sigma
    readout. ``network_`` is the k-step weights and sigma as a parameter batch (G = B), read by
    probing the model; ``model_`` is the :class:`GDTransformer`.
    """

    name = "constructed_gd"
    tags = Tags(family="constructed", variables="gaussian", floors_are_zeros=True)  # min_sigma: zero residuals

    def __init__(self, steps: int = DEFAULT_STEPS, eta: float = DEFAULT_ETA, min_sigma: float = DEFAULT_MIN_SIGMA):
        _check_settings(steps, eta, min_sigma)
        self.steps, self.eta, self.min_sigma = steps, eta, min_sigma

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        B, N, M = contexts.shape
        if N < 1:
            raise BNError(f"{self.name}: the context needs at least one row")
        D = n_features(graph)
        self.model_ = GDTransformer(D, self.steps, self.eta).to(contexts.device)
        with torch.no_grad(), single_thread():  # (w, w) matrices per batch element: threads cost more (1.5x measured)
            self.cache_ = self.model_.encode(context_tokens(graph, contexts).reshape(B * M, N, D + 1))
            probes = self.model_.answer(probe_tokens(B, M, D, device=contexts.device).reshape(B * M, D, D + 1),
                                        self.cache_)
        coef = read_predictions(self.model_, probes).reshape(B, M, D)  # probe j answers w_k[j]
        sigma = read_sigma(self.model_, self.cache_.context_out).clamp_min(self.min_sigma).reshape(B, M)
        self.sigma_ = sigma
        self.zero_below_ = self.min_sigma  # sigma at the floor: the k-step fit passes through every row
        self.network_ = [pack(coef[:, m, 0], coef[:, m, 1 : 1 + len(pa)], sigma[:, m])
                         for m, pa in enumerate(graph.parents)]
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        B, Q, M = queries.shape
        D = self.model_.n_features
        qry = query_tokens(self.graph_, queries.to(self.sigma_.device)).reshape(B * M, Q, D + 1)
        with torch.no_grad(), single_thread():
            loc = read_predictions(self.model_, self.model_.answer(qry, self.cache_)).reshape(B, M, Q)
        return [normal(loc[:, m], self.sigma_[:, m, None].expand(B, Q)) for m in nodes]
