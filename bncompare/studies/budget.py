"""Memory a study will need, estimated from its settings before anything is allocated.

The estimate is meant as an upper bound of the process's peak resident memory, built from the
shapes the code allocates (float64 and int64 tensors, 8 bytes an entry):

- the episodes of one context length, kept for every estimator: each block's true CPTs,
  contexts and queries (:class:`bncompare.studies.protocol.Episodes` caches them);
- drawing a block: the Gamma sampler of a Dirichlet prior holds ~16 temporaries of a node's
  CPT tensor (``networks.priors._standard_gamma``);
- one batch: its concatenated CPTs, and what every estimator keeps from its last fit (counts
  and CPT estimates; Pyro's posterior draws; a transformer's attention), :data:`CPT_COPIES`;
- the measures: predictions and errors (B, Q, d) per node, Monte Carlo samples, the exact joint;
- the rows of every cell, held until the run's files are written;
- training a transformer: its task draws, targets, activations and optimizer state; on two cores one
  training may run in a second process (:mod:`bncompare.studies.background`), held beside everything else.

Phases that do not overlap are not added: the peak is the fixed part (the interpreter and its
libraries, the cached episodes, every estimator's fitted state, the rows) plus the largest of the
transient parts. A study whose estimate exceeds the limit is refused with one line naming the amount,
its largest part and the setting to lower. The limit is 80% of this machine's RAM, or
``$BNCOMPARE_MEMORY_GB``. Counts a user gives are also bounded on their own (:data:`MAX_COUNT`),
so a value that only costs time (training steps) cannot be absurd either.
"""
from __future__ import annotations

import logging
import math
import os

from bncompare.errors import BNError
from bncompare.metrics.joint import n_joint_states
from bncompare.networks.graph import Graph
from bncompare.studies import background
from bncompare.studies.protocol import BLOCK
from bncompare.studies.spec import StudySpec

F64 = 8
# Python, torch, pandas, pgmpy, Pyro and matplotlib loaded, with their allocators' slack: ~290-600 MB measured
# alone, but small studies peaked at 1.5 GB in a CI run (tests/test_memory_peak.py): rounded up from that
BASE = 1600 * 2**20
# the second process's interpreter (Python, torch, the transformer; no pandas plots, Pyro or pgmpy): 370 MB measured
SECOND_PROCESS = 600 * 2**20
GAMMA_TEMPS = 16  # tensors of a node's CPT shape alive at once in the Dirichlet prior's Gamma sampler
ROW_BYTES = 48  # one tidy row (episode, node, metric, value: 4 x 8 bytes) in a pandas frame, and slack
ROWS_PER_NODE = 10  # per-node rows of an episode (conditional errors, scores, agreement): 8 measured
ROWS_PER_EPISODE = 20  # per-episode rows that are not per node (timing, joint measures, attention): 6-12
MAX_COUNT = 10**8  # no count a user gives may exceed this (episodes, queries, lengths, steps, draws)
log = logging.getLogger(__name__)


def _pyro_draws(params: dict) -> int:
    return _num(params.get("num_samples", 200)) + _num(params.get("warmup_steps", 0)) // 4 + 4


# CPT-set copies an estimator of each kind holds per episode it is fitted on (its state and its fit's
# temporaries); kinds not listed hold a few (4). Pyro's are per draw of its posterior.
CPT_COPIES = {
    "mle": 4, "dirichlet": 4, "bdeu": 4, "k2": 4, "pyro_conjugate": 6,
    "dirichlet_median": 8, "uniform_mean": 8, "uniform_median": 8, "structure_averaging": 8,
    "pgmpy_mle": 8, "pgmpy_bayes": 8,
    "pyro_nuts": lambda p: 3 * _pyro_draws(p),
    "pyro_svi": lambda p: 2 * (_num(p.get("num_draws", 500)) + 4),
}


def memory_limit() -> int:
    """Bytes a study may plan to hold at once."""
    raw = os.environ.get("BNCOMPARE_MEMORY_GB")
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = math.nan
        if not (math.isfinite(gb) and 0 < gb <= 2**30):
            raise BNError(f"BNCOMPARE_MEMORY_GB must be a positive number of gigabytes (e.g. 8), got {raw!r}")
        return int(gb * 2**30)
    return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_counts(spec: StudySpec) -> None:
    """Every count of the study below :data:`MAX_COUNT`: one line naming the setting."""
    counts = [("episodes", spec.episodes), ("queries", spec.queries), ("batch_size", spec.batch_size),
              ("context_lens", max(spec.context_lens)), ("fidelity.mc_samples", spec.mc_samples),
              ("diagnostics.attention_episodes", spec.attention_episodes)]
    for e in spec.estimators:
        if e.subset is not None:
            counts.append((f"estimators.{e.name}.subset", e.subset))
        for k, v in e.params.items():
            if isinstance(v, int) and not isinstance(v, bool) and k != "seed":
                counts.append((f"estimators.{e.name}.params.{k}", v))
        train = e.params.get("train_cfg")
        if isinstance(train, dict):
            for k, v in _flat(train).items():
                if isinstance(v, int) and not isinstance(v, bool) and k != "seed":
                    counts.append((f"transformer.train.{k}", v))
                elif isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v) and v:
                    counts.append((f"transformer.train.{k}", max(v)))
    for what, value in counts:
        if value > MAX_COUNT:
            raise BNError(f"{what}={value} is more than this toolkit supports (at most {MAX_COUNT:.0e}); lower it")


def _flat(cfg: dict) -> dict:
    model = cfg.get("model")
    return {**(model if isinstance(model, dict) else {}), **{k: v for k, v in cfg.items() if k != "model"}}


def estimates(spec: StudySpec, graph: Graph) -> list[tuple[str, int, str, bool]]:
    """(what, bytes, the setting to lower, held) for the big allocations of ``spec`` on ``graph``;
    ``held`` parts add up, of the others only the largest counts (they come one after another)."""
    blocks = -(-spec.episodes // BLOCK)
    B = min(max(1, spec.batch_size // BLOCK), blocks) * BLOCK  # episodes per batch
    M, N, Q = graph.n_nodes, max(spec.context_lens), spec.queries
    cpt = sum(c * k for c, k in zip(graph.n_configs, graph.cards)) * F64  # one episode's CPT set
    node = max(c * k for c, k in zip(graph.n_configs, graph.cards)) * F64  # its largest node
    width = sum(graph.cards) * F64
    size = "the graph's size (graph.options.card, parents)"
    out = [
        ("the interpreter and its libraries", BASE, "nothing (the fixed cost)", True),
        ("the episodes of one context length (true CPTs, contexts, queries)",
         blocks * BLOCK * (cpt + (N + Q) * M * F64), f"episodes or {size}", True),
        ("drawing a block of CPTs", (GAMMA_TEMPS + 2) * BLOCK * node, size, False),
        ("the per-episode rows of every cell", _episode_cells(spec) * ((M + 1) * ROWS_PER_NODE + ROWS_PER_EPISODE)
         * ROW_BYTES * 2, "episodes, context_lens or the estimators", True),  # 2: the frames, and all in one
    ]
    fitted = B * cpt  # the batch's concatenated CPTs
    for e in spec.estimators:
        copies = CPT_COPIES.get(e.kind, 4)
        if callable(copies):  # posterior draws: the estimator's own settings say how many
            out.append((f"the posterior draws of estimators.{e.name}", min(B, e.subset or B) * cpt * copies(e.params),
                        f"estimators.{e.name}.params (draws or samples), its subset or {size}", True))
        else:
            fitted += min(B, e.subset or B) * cpt * copies
    out.append(("the CPTs of a batch (truth, each estimator's counts and estimates)", fitted,
                f"{size} or batch_size", True))
    # predictions of the estimator and its mirror, the truth at the queries, errors, scores: (B, Q, d) float64
    out.append(("the queries and predictions of a batch", 12 * B * Q * (width + M * F64) + 2 * B * N * M * F64,
                "queries or batch_size", False))
    if "naive" in {e.kind for e in spec.estimators}:
        out.append(("the naive estimator's prefix matches", 4 * B * Q * N * F64, "queries, context_lens or batch_size",
                    False))
    mc = spec.mc_samples
    fid = B if spec.fidelity_episodes is None else max(1, min(B, spec.fidelity_episodes))
    # the true CPT rows at every sample (or joint state) are gathered as (B, n, d) tensors, with their indices
    rows = 2 * max(graph.cards) + 6 * (M + 2)
    out.append(("the Monte Carlo fidelity samples", fid * mc * (rows + 2 * M) * F64 + 4 * fid * mc * width
                + 4 * fid * max(graph.cards) ** 2 * F64, "fidelity.mc_samples", False))
    states = n_joint_states(graph)
    if states <= spec.max_exact_states:
        out.append(("the exact joint distribution", fid * states * rows * F64, "fidelity.max_exact_states", False))
    kinds = {e.kind: e for e in spec.estimators}
    for kind, width_tf in _transformer_widths(kinds, graph).items():
        # one forward pass holds at most 256 contexts and max(256, N) query tokens (or one query's M),
        # in float64 for the construction: tokens in, the residual stream's temporaries, the attention scores
        Bp, T = min(B, 256), N + 1 + min(Q * M, max(256, N, M))
        d_in = sum(graph.cards) + M + 2
        out.append((f"a transformer's forward pass ({kind})", Bp * T * (d_in + 16 * width_tf + 4 * T) * F64,
                    "context_lens, queries or batch_size", False))
    trainings = [_training(kinds[kind].params.get("train_cfg") or {}, graph, cpt, node)
                 for kind in ("trained", "transformer_agnostic") if kind in kinds]
    out += trainings
    if trainings and background.enabled():  # one training may run in a second process, beside everything else
        biggest = max(trainings, key=lambda p: p[1])
        out.append(("a second process training a transformer (its interpreter and the training)",
                    SECOND_PROCESS + biggest[1],
                    f"{biggest[2]}, or set BNCOMPARE_PARALLEL=0 (train in the study's process)", True))
    return out


def _transformer_widths(kinds: dict, graph: Graph) -> dict[str, int]:
    """The residual stream's width of each transformer kind of the study: the trained models' ``d_model``; the
    construction answers each node with its family's model (its one-hots twice, its nodes, flags)."""
    from bncompare.transformer.train import TrainConfig

    out = {}
    if "constructed" in kinds:
        fam = [[*pa, m] for m, pa in enumerate(graph.parents)]
        out["constructed"] = max(3 * sum(graph.cards[i] for i in f) + 2 * len(f) + 8 for f in fam)
    for kind in ("trained", "transformer_agnostic"):
        if kind in kinds:
            cfg = kinds[kind].params.get("train_cfg") or {}
            model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
            out[kind] = max(64, _num(cfg.get("d_model", model.get("d_model", TrainConfig().model.d_model))))
    return out


def _episode_cells(spec: StudySpec) -> int:
    """Episodes over every cell of the study (each estimator at its own lengths, on its subset)."""
    total = 0
    for e in spec.estimators:
        lens = [n for n in spec.context_lens if e.context_lens is None or n in e.context_lens]
        total += len(lens) * min(spec.episodes, e.subset or spec.episodes)
    return total


# (B, Lq, S) float32 tensors a value readout (mixture, evidence) holds at once in a training step: the query
# tokens' shown values times the gains, their product, the weighted values seen, and as many gradients
VALUE_READOUT_COPIES = 8
# float32 numbers a block keeps per token for the backward pass, per width unit: the norms, q, k, v, the
# attention's output and projection, the residual sums (~12 d), and the MLP's hidden layers (3 d_ff: SwiGLU's
# gate, up and their product)
BLOCK_PER_D, BLOCK_PER_FF = 12, 3


def _training(cfg: dict, graph: Graph, cpt: int, node: int) -> tuple[str, int, str, bool]:
    """What training a transformer holds at its peak, from the shapes the code allocates: the weights and
    Adam's state; one length group's forward and backward (each group of ``batch_size / length_groups``
    contexts is its own pass) or one pass of the held-out evaluation (as many contexts as a group, no gradients),
    whichever is bigger; and the task draws."""
    from bncompare.transformer.readouts import READOUTS, Readout, _ValueReadout
    from bncompare.transformer.train import TrainConfig

    base = TrainConfig()
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}  # a bad one: TrainConfig reports it
    get = lambda k: _num(cfg.get(k, getattr(base, k)))  # noqa: E731
    get_model = lambda k: cfg.get(k, model.get(k, getattr(base.model, k)))  # noqa: E731  flat, or under model
    M, N, S = graph.n_nodes, get("n_context_max"), sum(graph.cards)
    lens = cfg.get("eval_lengths", base.eval_lengths)
    lens = [_num(n) for n in lens] if isinstance(lens, (list, tuple)) and lens else [N]
    Q, batch, d_out = get("n_queries"), get("batch_size"), max(graph.cards)
    d, layers, heads, ff = (_num(get_model(k)) for k in ("d_model", "n_layer", "n_head", "d_ff"))
    readout = READOUTS.get(get_model("output"), READOUTS[base.model.output])
    full = get_model("context_attention") == "full"
    d_in, Lq = S + M + 2, Q * M + (M if readout.add_tokens is not Readout.add_tokens else 0)  # + its structure tokens
    params = (layers * (4 * d * d + 3 * d * ff) + (d_in + M + 2 * d + d_out) * d) * 4 * 4  # weights, grads, Adam

    def one_pass(B: int, n: int, grad: bool) -> int:
        """Float32 numbers of one forward (and backward) of B contexts of n rows: the tokens; each block's
        activations and attention scores (queries: on the sink, the rows and themselves; rows: on the sink and
        themselves, or on every row), kept for the backward, or one block's alive at a time without it; the
        readout's (B, Lq, S) tensors and its scores (B, Lq, 1 + n)."""
        T = 1 + n + Lq
        scores = heads * (Lq * (n + 3) + (1 + n) * ((n + 2) if full else 2))
        if grad:
            blocks = layers * (T * (BLOCK_PER_D * d + BLOCK_PER_FF * ff) + 3 * scores)  # logits, weights, grads
            blocks += T * (BLOCK_PER_D * d + BLOCK_PER_FF * ff)  # the gradients of one block in the backward
        else:
            blocks = T * (4 * d + BLOCK_PER_FF * ff) + 2 * scores
        copies = VALUE_READOUT_COPIES if grad else VALUE_READOUT_COPIES // 2
        values = copies * Lq * S if issubclass(readout, _ValueReadout) else 0
        return B * (2 * T * d_in + blocks + values + (8 if grad else 3) * Lq * (n + 1 + d_out))

    group = -(-batch // max(1, get("length_groups")))
    held_out = get("eval_tasks") if get("eval_every") > 0 else 0  # eval_every = 0: no held-out sets
    acts = max(one_pass(group, N, True), one_pass(min(held_out, group), max(N, *lens), False)) * 4
    # the held-out task sets (CPTs, counts, five (Q, M, d_out) targets each) and one step's fresh draw
    tasks = (held_out * len(lens) + batch) * (2 * cpt + 6 * Q * M * d_out * F64 + max(N, *lens) * M * F64)
    draw = (GAMMA_TEMPS + 2) * max(held_out, batch) * node
    return ("training the transformer", params + acts + tasks + draw,
            "context_lens (transformer.train.n_context_max), transformer.train.batch_size, "
            "transformer.train.eval_tasks or transformer.train.d_model",
            False)


def _num(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0  # TrainConfig itself reports a bad value


def peak(spec: StudySpec, graph: Graph) -> tuple[int, tuple[str, int, str, bool]]:
    """The estimated peak in bytes, and its largest part."""
    parts = estimates(spec, graph)
    held = [p for p in parts if p[3]]
    passing = [p for p in parts if not p[3]]
    total = sum(p[1] for p in held) + max((p[1] for p in passing), default=0)
    return total, max(parts[1:], key=lambda p: p[1])


def check_budget(spec: StudySpec, graph: Graph) -> int:
    """Refuse a study that would need more memory than this machine allows, before allocating any of it;
    returns the estimated peak in bytes."""
    limit = memory_limit()
    total, (what, need, knob, _) = peak(spec, graph)
    if total > limit:
        raise BNError(f"the study would need ~{_size(total)} of memory, more than the {_size(limit)} allowed here "
                      f"(set BNCOMPARE_MEMORY_GB to change it); the largest part, {what}, would need "
                      f"~{_size(need)}: lower {knob}")
    check_counts(spec)  # what memory does not bound (training steps, draws) is bounded on its own
    log.info("memory: ~%s at most (largest part: %s, ~%s); %s allowed", _size(total), what, _size(need), _size(limit))
    return total


def _size(n: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
    i = min(len(units) - 1, int(math.log(max(n, 1), 1024)))
    return f"{n / 1024**i:.3g} {units[i]}" if i < len(units) - 1 else f"{n:.3g} B"
