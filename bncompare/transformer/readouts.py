"""How the transformer's final states become an answer: the readouts, behind one interface.

Every readout is a module ``readout(h, h_seen, tokens, n_context) -> (out, weights)`` with

- ``h`` (B, Lq + extra, D): the final (normed) states of every token after the context rows: the
  queries, then the ``extra`` tokens the readout added itself (:meth:`Readout.add_tokens`);
- ``h_seen`` (B, 1 + N, D): the sink's and the context rows' states at the last block's input (the last
  block computes only the tokens after the context);
- ``tokens`` the raw input, the readout's own tokens included;
- ``out`` (B, Lq, d_out) and ``weights`` (B, 1, Lq, 1 + N) on [sink, rows], or None for a readout that
  attends to nothing (then ``attention_layers`` is 0).

Which one a model uses is ``TransformerConfig.output``, looked up in :data:`READOUTS` and nowhere else:

- ``"logits"``: a linear head;
- ``"probs"``: the construction's linear head, whose outputs already are probabilities;
- ``"mixture"``: one more attention over the sink and the context rows reads out the target's own
  values, so the answer is a mixture of observed values and a learned prior (the form of every
  counting estimator); ``match_scores`` adds learned per-node gains on matching values;
- ``"evidence"``: a search for the target's parents in context, ``evidence_rounds`` rounds.

Readouts for real-valued tokens (linear-Gaussian networks, :mod:`gaussian_tokens`; ``variables =
"gaussian"``), whose outputs are Student-t parameters ``(df, loc, scale)``:

- ``"student_t"``: a linear head (everything learned);
- ``"conjugate"``: a learned prior per target (which earlier nodes are parents, the weights' prior, the
  noise prior) and the computed Normal-inverse-gamma update on in-context moments.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from bncompare.errors import BNError
from bncompare.transformer.encoding import Layout, onehots
from bncompare.transformer.gaussian_tokens import PREDICTION_WIDTH, GaussianLayout

# A readout is built from a model.TransformerConfig ("cfg" below); this module does not import model.py,
# which imports it.


def norm_layer(cfg) -> nn.Module:
    """A pre-norm LayerNorm, or nothing (``norm="none"``, the construction's)."""
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "layer" else nn.Identity()


# The answer every value readout computes (the mixture and evidence readouts).
MIXTURE_FORM = ("mixture-of-rows answer: a weighted average of the context rows' values of the target and a "
                "learned prior (the form of every counting estimator); the weights are the model's")


class Readout(nn.Module):
    """What every readout shares: the settings check, its extra tokens (none), its attention maps (none) and
    how its outputs become probabilities (a softmax)."""

    module_name = "readout"  # the model holds it under this name (its weights' keys start with it)
    attention_layers = 0  # attention maps it adds to a model's return_weights
    trainable = True  # a TrainConfig may choose it
    variables = "discrete"  # the kind of network variables its tokens and outputs are for (Graph.variables)
    match_scores = False  # it reads TransformerConfig.match_scores
    # what it computes rather than learns, one phrase each whose first word names it (Tags.computed); () for
    # a readout whose answer is learned end to end
    computed_parts: tuple[str, ...] = ()
    train_cost = 1.0  # a training step's seconds against the mixture readout's at the same sizes (time estimate)

    @classmethod
    def check(cls, cfg) -> None:
        """A one-line BNError when ``cfg`` does not fit this readout."""
        if cfg.match_scores and not cls.match_scores:
            raise BNError(f"match_scores needs output='mixture', got output={cfg.output!r} "
                          "(set match_scores=false too)")

    @classmethod
    def computed(cls, cfg) -> tuple[str, ...]:
        """What this readout computes rather than learns with the settings ``cfg``."""
        return cls.computed_parts

    def add_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input with this readout's own tokens appended after the queries."""
        return tokens

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs restricted to a node's states -> its probabilities."""
        return torch.softmax(out, -1)


class LogitsReadout(Readout, nn.Linear):
    """A linear head on each query's final state (held as the model's ``head``, as checkpoints name it)."""

    module_name = "head"

    def __init__(self, cfg):
        nn.Linear.__init__(self, cfg.d_model, cfg.d_out)

    def forward(self, h, h_seen, tokens, n_context: int):
        """Each query's outputs, a linear map of its state; no attention weights."""
        return nn.Linear.forward(self, h), None


class ProbsReadout(LogitsReadout):
    """The construction's linear head: it already emits probabilities, renormalized on a node's states."""

    trainable = False

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return out.clamp_min(0) / out.clamp_min(0).sum(-1, keepdim=True)


class _ValueReadout(Readout):
    """A readout that reads the target's values out of the context rows' tokens (it needs ``cards``)."""

    attention_layers = 1

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.cards is not None and (not cfg.cards or max(cfg.cards) != cfg.d_out):
            raise BNError(f"output={cfg.output!r} needs the nodes' cardinalities (cards) with max(cards) == d_out")

    def __init__(self, cfg):
        super().__init__()
        self.layout = Layout(tuple(cfg.cards))
        for name, t in slot_maps(cfg.cards, cfg.d_out).items():
            self.register_buffer(name, t, persistent=False)


def slot_maps(cards: tuple[int, ...], d_out: int) -> dict[str, torch.Tensor]:
    """Where each node's values sit among the S one-hot slots of a token:
    ``node_of_slot`` (M, S), ``state_of_slot`` (S, d_out) and ``valid`` (M, d_out), the states a node has;
    as index tables, ``node_index_of_slot`` (S,) the node of each slot and ``slot_of_state`` (M, d_out) the
    slot of each of a node's states (its first slot where it has no such state: ``valid`` masks it)."""
    S, M = sum(cards), len(cards)
    node_of_slot, state_of_slot = torch.zeros(M, S), torch.zeros(S, d_out)
    valid = torch.zeros(M, d_out, dtype=torch.bool)
    node_index_of_slot = torch.zeros(S, dtype=torch.long)
    slot_of_state = torch.zeros(M, d_out, dtype=torch.long)
    at = 0
    for m, c in enumerate(cards):
        node_of_slot[m, at : at + c] = 1
        state_of_slot[at : at + c, :c] = torch.eye(c)
        valid[m, :c] = True
        node_index_of_slot[at : at + c] = m
        slot_of_state[m] = at
        slot_of_state[m, :c] = torch.arange(at, at + c)
        at += c
    return {"node_of_slot": node_of_slot, "state_of_slot": state_of_slot, "valid": valid,
            "node_index_of_slot": node_index_of_slot, "slot_of_state": slot_of_state}


class MixtureReadout(_ValueReadout):
    """The answer as a mixture: one attention over the sink and the context rows, whose values are each
    row's one-hot of the query's target node; the sink's value is a learned prior distribution.

    With weights w_sink and w_r it returns log(w_sink * prior + sum_r w_r * onehot(x_r[target])):
    Dirichlet posterior means have exactly this form, so the head needs no function approximation
    to turn counts into probabilities, only the right weights.
    """

    match_scores = True
    computed_parts = (MIXTURE_FORM,)
    VALUE_EQUALITY = ("value-equality features per node: each row scores sum_n g_n [its value of n equals the "
                      "query's], the indicators computed, only the gains g_n learned")

    @classmethod
    def computed(cls, cfg) -> tuple[str, ...]:
        return cls.computed_parts + ((cls.VALUE_EQUALITY,) if cfg.match_scores else ())

    def __init__(self, cfg):
        super().__init__(cfg)
        self.norm_k = norm_layer(cfg)
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.prior = nn.Linear(cfg.d_model, cfg.d_out)
        self.log_temp = nn.Parameter(torch.zeros(1))
        # per-node weight of a matching value
        self.gain = nn.Linear(cfg.d_model, self.layout.n_nodes) if cfg.match_scores else None

    def forward(self, h, h_seen, tokens, n_context: int):
        """The query states h weigh the sink and the context rows (h_seen): the mixture's log-probabilities."""
        values, rows, queries = self.layout.values, Layout.context_rows(n_context), Layout.query_rows(n_context)
        q, k = self.q(h), self.k(self.norm_k(h_seen))
        scale = self.log_temp.exp() / math.sqrt(q.shape[-1])
        scores = (q @ k.transpose(-1, -2)) * scale  # (B, Lq, 1 + N)
        # Slots are picked by index tables, not by products with the 0/1 maps of slot_maps (M x S dense:
        # ~200 GFLOP a step at munin's size): each product's sum has one nonzero term, so the numbers are
        # the same, bit for bit (tests/test_readouts.py compares them with the products').
        if self.gain is not None:  # + sum over nodes n of g_n [x_r[n] == the query's shown value of n]
            # in place: one (B, Lq, S) tensor, not two (the gather's backward does not need its output)
            shown = self.gain(h)[..., self.node_index_of_slot].mul_(tokens[:, queries, values])  # (B, Lq, S)
            scores = scores + F.pad(shown @ tokens[:, rows, values].transpose(-1, -2), (1, 0))
        w = torch.softmax(scores, -1)  # (B, Lq, 1 + N)
        target = tokens[:, queries, self.layout.targets].argmax(-1)  # (B, Lq): each query's target node
        valid = self.valid[target]  # (B, Lq, d_out): the target's states
        one = target[0, 0]
        if bool((target == one).all()):  # one target node (generation asks one node a call): its slots alone
            from_rows = w[..., 1:] @ tokens[:, rows, self.slot_of_state[one]]
        else:  # (B, Lq, S): weighted values of every node, then each query's target's slots
            seen = w[..., 1:] @ tokens[:, rows, values]
            from_rows = torch.gather(seen, -1, self.slot_of_state[target])
        from_rows = from_rows.masked_fill(~valid, 0)
        prior = self.prior(h).masked_fill(~valid, float("-inf"))
        probs = from_rows + w[..., :1] * torch.softmax(prior, -1)
        return torch.log(probs.clamp_min(1e-30)), w[:, None]


class EvidenceReadout(_ValueReadout):
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

    train_cost = 2.5  # the parent search: measured 2.5x the mixture readout's training (study=agnostic)

    MAX_CONFIGS = 512
    match_scores = True  # allowed, and not read: the hypotheses' gains do the matching
    computed_parts = (
        "leave-one-out likelihood of parent sets, by explicit counting, over a guess and its one-node edits "
        "(evidence_rounds rounds); learned: the guess, the gain level, the prior and the mixing weights",
        MIXTURE_FORM,
    )

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.evidence_rounds < 1:
            raise BNError(f"evidence_rounds must be >= 1, got {cfg.evidence_rounds}")
        if cfg.query_view != "prefix":
            raise BNError("output='evidence' needs query_view='prefix' (it searches the parents a query is not "
                          f"shown), got query_view={cfg.query_view!r}")

    def __init__(self, cfg):
        super().__init__(cfg)
        D, M = cfg.d_model, len(cfg.cards)
        self.rounds, self.n_slots, self.n_nodes = cfg.evidence_rounds, sum(cfg.cards), M
        self.guess = nn.Linear(D, M)  # z: how likely each node is a parent of the token's target
        self.level = nn.Linear(D, 1)  # G / log(N + 2), through a softplus
        self.strength = nn.Linear(D, 1)  # beta: log of the prior's weight, in fully matching rows
        self.plausible = nn.Linear(D, M + 1)  # c: prior log-odds of the guess and of each edit
        self.prior = nn.Linear(D, cfg.d_out)
        self.log_lambda = nn.Parameter(torch.zeros(1))
        earlier = torch.ones(M, M).tril(-1)  # [t, n]: node n comes before t, so a query for t shows it
        self.register_buffer("earlier", earlier, persistent=False)
        self.register_buffer("edit", torch.eye(M), persistent=False)
        allowed = torch.cat([torch.ones(M, 1), earlier], 1).bool()  # the guess, and edits of earlier nodes
        self.register_buffer("allowed", allowed, persistent=False)
        self.prefix_slots = [sum(cfg.cards[: t + 1]) for t in range(M)]  # the slots of nodes 0..t
        for t in range(M):  # configs_t: every joint configuration of nodes 0..t (none when there are too many)
            self.register_buffer(f"configs_{t}", _all_configs(cfg.cards[: t + 1], self.MAX_CONFIGS), persistent=False)
        self.count_configs = True  # False: every product runs over rows (the same numbers, slower)

    def add_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """One structure token per node, after the queries: it asks for its node and shows nothing."""
        structure = tokens.new_zeros(tokens.shape[0], self.n_nodes, tokens.shape[-1])
        structure[:, :, self.layout.targets] = torch.eye(self.n_nodes, dtype=tokens.dtype, device=tokens.device)
        return torch.cat([tokens, structure], 1)

    def forward(self, h, h_seen, tokens, n_context: int):
        """The structure tokens' states (the last M of h) search the parents; the queries' pick their target's."""
        N, n_queries = n_context, h.shape[1] - self.n_nodes
        h_struct = h[:, n_queries:]  # (B, M, D)
        tokens = tokens[:, : tokens.shape[1] - self.n_nodes]  # without the structure tokens
        values, queries = self.layout.values, Layout.query_rows(N)
        rows = tokens[:, Layout.context_rows(N), values]
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
        target = tokens[:, queries, self.layout.targets]  # (B, Lq, M)
        pick = lambda t: torch.einsum("bqt,bt...->bq...", target, t)  # noqa: E731
        shown_q = tokens[:, queries, values]
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


class _GaussianReadout(Readout):
    """A readout for real-valued tokens (:mod:`gaussian_tokens`): each query's output is a Student-t
    ``(df, loc, scale)`` (float64), the prediction layout of :mod:`bncompare.networks.gaussian`."""

    variables = "gaussian"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.query_view != "prefix":
            raise BNError(f"output={cfg.output!r} reads the prefix a query shows: it needs query_view='prefix', "
                          f"got {cfg.query_view!r}")
        if cfg.d_out is not None and cfg.d_out != PREDICTION_WIDTH:
            raise BNError(f"output={cfg.output!r} gives (df, loc, scale): d_out must be {PREDICTION_WIDTH}, "
                          f"got {cfg.d_out}")

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        raise BNError(f"a {type(self).__name__} predicts densities (df, loc, scale), not probabilities")


class StudentTReadout(_GaussianReadout):
    """A linear head on each query's final state: df = 2 + softplus, loc, scale = softplus (all learned).

    Nothing is computed: the backbone alone must turn the context into the prediction.
    """

    def __init__(self, cfg):
        super().__init__()
        self.head = nn.Linear(cfg.d_model, PREDICTION_WIDTH)

    def forward(self, h, h_seen, tokens, n_context: int):
        raw = self.head(h).double()
        df = 2.0 + F.softplus(raw[..., 0] + 3.0)  # starts near a Normal-like df of 5
        scale = F.softplus(raw[..., 2]) + 1e-6
        return torch.stack([df, raw[..., 1], scale], -1), None


class ConjugateReadout(_GaussianReadout):
    """The Normal-inverse-gamma update of each target on in-context moments, with a LEARNED prior per target.

    Structure token t (an extra token, after the queries, that asks for node t and shows nothing) reads
    the context through the backbone; a linear head on its final state gives target t's prior: a
    precision lambda_j > 0 and a mean mu_j for each regressor j (the intercept and every node before t in
    topological order), and the inverse-gamma a, b. A very large lambda_j pins the weight of j to mu_j:
    the transformer LEARNS which earlier nodes are t's parents (all of them are candidates) and the prior;
    nothing tells it which node a structure token stands for but the token's target one-hot.

    COMPUTED, not learned: the moments S = sum over context rows of z z' with z = (1, x_1..x_M), and from
    them, for target t with regressors R (mask r), the conjugate update
    A = Lambda + X'X, beta = A^-1 (Lambda mu + X'y), a_N = a + N / 2,
    b_N = b + (||y - X beta||^2 + (beta - mu)' Lambda (beta - mu)) / 2,
    and its Student-t predictive at a query's z_q: df 2 a_N, loc z_q' beta,
    scale^2 = (b_N / a_N)(1 + z_q' A^-1 z_q). Under the true prior with lambda of non-parents infinite this
    is the exact posterior predictive. Everything is float64 (the moments of raw values).
    """

    computed_parts = (
        "in-context moments per node: sums over context rows of z z' for z = (1, x_1..x_M)",
        "Normal-inverse-gamma update of each target on its moments (a Cholesky solve), given the learned prior",
        "Student-t posterior predictive of that update (df 2 a_N, loc z' beta, scale^2 (b_N / a_N)(1 + z' A^-1 z))",
    )
    GAIN = 8.0  # log-precision = GAIN x the head's output: structure needs log-precisions ~20, the head ~1
    LOG_PRECISION = (-20.0, 30.0)  # clamp: keeps A positive definite and finite in float64

    def __init__(self, cfg):
        super().__init__()
        M = len(cfg.cards)
        self.layout, self.n_nodes, self.width = GaussianLayout(M), M, 2 * (M + 1) + 2
        # [log-precision (M + 1) / GAIN, mean (M + 1), log a, log b]; near 0 at the start: precision 1, mean 0,
        # a = b = 1
        self.from_state = nn.Linear(cfg.d_model, self.width)
        regressor = torch.cat([torch.ones(M, 1), torch.ones(M, M).tril(-1)], 1)  # [t, j]: j is a regressor of t
        self.register_buffer("regressor", regressor.double(), persistent=False)

    def add_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """One structure token per node, after the queries: it asks for its node and shows nothing."""
        structure = tokens.new_zeros(tokens.shape[0], self.n_nodes, tokens.shape[-1])
        structure[:, :, self.layout.targets] = torch.eye(self.n_nodes, dtype=tokens.dtype, device=tokens.device)
        return torch.cat([tokens, structure], 1)

    def prior(self, h_struct: torch.Tensor):
        """Each target's prior from the structure tokens' states (B, M, D): precision, mean (B, M, M + 1),
        a, b (B, M), float64, zero precision outside a target's regressors."""
        K = self.n_nodes + 1
        raw = self.from_state(h_struct).double()
        log_lam = (self.GAIN * raw[..., :K]).clamp(*self.LOG_PRECISION)
        return (log_lam.exp() * self.regressor, raw[..., K : 2 * K] * self.regressor, raw[..., 2 * K].exp(),
                raw[..., 2 * K + 1].exp())

    def forward(self, h, h_seen, tokens, n_context: int):
        """The structure tokens' states (the last M of h) give the priors; the queries get their target's
        posterior predictive."""
        M, K, N = self.n_nodes, self.n_nodes + 1, n_context
        n_q = h.shape[1] - M
        lam, mu, a, b = self.prior(h[:, n_q:])
        r = self.regressor
        rows = tokens[:, 1 : 1 + N, self.layout.values].double()
        z = torch.cat([rows.new_ones(*rows.shape[:2], 1), rows], -1)  # (B, N, K)
        S = z.transpose(1, 2) @ z  # (B, K, K): the in-context moments
        xy = S[:, :, 1:].transpose(1, 2) * r  # (B, M, K): X'y of target t, on its regressors
        A = (r[:, :, None] * r[:, None, :]) * S[:, None] + torch.diag_embed(lam + (1 - r))  # (B, M, K, K)
        chol = torch.linalg.cholesky(A)
        beta = torch.cholesky_solve((xy + lam * mu)[..., None], chol)[..., 0]  # (B, M, K); 0 off the regressors
        yy = S.diagonal(dim1=1, dim2=2)[:, 1:]  # (B, M)
        fit = torch.einsum("btk,bkl,btl->bt", beta, S, beta)
        resid = yy - 2 * (beta * xy).sum(-1) + fit + (lam * (beta - mu) ** 2).sum(-1)
        a_n, b_n = a + N / 2, b + resid.clamp_min(0) / 2  # (B, M)

        queries = tokens[:, 1 + N : 1 + N + n_q]
        target = queries[..., self.layout.targets].argmax(-1)  # (B, Lq)
        zq = torch.cat([queries.new_ones(*queries.shape[:2], 1), queries[..., self.layout.values]], -1).double()
        zq = zq * r[target]  # each query's regressors
        loc = (zq * torch.gather(beta, 1, target[..., None].expand(-1, -1, K))).sum(-1)
        quad = self._quadratic(chol, zq, target)
        pick = lambda t: torch.gather(t, 1, target)  # noqa: E731  (B, M) -> (B, Lq)
        df = 2 * pick(a_n)
        scale = torch.sqrt(pick(b_n) / pick(a_n) * (1 + quad))
        return torch.stack([df, loc, scale], -1), None

    @staticmethod
    def _quadratic(chol, zq, target):
        """z_q' A_t^-1 z_q for each query and its target t, (B, Lq): one triangular solve per target when every
        context asks for the same targets at the same positions (as the encoder lays them out)."""
        if bool((target == target[:1]).all()):
            quad = zq.new_zeros(zq.shape[:2])
            for t in target[0].unique().tolist():
                at = (target[0] == t).nonzero()[:, 0]
                v = torch.linalg.solve_triangular(chol[:, t], zq[:, at].transpose(1, 2), upper=False)
                quad = quad.index_copy(1, at, (v**2).sum(1))
            return quad
        L = torch.gather(chol, 1, target[..., None, None].expand(-1, -1, *chol.shape[2:]))  # (B, Lq, K, K)
        v = torch.linalg.solve_triangular(L, zq[..., None], upper=False)
        return (v**2).sum((-1, -2))


def _all_configs(cards: tuple[int, ...], limit: int) -> torch.Tensor:
    """One-hots of every joint configuration of the nodes (C, S), or (0, S) when there are more than ``limit``."""
    if math.prod(cards) > limit:
        return torch.zeros(0, sum(cards))
    grids = torch.cartesian_prod(*[torch.arange(c) for c in cards]).reshape(-1, len(cards))  # (C, M) even for M = 1
    return onehots(Layout(cards), grids)


# The one place a readout kind is looked up: TransformerConfig.output -> its class.
READOUTS: dict[str, type[Readout]] = {
    "logits": LogitsReadout,
    "probs": ProbsReadout,
    "mixture": MixtureReadout,
    "evidence": EvidenceReadout,
    "student_t": StudentTReadout,
    "conjugate": ConjugateReadout,
}
TRAINED_OUTPUTS = tuple(kind for kind, readout in READOUTS.items()
                        if readout.trainable and readout.variables == "discrete")
GAUSSIAN_OUTPUTS = tuple(kind for kind, readout in READOUTS.items()
                         if readout.trainable and readout.variables == "gaussian")
# the autoregressive forecaster (train_ar): a plain linear head whose d outputs are read as the next state
AR_OUTPUTS = tuple(kind for kind, readout in READOUTS.items() if readout is LogitsReadout)
