"""Time a study will take, estimated from its settings before anything runs.

A cell (one estimator at one context length) is priced as a sum of work units times seconds per unit:

- what every estimator's cell pays alike (:data:`MEASURES`): drawing its episodes, the per-episode rows of
  the measures, the fidelity measures' own work (true samples, log-likelihoods, pairwise marginals);
- the estimator's own work, from its kind's :class:`Cost` in :data:`COSTS`: per context, per batch (one
  vectorized fit), per context row x node, per CPT parameter, per predicted probability (the queries, and the
  rows the fidelity measures ask: every joint state when the joint is enumerated, else ``mc_samples``
  generated rows, node by node), per predict call, per Pyro plate and per draw or step of its budget;
- a transformer's forward passes, layers x tokens x width x (8 x width + tokens) per sequence
  (:func:`forward_units`) at ``Cost.forward`` seconds per unit; its width and depth come from its settings
  (the trained model's ``d_model`` and ``n_layer``; the construction's width follows from the graph);
- a trained transformer's query tokens x their one-hot width S (``Cost.query_slots``): its embedding and its
  readout's value matching read every slot of a token, which on a network of a thousand nodes (S = 5651)
  costs more than the blocks.

Training a transformer is steps x seconds per step (:func:`training_seconds`), counted only when the model is
not in the cache yet (the estimator says so: ``pending_training``) and once per cache entry (the checkpoint
estimators share their model's training). Kinds not in :data:`COSTS` (plugins, registered classes) get
:data:`GUESS`, and the log says their time is a guess.

The coefficients were measured on the 2-core machine this was written on, 2026-12-03 (see each table's
comment), with other jobs on the cores: the estimate is an order of magnitude, not a promise. A study whose
estimate exceeds ``max_minutes`` is refused in one line naming the estimators that cost most and the
settings to lower.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bncompare.errors import BNError
from bncompare.metrics.joint import n_joint_states
from bncompare.networks.graph import Graph
from bncompare.studies.protocol import BLOCK
from bncompare.studies.spec import EstimatorSpec, StudySpec

log = logging.getLogger(__name__)

QUERY_TOKENS = 256  # a transformer answers about this many query tokens per forward pass (TransformerEstimator)
GENERATE_CHUNK = 256  # rows generated per chunk (estimators.generate)
EXACT_QUERY_TOKENS = 512  # states x nodes per call of the exact joint (metrics.joint)


@dataclass(frozen=True)
class Cost:
    """Seconds per unit of work (the units of :func:`cell_units`) of one kind of estimator, or of the measures
    every cell takes (:data:`MEASURES`)."""

    library: str = ""  # a key of LIBRARIES: importing it costs once per study
    prepare: float = 0.0  # once per estimator with cells to run (loading a cached model, checking its entry)
    context: float = 0.0  # per context (episode) fitted and predicted
    context_node: float = 0.0  # per context x node (a library fits a table per node per context)
    batch: float = 0.0  # per vectorized fit (a batch of episodes, or one DAG's episodes of it)
    call_node: float = 0.0  # per predict call x node asked, over a batch (the measures' per-node loops)
    rows: float = 0.0  # per context row x node (counting)
    params: float = 0.0  # per CPT parameter per context (estimates, posterior draws)
    values: float = 0.0  # per predicted probability (queries and fidelity rows, x the node's states)
    pairs: float = 0.0  # per node pair per batch of the Monte Carlo pairwise marginals
    plate_node: float = 0.0  # per node of a Pyro plate of 32 contexts (one model, one chain or guide)
    draw: float = 0.0  # per draw (NUTS: samples + warmup; SVI: steps) x plate x graph size (nodes + params / 100)
    forward: float = 0.0  # per forward_units of a transformer
    query_slots: float = 0.0  # per query token x one-hot slot (S): what a wide token costs to embed and to match
    model: Callable | None = field(default=None, compare=False)  # (params, graph) -> a transformer's (width, layers)
    by_family: bool = False  # the transformer answers each target with its family's model (width from the family)
    draws: Callable[[dict], float] = field(default=lambda p: 0.0, compare=False)  # the estimator's own budget


def _num(params: dict, key: str, default: float) -> float:
    try:
        return float(params.get(key, default))
    except (TypeError, ValueError):
        return float(default)


def _train_factor(p: dict) -> float:
    """A training's cost against the project recipe's at the same sizes, from the estimator's own settings."""
    if p.get("recipe") in ("paper", "paper_mle"):  # linear head, ReLU MLP: 66 s for 2000 steps against 149 s
        return 0.45
    from bncompare.transformer.readouts import READOUTS

    return READOUTS[_train_cfg(p).model.output].train_cost  # the readout declares it


def _constructed_shape(params: dict, graph: Graph) -> tuple[int, int]:
    """The residual stream of a family's construction (the estimator answers each target with its family's):
    d_in + 2S + d_out, d_in = S + |family| + 2 (S = the family's states), on average over the nodes; 2 layers."""
    widths = [3 * sum(graph.cards[i] for i in (*pa, m)) + len(pa) + 3 + max(graph.cards[i] for i in (*pa, m))
              for m, pa in enumerate(graph.parents)]
    return round(sum(widths) / len(widths)), 2


def _trained_shape(params: dict, graph: Graph) -> tuple[int, int]:
    model = _train_cfg(params).model
    return int(model.d_model), int(model.n_layer)


def _train_cfg(params: dict):
    from bncompare.transformer.train import TrainConfig

    cfg = params.get("train_cfg")
    try:
        return TrainConfig.from_dict(dict(cfg)) if isinstance(cfg, dict) else TrainConfig()
    except BNError:
        return TrainConfig()  # a bad config is reported by the estimator itself


# Calibrated 2026-12-03 on this machine (2 cores). Anchors, a quiet run of the default tree-7 study (7 nodes,
# 26 CPT parameters, 500 episodes, 9 lengths, exact joint): Pyro NUTS per plate of 32 contexts 2.1 / 7.4 / 14.4 s
# at 25+25 / 100+100 / 200+200 draws, SVI 0.9 / 1.9 / 5.4 s at 100 / 300 / 1000 steps, pgmpy 0.01 s per
# context; evaluate_cell per cell, measured with other jobs on the cores (load 2-9: scaled down ~2x), on
# that study and on graph=hailfinder study=smoke (56 nodes, 3741 parameters, Monte Carlo fidelity, 200 rows):
# counting 0.1-0.2 s a cell on both, Pyro and pgmpy ~8-15x tree-7's per plate or context; the transformers'
# lines were measured again on 2026-12-04 (below). Kinds not listed cost GUESS.
# One line per kind: update a line when its code gets faster (benchmarks/bench_time_estimate.py compares).
MEASURES = Cost(context=1e-4, batch=2e-3, call_node=1e-3, values=2e-7, pairs=3e-5)
COUNTING = Cost(context=5e-6, batch=1e-3, rows=2e-9, params=2e-8, values=1e-8)
LIBRARIES = {"pgmpy": 3.0, "pyro": 3.0}  # seconds to import, once per study that needs it
_PYRO = dict(library="pyro", plate_node=0.047, draw=4.8e-3)
COSTS: dict[str, Cost] = {
    "mle": COUNTING, "dirichlet": COUNTING, "bdeu": COUNTING, "k2": COUNTING, "pyro_conjugate": COUNTING,
    "dirichlet_median": Cost(context=1e-5, batch=2e-3, params=1e-7, values=2e-8),
    "uniform_mean": Cost(context=1e-5, batch=2e-3, params=1e-7, values=2e-8),
    "uniform_median": Cost(context=1e-5, batch=2e-3, params=1e-7, values=2e-8),
    "naive": Cost(context=2e-5, batch=1e-3, rows=2e-8, values=3e-7),  # prefix matches: rows x queries
    "structure_averaging": Cost(context=2e-3, batch=1e-2, values=3e-7),
    "pgmpy_mle": Cost(library="pgmpy", context_node=4e-3, rows=2e-6),  # one pandas frame and fit per context
    "pgmpy_bayes": Cost(library="pgmpy", context_node=4e-3, rows=2e-6),
    # one chain per plate of 32 contexts; ~20 draws' worth of step-size adaptation on top of the budget
    "pyro_nuts": Cost(**_PYRO, draws=lambda p: _num(p, "num_samples", 200) + _num(p, "warmup_steps", 0) + 20),
    "pyro_svi": Cost(library="pyro", plate_node=0.05, draw=6.9e-4, draws=lambda p: _num(p, "steps", 1000)),
    # transformers: forward passes (the construction in float64, its width from the graph) and per-node readouts.
    # the construction answers by family (its width: the family's): on hailfinder, study=smoke, its two cells
    # 5.9 s estimated, 6-11 s each measured (load 7-9); bench_time_estimate.py compares
    # 2026-12-04 (quiet): per node a generation call of 32 contexts x 200 rows at d_model 32 took 0.019 s on alarm
    # (S = 105), 0.028 on hailfinder (223), 0.42 on munin (5651): the blocks (forward) plus ~1.1e-8 s per query
    # token x slot. The construction asks one family model per target: its calls cost per node asked.
    "constructed": Cost(batch=5e-3, call_node=5e-4, forward=5e-11, model=_constructed_shape, by_family=True),
    "trained": Cost(prepare=2.0, batch=5e-3, forward=6e-11, query_slots=1.1e-8, model=_trained_shape),
    "transformer_agnostic": Cost(prepare=2.0, batch=5e-3, forward=6e-11, query_slots=1.1e-8, model=_trained_shape),
    # linear-Gaussian kinds (graph=gaussian-tree study=smoke, under load: 0.1-0.3 s a cell of 32 episodes) and
    # autoregressive ones (not measured: guesses of the same size): per context and batch, measures included
    "gaussian_mle": Cost(context=3e-4, batch=5e-2), "gaussian_ridge": Cost(context=3e-4, batch=5e-2),
    "nig_posterior": Cost(context=3e-4, batch=5e-2), "gaussian_naive": Cost(context=3e-4, batch=5e-2),
    "pgmpy_gaussian": Cost(library="pgmpy", context_node=2e-3, rows=2e-6),
    "pyro_gaussian_nuts": Cost(**_PYRO, draws=lambda p: _num(p, "num_samples", 200) + _num(p, "warmup_steps", 0) + 20),
    "pyro_gaussian_svi": Cost(library="pyro", plate_node=0.05, draw=6.9e-4, draws=lambda p: _num(p, "steps", 1000)),
    "constructed_gd": Cost(context=1e-3, batch=5e-2), "gaussian_trained": Cost(context=2e-3, batch=5e-2),
    "ar_least_squares": Cost(context=3e-4, batch=2e-3), "ar_ridge": Cost(context=3e-4, batch=2e-3),
    "ar_procrustes": Cost(context=5e-4, batch=2e-3), "ar_one_step_gd": Cost(context=3e-4, batch=2e-3),
    "ar_pyro_nuts": Cost(**_PYRO, draws=lambda p: _num(p, "num_samples", 200) + _num(p, "warmup_steps", 0) + 20),
    "ar_constructed_linear": Cost(context=5e-4, batch=2e-3), "ar_trained_linear": Cost(context=5e-4, batch=2e-3),
    "ar_trained": Cost(context=2e-3, batch=2e-2),
}
GUESS = Cost(context=1e-2, batch=1e-2)  # a kind from outside bncompare: 10 ms per context, stated as a guess

# Training, seconds per step = STEP_FIXED + STEP_NODE x nodes (drawing tasks, per-node losses) + STEP_UNIT x
# forward_units of the step's batch x 3 (forward and backward), x the recipe's factor; the held-out checks at
# STEP_UNIT per forward unit. Calibrated 2026-12-03: tree-7, 2000 steps of batch 16, d_model 64 x 2 layers,
# contexts up to 500: 149 s on the quiet machine (13.4 steps/s); hailfinder, study=smoke's 60 steps (d_model
# 32): 25 s under load. STEP_SLOT per query token x one-hot slot (S), forward and backward: 2026-12-04, munin at
# study=smoke's sizes (16 x 4 query rows x 1041 nodes, S = 5651), 18.7 s a step with the mixture readout (its
# value matching reads every slot), 6.7 s with the paper's linear head (x its factor, 0.45: 8.6 s estimated).
TRAIN_FIXED = 2.0  # building the task sampler, the first held-out check (1-5 s before the first step, logged)
STEP_FIXED = 0.01
STEP_NODE = 2e-3
STEP_UNIT = 3.3e-11
STEP_SLOT = 3.9e-8
# Trained kinds of other variables: seconds per step at their default sizes. gaussian_trained: study=smoke's
# 20 steps ran at 5.3 steps/s under load (2026-12-03); ar_trained is not measured (a guess of the same size).
# ar_trained_linear trains one linear layer in its own cache and declares no pending training: not counted.
STEP_SECONDS = {"gaussian_trained": 0.1, "ar_trained": 0.1}


# ----- work units ----------------------------------------------------------------------------------------------

DENSE = 8  # a layer's dense weights per token, in width^2 (attention's 4, the MLP's ~4): against attention's tokens


def forward_units(sequences: float, tokens: float, width: float, layers: float) -> float:
    """Work of ``sequences`` forward passes over ``tokens`` tokens each: layers x tokens x width x
    (DENSE x width + tokens): the dense layers grow with the width squared, attention with the tokens squared."""
    return sequences * layers * tokens * width * (DENSE * width + tokens)


def _predict_forwards(N: int, rows: int, nodes: int) -> tuple[int, int]:
    """(forward passes, tokens each) of a TransformerEstimator answering ``rows`` query rows at ``nodes`` targets
    each for one context of ``N`` rows: queries go in chunks of about max(256, N) tokens."""
    per = max(1, max(QUERY_TOKENS, N) // max(nodes, 1))
    chunk = min(per, max(rows, 1))
    return -(-rows // chunk), 1 + N + chunk * nodes


def cell_units(spec: StudySpec, graph: Graph, e: EstimatorSpec, N: int, per_episode_graphs: bool = False) -> dict:
    """The work units of estimator ``e``'s cell at context length ``N`` (the fields of :class:`Cost`)."""
    n = min(spec.episodes, e.subset or spec.episodes)
    per_batch = max(1, spec.batch_size // BLOCK) * BLOCK
    batches = -(-n // per_batch)
    fits = n if per_episode_graphs else batches  # a fresh DAG per episode: about a fit per episode
    f = n if spec.fidelity_episodes is None else min(n, spec.fidelity_episodes)
    f_batches = -(-f // per_batch) if f else 0
    M, Q, width = graph.n_nodes, spec.queries, sum(graph.cards)
    P = sum(c * k for c, k in zip(graph.n_configs, graph.cards))
    states = n_joint_states(graph)
    exact = states <= spec.max_exact_states
    fid_rows = states if exact else spec.mc_samples
    exact_chunk = max(1, min(states, EXACT_QUERY_TOKENS // M))
    # predict calls over a batch: the queries; then the states' chunks, or M nodes per chunk of generated rows
    fid_calls = -(-states // exact_chunk) if exact else M * -(-spec.mc_samples // GENERATE_CHUNK)
    asked = batches * M + f_batches * (fid_calls * M if exact else fid_calls)  # generation asks one node a call
    plates = -(-n // BLOCK)
    own = COSTS.get(e.kind, GUESS)
    units = {"context": n, "context_node": n * M, "batch": fits, "call_node": asked,
             "rows": n * N * M, "params": n * P, "values": (n * Q + f * fid_rows) * width,
             "pairs": 0 if exact else f_batches * M * (M - 1) / 2, "plate_node": plates * M,
             "draw": plates * own.draws(e.params) * (M + P / 100), "forward": 0.0,
             "query_slots": (n * Q + f * fid_rows) * M * width}  # a token per row and node, S slots each
    if own.model is not None:  # a transformer: its forward passes
        d, layers = own.model(e.params, graph)
        targets, apart = (1, M) if own.by_family else (M, 1)  # targets per sequence, sequences per target set
        calls, tokens = _predict_forwards(N, Q, targets)
        work = forward_units(n * calls * apart, tokens, d, layers)
        if exact:  # states in chunks of 512 / M, every node of each
            calls, tokens = _predict_forwards(N, exact_chunk, targets)
            work += forward_units(f * -(-states // exact_chunk) * calls * apart, tokens, d, layers)
        else:  # generated rows, node by node, in chunks of 256 rows
            calls, tokens = _predict_forwards(N, min(GENERATE_CHUNK, spec.mc_samples), 1)
            work += forward_units(f * -(-spec.mc_samples // GENERATE_CHUNK) * M * calls, tokens, d, layers)
        units["forward"] = work
    return units


def cell_seconds(spec: StudySpec, graph: Graph, e: EstimatorSpec, N: int, per_episode_graphs: bool = False) -> float:
    """Estimated seconds of estimator ``e``'s cell at context length ``N``: the measures' and its own."""
    units = cell_units(spec, graph, e, N, per_episode_graphs)
    own = COSTS.get(e.kind, GUESS)
    return sum(u * (getattr(MEASURES, k) + getattr(own, k)) for k, u in units.items())


def training_seconds(kind: str, params: dict, graph: Graph) -> float:
    """Estimated seconds to train the model of a trained estimator from scratch."""
    if kind in STEP_SECONDS:
        cfg = params.get("train_cfg") if isinstance(params.get("train_cfg"), dict) else {}
        return TRAIN_FIXED + _num(cfg, "steps", _num(params, "steps", 2000)) * STEP_SECONDS[kind]
    cfg = _train_cfg(params)
    d, layers, M = int(cfg.model.d_model), int(cfg.model.n_layer), graph.n_nodes
    tokens = 1 + cfg.n_context_max / 2 + cfg.n_queries * M  # contexts drawn up to n_context_max
    slots = cfg.n_queries * M * sum(graph.cards)  # per task: its query tokens x their one-hot width
    step = (STEP_FIXED + STEP_NODE * M + STEP_UNIT * 3 * forward_units(cfg.batch_size, tokens, d, layers)
            + STEP_SLOT * cfg.batch_size * slots)
    checks = (cfg.steps // cfg.eval_every + 1) if cfg.eval_every > 0 else 0
    held_out = checks * sum(STEP_NODE * M + STEP_UNIT * forward_units(cfg.eval_tasks, 1 + n + cfg.n_queries * M, d,
                                                                      layers) + STEP_SLOT / 3 * cfg.eval_tasks * slots
                            for n in cfg.eval_lengths)
    return TRAIN_FIXED + (cfg.steps * step + held_out) * _train_factor(params)


# ----- the estimate of a study ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeEstimate:
    cells: dict[str, float]  # estimator -> seconds of its pending cells
    training: dict[str, float]  # estimator -> seconds of the training it will run (one per cache entry)
    guessed: tuple[str, ...]  # estimators of kinds without measured costs
    second: tuple[str, ...] = ()  # prepared by a second process (runner.second_process), beside everything else
    waiting: tuple[str, ...] = ()  # estimators whose cells wait for the second process (its own, their mirrors)

    @property
    def work(self) -> float:
        """Seconds of all the work, one process after the other."""
        return sum(self.cells.values()) + sum(self.training.values())

    @property
    def total(self) -> float:
        """Seconds from the start to the last cell: with a second process, the longer of its training and
        everything else this process does meanwhile, then the cells that waited for it."""
        if not self.second:
            return self.work
        child = sum(self.training.get(n, 0.0) for n in self.second)
        waits = sum(self.cells.get(n, 0.0) for n in self.waiting)
        return max(child, self.work - child - waits) + waits

    def costliest(self, k: int = 3) -> list[str]:
        """The k estimators whose cells and training cost most, costliest first."""
        own = {n: self.cells.get(n, 0.0) + self.training.get(n, 0.0) for n in {*self.cells, *self.training}}
        return sorted((n for n in own if own[n] > 0), key=lambda n: (-own[n], n))[:k]

    def largest(self, k: int = 3) -> list[tuple[str, float]]:
        """The k costliest parts: ('estimators.<name>', s) or ('training <name>', s), costliest first."""
        parts = [(f"estimators.{n}", s) for n, s in self.cells.items()]
        parts += [(f"training {n}", s) for n, s in self.training.items()]
        return sorted((p for p in parts if p[1] > 0), key=lambda p: -p[1])[:k]


def estimate(spec: StudySpec, graph: Graph, prior, estimators: dict, pending, per_episode_graphs: bool = False,
             second: Sequence[str] = ()) -> TimeEstimate:
    """The time of the ``pending`` cells ((N, estimator) pairs) and of the trainings preparing them will run;
    ``second``: the estimators a second process prepares meanwhile (their cells wait for it)."""
    cells: dict[str, float] = {}
    for N, name in pending:
        cells[name] = cells.get(name, 0.0) + cell_seconds(spec, graph, spec.estimator(name), N, per_episode_graphs)
    first = {}  # a library is imported once: its first estimator pays for it
    for name in cells:
        first.setdefault(COSTS.get(spec.estimator(name).kind, GUESS).library, name)
    for library, name in first.items():
        cells[name] += LIBRARIES.get(library, 0.0)
    for name in cells:
        cells[name] += COSTS.get(spec.estimator(name).kind, GUESS).prepare
    needed = set(cells) | {spec.estimator(n).mirrors for n in cells} - {None}
    training, entries = {}, set()
    for e in spec.estimators:
        if e.name not in needed:
            continue
        est = estimators[e.name]
        entry = est.pending_training(graph, prior, spec.seed)  # the estimator says what prepare would train
        if entry is not None and entry not in entries:
            entries.add(entry)
            training[e.name] = training_seconds(e.kind, est.get_params(), graph)
    guessed = tuple(e.name for e in spec.estimators if e.kind not in COSTS and e.name in cells)
    waiting = tuple(n for n in cells if n in second or spec.estimator(n).mirrors in second)
    return TimeEstimate(cells, training, guessed, tuple(second), waiting)


def check_time(spec: StudySpec, graph: Graph, prior, estimators: dict, pending, per_episode_graphs: bool = False,
               second: Sequence[str] = ()) -> TimeEstimate:
    """Log the time the study will take, and refuse it (one line) when that exceeds ``spec.max_minutes``."""
    est = estimate(spec, graph, prior, estimators, pending, per_episode_graphs, second)
    largest = est.largest()
    parts = ", ".join(f"{what} ~{_minutes(s)}" for what, s in largest)
    guess = f"; {', '.join(est.guessed)}: a guess (plugin kinds have no measured cost)" if est.guessed else ""
    if est.total > 60 * spec.max_minutes:
        knobs = [f"~estimators.{name}" for name in est.costliest()] + ["episodes", "context_lens",
                                                                        "fidelity.mc_samples"]
        if est.training:
            knobs.append("transformer.train.steps")
        raise BNError(f"the study would take ~{_minutes(est.total)}, more than max_minutes={spec.max_minutes:g} "
                      f"(largest: {parts}{guess}): lower {', '.join(knobs)}, or raise the limit, e.g. "
                      f"max_minutes={math.ceil(1.5 * est.total / 60)}")
    both = f", {second[0]}'s training in a second process" if second else ""
    log.info("time: ~%s estimated%s%s%s", _minutes(est.total), both, f" (largest: {parts})" if parts else "", guess)
    return est


def _minutes(seconds: float) -> str:
    """A duration as the log says it: seconds under a minute, else minutes (two digits)."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds >= 0.5 else "0 s"
    m = seconds / 60
    return f"{m:.2g} min" if m < 10 else f"{math.ceil(m)} min"
