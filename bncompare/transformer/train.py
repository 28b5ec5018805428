"""Train an :class:`InContextTransformer` on tasks drawn from a CPT prior.

One training step:

1. draw ``batch_size`` fresh CPT sets from the prior (one per sequence; the
   structure is fixed), all in one vectorized call;
2. split the batch into ``length_groups`` groups and draw one context length
   ``n`` per group (log-uniform or uniform over ``[0, n_context_max]``), so no
   padding is needed and every step sees short and long contexts; then ``n``
   context rows and ``n_queries`` query samples per sequence from that sequence's CPTs;
3. one forward pass per group answers every target of every query;
4. cross-entropy against the chosen target (optionally weighted per target by
   its support in the context, ``loss_weight_power``), AdamW step, cosine
   learning rate.

Loss targets (``TrainConfig.loss``):

- ``"true_cpt"`` (default): the TRUE CPT row at the query's parent values. Its
  minimizer is the Bayes posterior predictive, the same as for ``"sample"``,
  with far less gradient noise.
- ``"sample"``: the query's own sampled value (the paper's next-token target).
- ``"mle"``: the context MLE row (the paper's imitation target); its
  minimizer is the MLE, not the Bayes predictor.

Every step also records the cross-entropy the Dirichlet posterior mean gets
against the same target on the same batch (``bayes_loss``): for the first two
losses it is the Bayes-optimal reference line of the training curve.

Randomness comes from explicit generators seeded from ``TrainConfig.seed``:
one stream for the training tasks, one for the initial weights and a separate
one for the held-out evaluation tasks, so the same config gives the same model.

Scale-out (see :mod:`distributed`): started by ``torchrun``, every process runs
this loop on its share of the global ``batch_size`` with its own task stream,
inside DistributedDataParallel. With a :class:`TrainRun` folder the loop writes
resumable snapshots (:mod:`snapshot`) and a CSV / TensorBoard log (:mod:`trainlog`);
a run that finds a snapshot of the same training continues from it and ends
with the weights an uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bncompare.codeversion import TRAIN_PARTS, code_version
from bncompare.errors import BNError, check_setting_types
from bncompare.estimators.counting import count_tables, mle_rows
from bncompare.metrics.conditional import tv
from bncompare.networks.graph import Graph
from bncompare.networks.sampling import sample
from bncompare.runtime import DEVICES, flush_denormals, single_thread
from bncompare.transformer import distributed, snapshot
from bncompare.transformer.encoding import Layout, encode
from bncompare.transformer.model import GRAPH_FIELDS, WRITTEN_FIELDS, InContextTransformer, TransformerConfig
from bncompare.transformer.readouts import TRAINED_OUTPUTS
from bncompare.transformer.trainlog import TrainLog

# Bump when a change to this file changes what a given config trains: it is part
# of the cache key, so stale cached models are not reused.
TRAIN_CODE_VERSION = "3"

LOSSES = ("true_cpt", "sample", "mle")
SAMPLINGS = ("loguniform", "uniform")

# Seed streams derived from TrainConfig.seed.
STREAM_TASKS, STREAM_INIT, STREAM_EVAL = 0, 1, 2
log = logging.getLogger(__name__)


@dataclass(init=False)
class TrainConfig:
    """How one model is trained; ``model`` holds the model's own settings (:class:`TransformerConfig`).

    A model setting may also be given flat, beside the training's (``TrainConfig(steps=100, n_head=4)``,
    ``transformer.train.n_head=4`` in a study): it is filed under ``model``, where its one default lives.
    Giving one both ways is an error.
    """

    model: TransformerConfig = field(default_factory=TransformerConfig)
    # optimization
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio; annealing to 0 lowers the error floor
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # data
    n_context_max: int = 500
    context_sampling: str = "uniform"  # "uniform" | "loguniform" (over 0..n_context_max)
    length_groups: int = 4  # context lengths per step: the batch is split into this many groups
    n_queries: int = 8  # query samples per sequence; each asks for every node
    loss: str = "true_cpt"  # "true_cpt" | "sample" | "mle"
    # each target's loss is weighted by (rows matching its parent values + 1) ** power: long contexts,
    # whose excess loss is ~1/n, then weigh as much as short ones (the weights depend only on the
    # context, so the minimizer is still the posterior predictive)
    loss_weight_power: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    # held-out evaluation (separate seed stream); eval_every = 0 turns it off
    eval_every: int = 500
    eval_tasks: int = 128
    eval_lengths: tuple[int, ...] = (1, 10, 100, 500)  # may exceed n_context_max: length generalization

    def __init__(self, model: TransformerConfig | dict | None = None, **settings):
        set_settings(self, "TrainConfig", model, settings, _model_config)

    def __post_init__(self):
        check_setting_types(self, "TrainConfig")
        self.eval_lengths = tuple(int(n) for n in self.eval_lengths)
        if self.loss not in LOSSES:
            raise BNError(f"unknown training loss {self.loss!r}; choose one of {list(LOSSES)}")
        if self.context_sampling not in SAMPLINGS:
            raise BNError(f"unknown context sampling {self.context_sampling!r}; choose one of {list(SAMPLINGS)}")
        if self.model.output not in TRAINED_OUTPUTS:
            raise BNError(f"a trained model's output must be one of {list(TRAINED_OUTPUTS)}, got {self.model.output!r}")
        set_by_hand = [name for name in GRAPH_FIELDS if getattr(self.model, name) is not None]
        if set_by_hand:
            raise BNError(f"TrainConfig.model: {set_by_hand} come from the graph; do not set them")
        if self.device not in DEVICES:
            raise BNError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        for name in ("steps", "batch_size", "n_queries", "length_groups"):
            if int(getattr(self, name)) < 1:
                raise BNError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.length_groups > self.batch_size:
            raise BNError(f"TrainConfig.length_groups={self.length_groups} exceeds batch_size={self.batch_size}")
        if self.n_context_max < 0:
            raise BNError(f"TrainConfig.n_context_max must be >= 0, got {self.n_context_max}")
        if not self.lr > 0:
            raise BNError(f"TrainConfig.lr must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``{"steps": 2000, "model": {"n_head": 2}}`` (or ``{"steps": 2000, "n_head": 2}``);
        an unknown key is a one-line BNError."""
        return cls(**d)

    def to_dict(self) -> dict:
        """The fields as plain JSON values, the model's nested under ``model``."""
        d = asdict(self)
        unset = GRAPH_FIELDS + WRITTEN_FIELDS  # never set here
        d["model"] = {k: v for k, v in self.model.to_dict().items() if k not in unset}
        d["eval_lengths"] = list(self.eval_lengths)
        return d

    def model_config(self, graph: Graph) -> TransformerConfig:
        """The TransformerConfig of a model for ``graph``."""
        return self.model.for_layout(Layout(graph.cards))


MODEL_SETTINGS = frozenset(f.name for f in fields(TransformerConfig)) - set(GRAPH_FIELDS + WRITTEN_FIELDS)



def set_settings(cfg, what: str, model, settings: dict, build_model) -> None:
    """Fill a training config's fields from ``settings``, its model from ``model`` (a TransformerConfig, or a
    mapping given to ``build_model``) plus any model settings given flat; then check it (``__post_init__``).
    Unknown keys and a setting given both flat and under ``model`` are one-line errors."""
    own = {f.name: f for f in fields(cfg)}
    flat = {k: settings.pop(k) for k in list(settings) if k in MODEL_SETTINGS and k not in own}
    unknown = sorted(set(settings) - set(own))
    if unknown:
        raise BNError(f"unknown {what} fields {unknown}; known fields are {sorted(own)} "
                      f"and the model's {sorted(MODEL_SETTINGS)}")
    if model is None or isinstance(model, dict):
        model = dict(model or {})
        twice = sorted(set(flat) & set(model))
        if twice:
            raise BNError(f"{what}: {twice} given both flat and under model: give each once")
        model = build_model({**model, **flat})
    elif isinstance(model, TransformerConfig):
        model = replace(model, **flat) if flat else model
    else:
        raise BNError(f"{what}.model must be a mapping of model settings, got {type(model).__name__}")
    for name, f in own.items():
        if name != "model":
            setattr(cfg, name, settings.get(name, f.default))
    cfg.model = model
    cfg.__post_init__()

def _model_config(d: dict) -> TransformerConfig:
    """A TransformerConfig from a mapping; an unknown or bad setting is a one-line BNError."""
    d = {k: v for k, v in d.items() if not (k in GRAPH_FIELDS and v is None)}  # unset, as asdict gives them
    unknown = sorted(set(d) - MODEL_SETTINGS)
    if unknown:
        raise BNError(f"unknown TrainConfig.model fields {unknown}; known fields are {sorted(MODEL_SETTINGS)}")
    try:
        return TransformerConfig(**d)
    except BNError as e:
        raise BNError(f"TrainConfig.model: {e}") from None


def stream_seed(seed: int, stream: int, rank: int = 0) -> int:
    """Independent seed for one of the training's random streams (tasks, init, eval). Each process
    of a distributed run draws its own tasks (``rank``); rank 0 keeps the single-process seed."""
    entropy = [int(seed), int(stream)] + ([int(rank)] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class TrainRun:
    """How one training run is kept and watched. None of it changes what is trained, so none of it is in
    the model cache's key."""

    folder: str | Path | None = None  # train_state.pt (snapshots), train_log.csv, tensorboard/; None: neither
    checkpoint_every: int = 0  # a resumable snapshot every k steps (0: by time only)
    checkpoint_minutes: float = 5.0  # and one at least this often (0: by steps only)
    log_every: int = 100  # a plain log line every k steps when stderr is not a terminal
    tensorboard: bool = True  # TensorBoard events too, when the tensorboard package is importable
    on_step: Callable[[dict], None] | None = None  # called after each step (and its snapshot) with its record
    keep_steps: tuple[int, ...] = ()  # after these numbers of steps, ``keep(steps done, model)`` keeps the weights
    keep: Callable[[int, torch.nn.Module], None] | None = None  # (the cache keeps them as checkpoints along training)


# ----- tasks ----------------------------------------------------------------

def draw_length(cfg: TrainConfig, gen: torch.Generator) -> int:
    lo, hi = 0, cfg.n_context_max
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    if cfg.context_sampling == "uniform":
        return lo + min(int(u * (hi - lo + 1)), hi - lo)
    # log-uniform on n + 1 over [lo + 1, hi + 2): as many steps in [1, 10) as in [10, 100)
    a, b = math.log(lo + 1), math.log(hi + 2)
    return min(int(math.exp(a + u * (b - a))) - 1, hi)


@dataclass
class Tasks:
    """A batch of tasks: contexts, queries and every target, each (B, Q, M, d_out) padded with zeros."""

    contexts: torch.Tensor  # (B, N, M) long
    queries: torch.Tensor  # (B, Q, M) long
    true: torch.Tensor  # true CPT row at the query's parents
    sampled: torch.Tensor  # one-hot of the query's own value
    mle: torch.Tensor  # context MLE row (uniform when the parent configuration is unseen)
    bayes: torch.Tensor | None  # Dirichlet posterior mean (None when the prior is not Dirichlet)
    support: torch.Tensor  # (B, Q, M): context rows that match the query on the target's parents

    def part(self, rows: slice) -> Tasks:
        """The tasks ``rows`` of the batch."""
        return Tasks(*(None if t is None else t[rows] for t in (
            self.contexts, self.queries, self.true, self.sampled, self.mle, self.bayes, self.support)))


def make_tasks(graph: Graph, prior, n_tasks: int, n_context: int, n_queries: int, gen: torch.Generator) -> Tasks:
    cpts = prior.sample(graph, n_tasks, gen)
    contexts = sample(graph, cpts, n_context, gen)
    queries = sample(graph, cpts, n_queries, gen)
    alpha = prior.dirichlet_alpha
    d_out = max(graph.cards)
    batch = torch.arange(n_tasks)[:, None]
    true, sampled, mle, bayes, support = [], [], [], [], []
    pad = lambda t: F.pad(t, (0, d_out - t.shape[-1]))  # noqa: E731
    counts = count_tables(graph, contexts)
    for m, d in enumerate(graph.cards):
        rows = graph.config_index(queries, m)
        n = counts[m][batch, rows]  # (B, Q, d) counts at the query's parents
        total = n.sum(-1, keepdim=True)
        true.append(pad(cpts[m][batch, rows]))
        sampled.append(pad(F.one_hot(queries[..., m], d).to(torch.float64)))
        mle.append(pad(mle_rows(n, d)))
        support.append(total[..., 0])
        if alpha is not None:
            bayes.append(pad((n + alpha) / (total + alpha * d)))
    stack = lambda xs: torch.stack(xs, 2) if xs else None  # noqa: E731
    return Tasks(contexts, queries, stack(true), stack(sampled), stack(mle), stack(bayes), stack(support))


def target_of(tasks: Tasks, loss: str) -> torch.Tensor:
    return {"true_cpt": tasks.true, "sample": tasks.sampled, "mle": tasks.mle}[loss]


def valid_outputs(graph: Graph, device=None) -> torch.Tensor:
    """(M, d_out) bool: which output slots are real states of each node."""
    d_out = max(graph.cards)
    return torch.arange(d_out, device=device)[None, :] < torch.tensor(graph.cards, device=device)[:, None]


def query_log_probs(model: InContextTransformer, graph: Graph, tasks: Tasks, device, autocast: bool) -> torch.Tensor:
    """Model log-probabilities for every target of every query, (B, Q, M, d_out) float32."""
    B, N, M = tasks.contexts.shape
    Q = tasks.queries.shape[1]
    view = getattr(model, "module", model).cfg.query_view  # a DistributedDataParallel wraps the model
    tokens = encode(graph, tasks.contexts.to(device), tasks.queries.to(device), range(M), view=view)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(tokens, N)  # (B, Q*M, d_out): the query tokens
    logits = out.float().reshape(B, Q, M, -1)
    # states a node does not have (mixed cardinalities) get no probability
    logits = logits.masked_fill(~valid_outputs(graph, device), -1e9)
    return torch.log_softmax(logits, -1)


def cross_entropy(target: torch.Tensor, log_probs: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries and targets of -sum_v target_v log p_v (padded slots have target 0),
    or its ``weight``-weighted mean (weight: (B, Q, M))."""
    ce = -(target * log_probs).sum(-1)
    return ce.mean() if weight is None else (weight * ce).sum() / weight.sum()


def bayes_cross_entropy(target: torch.Tensor, bayes: torch.Tensor) -> float:
    return float(-(target * torch.log(bayes.clamp_min(1e-300))).sum(-1).mean())


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(tv(p, q).mean())


# ----- training -------------------------------------------------------------

def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # nanoGPT's rule: decay matrices, not biases, norm gains or temperatures
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def build_model(graph: Graph, cfg: TrainConfig) -> InContextTransformer:
    return InContextTransformer(cfg.model_config(graph), seed=stream_seed(cfg.seed, STREAM_INIT))


def group_sizes(cfg: TrainConfig) -> list[int]:
    """Split the batch into ``length_groups`` near-equal groups, one context length each."""
    k, b = cfg.length_groups, cfg.batch_size
    return [b // k + (i < b % k) for i in range(k)]


@flush_denormals()  # sharp attention underflows to subnormal floats, which are slow on CPUs
def train_step(model, graph: Graph, prior, cfg: TrainConfig, gen: torch.Generator, device, autocast: bool, *,
               groups: list[int] | None = None, world_size: int = 1) -> dict:
    """Forward and backward over one batch (one group per context length); returns the batch figures.

    ``groups``: this process's group sizes (default: the whole batch, ``group_sizes(cfg)``). In a
    distributed run ``model`` is the DistributedDataParallel wrapper, whose gradient average over
    ``world_size`` processes is undone by the loss scale, so the gradient is the global batch mean; the
    returned figures are this process's share of the global ones (their sum over processes)."""
    rec = {"loss": 0.0, "n_context": 0}
    bayes_loss = []
    groups = group_sizes(cfg) if groups is None else groups
    for i, size in enumerate(groups):
        tasks = make_tasks(graph, prior, size, draw_length(cfg, gen), cfg.n_queries, gen)
        target = target_of(tasks, cfg.loss)
        weight = None
        if cfg.loss_weight_power:
            weight = (tasks.support.to(device, torch.float32) + 1.0) ** cfg.loss_weight_power
        # gradients are averaged over the processes once per step: at the last group's backward
        sync = i == len(groups) - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            log_probs = query_log_probs(model, graph, tasks, device, autocast)
            loss = cross_entropy(target.to(device, torch.float32), log_probs, weight) * (size / cfg.batch_size)
            (loss * world_size if world_size > 1 else loss).backward()
        rec["loss"] += loss.item()
        rec["n_context"] = max(rec["n_context"], tasks.contexts.shape[1])
        if tasks.bayes is not None:
            bayes_loss.append(bayes_cross_entropy(target, tasks.bayes) * size / cfg.batch_size)
    if bayes_loss:
        rec["bayes_loss"] = sum(bayes_loss)
    return rec


@single_thread()  # small matrices: one thread trained 2-3x faster than two on this 2-core CPU (measured)
def train(graph: Graph, prior, cfg: TrainConfig | None = None, progress: bool = True, on_eval=None, *,
          run: TrainRun | None = None):
    """Train a fresh model on tasks from ``prior`` -> (model on CPU in eval mode, history).

    ``history`` has one dict per step: ``step``, ``loss``, ``bayes_loss`` (the
    Dirichlet posterior mean's loss on the same batch, when the prior is
    Dirichlet), ``lr``, ``n_context`` (the longest context of the step); every
    ``eval_every`` steps and at the end (when ``on_eval(record)`` is also called) it holds ``seconds`` (wall clock so
    far, evaluation excluded) and held-out figures: for each N in
    ``eval_lengths``, ``eval_tv@N``, ``eval_bayes_tv@N``, ``eval_mle_tv@N``
    (total variation to the true CPT rows) and ``eval_ce@N`` / ``eval_bayes_ce@N``
    (cross-entropy against them); ``eval_tv``, ``eval_ce``, ... are their means
    over the lengths. ``history[-1]["train_seconds"]`` is the wall clock of the whole call
    (of every call, when it resumed a snapshot).

    ``run`` (a :class:`TrainRun`) says where snapshots and the training log go. Inside a
    ``torchrun`` process group, every process calls this; the held-out evaluation, ``on_eval``,
    the log and the snapshots happen on rank 0 only, and the other ranks' histories have no
    held-out figures.
    """
    cfg = cfg or TrainConfig()
    run = run or TrainRun()
    if not isinstance(graph, Graph):
        raise BNError(f"train needs a Graph, got {type(graph).__name__}")
    if not hasattr(prior, "sample"):
        raise BNError(f"train needs a CPT prior (e.g. DirichletPrior), got {type(prior).__name__}")
    t0 = time.perf_counter()
    world = distributed.current()
    groups = distributed.rank_groups(cfg.batch_size, cfg.length_groups, world.rank, world.size)
    device = distributed.device_of(cfg.device, world)
    autocast = device.type == "cuda"
    model = build_model(graph, cfg).to(device)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TASKS, world.rank))
    fingerprint = run_fingerprint(graph, prior, cfg)
    history, start, seconds_before = [], 0, 0.0
    snap = snapshot.load(run.folder, fingerprint, world.size) if run.folder is not None else None
    if snap is not None and _restore(snap, model, opt, gen, world, cfg):
        history, start, seconds_before = snap.history, snap.step, snap.seconds
    elif snap is not None:  # it did not fit: start over from fresh weights and optimizer
        model = build_model(graph, cfg).to(device)
        opt = make_optimizer(model, cfg)
    evaluator = HeldOut(graph, prior, cfg) if cfg.eval_every > 0 and world.is_main else None
    net = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # no collective in the forward pass (the model has no buffers to sync): ranks may make different
        # numbers of forward passes in a step; gradients are averaged once, at the last backward
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if world.is_main:
        log.info(describe_run(graph, cfg, world, groups, device, start))

    tty = sys.stderr.isatty()
    show = progress and tty and world.is_main
    watch = TrainLog(run.folder if world.is_main else None, cfg.eval_lengths, start, lines=progress and not tty
                     and world.is_main, log_every=run.log_every, tensorboard=run.tensorboard, total_steps=cfg.steps)
    paused = 0.0  # seconds spent evaluating and writing snapshots: not training time
    elapsed = lambda: seconds_before + time.perf_counter() - t0 - paused  # noqa: E731
    last_snapshot = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), desc="train", unit="step", disable=not show, dynamic_ncols=True,
               initial=start, total=cfg.steps)
    try:
        for step in bar:
            net.train()
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            rec = {"step": step, "lr": lr, **train_step(net, graph, prior, cfg, gen, device, autocast,
                                                        groups=groups, world_size=world.size)}
            last = step == cfg.steps - 1
            due = run.folder is not None and not last and (
                (run.checkpoint_every > 0 and (step + 1) % run.checkpoint_every == 0)
                or (run.checkpoint_minutes > 0 and time.perf_counter() - last_snapshot >= 60 * run.checkpoint_minutes))
            if world.distributed:  # the step's figures over the global batch; rank 0's clock decides snapshots
                rec["loss"], bayes = distributed.all_reduce([rec["loss"], rec.get("bayes_loss", 0.0)], world)
                if "bayes_loss" in rec:
                    rec["bayes_loss"] = bayes
                n_context, due_main = distributed.all_reduce([rec["n_context"], due and world.is_main], world, "max")
                rec["n_context"], due = int(n_context), bool(due_main)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()

            if evaluator is not None and (step % cfg.eval_every == 0 or last):
                t_eval = time.perf_counter()
                rec["seconds"] = elapsed()
                rec.update(evaluator(model, device, autocast))
                paused += time.perf_counter() - t_eval
                watch.pause(time.perf_counter() - t_eval)
                if on_eval is not None:
                    on_eval(rec)
            history.append(rec)
            watch.step({"seconds": elapsed(), **rec})  # the log has the training clock on every row
            if due:
                t_snap = time.perf_counter()
                gens = distributed.gather_states(gen.get_state(), world)
                if world.is_main:
                    snapshot.save(run.folder, snapshot.Snapshot(step + 1, model.state_dict(), opt.state_dict(), gens,
                                                                history, elapsed()), fingerprint)
                last_snapshot = time.perf_counter()
                paused += last_snapshot - t_snap
                watch.pause(last_snapshot - t_snap)
            if show and (step % 10 == 0 or last):
                post = {"loss": f"{_recent(history, 'loss'):.4f}"}
                if "bayes_loss" in rec:
                    post["bayes"] = f"{_recent(history, 'bayes_loss'):.4f}"
                bar.set_postfix(post)
            if run.keep is not None and step + 1 in run.keep_steps and not last and world.is_main:
                t_keep = time.perf_counter()
                run.keep(step + 1, model)
                paused += time.perf_counter() - t_keep
            if run.on_step is not None:
                run.on_step(rec)
    finally:
        bar.close()
        watch.close()
    model = model.cpu().eval()
    history[-1]["train_seconds"] = seconds_before + time.perf_counter() - t0
    return model, history


def graph_signature(graph: Graph) -> dict:
    """The graph as plain JSON values: names, cardinalities and parents."""
    return {"names": list(graph.names), "cards": list(graph.cards), "parents": [list(p) for p in graph.parents]}


def prior_signature(prior) -> dict:
    """The prior as plain JSON values (its kind and fields); a one-line BNError for a prior it cannot describe."""
    if not is_dataclass(prior):
        raise BNError(f"cannot describe prior of type {type(prior).__name__}: use DirichletPrior or UniformRangePrior")
    return {"kind": type(prior).__name__, **asdict(prior)}


def run_fingerprint(graph: Graph, prior, cfg: TrainConfig) -> str:
    """sha256 of everything that determines a trained model: graph, prior, the full TrainConfig (defaults
    included) and the training code's version (package version + a hash of the code it runs, so an upgrade or a
    fix retrains). The device is left out: a model trained on a GPU serves CPU runs too. It keys the model cache
    and tells a snapshot which training it belongs to."""
    train_cfg = cfg.to_dict()
    train_cfg.pop("device", None)
    blob = {"graph": graph_signature(graph), "prior": prior_signature(prior), "train": train_cfg,
            "code": [TRAIN_CODE_VERSION, code_version(TRAIN_PARTS)]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _restore(snap, model, opt, gen, world, cfg: TrainConfig) -> bool:
    """Load a snapshot into the fresh model, optimizer and task generator; False (logged) when it does not fit."""
    try:
        if not 0 < snap.step < cfg.steps:
            raise ValueError(f"step {snap.step} is outside this training's 1..{cfg.steps - 1}")
        model.load_state_dict(snap.model)
        opt.load_state_dict(snap.optimizer)
        gen.set_state(snap.generators[world.rank].clone())
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        log.warning("the training snapshot does not fit this model (%s): training from step 0",
                    " ".join(str(e).split())[:200])
        return False
    return True


def describe_run(graph: Graph, cfg: TrainConfig, world, groups: list[int], device, start: int) -> str:
    """One line: what trains, the global batch and how it is split, the learning rate."""
    per = sum(groups)
    split = (f"global batch {cfg.batch_size} over {world.size} processes ({world.backend}, {per} on rank 0)"
             if world.distributed else f"batch {cfg.batch_size}")
    cosine = f"cosine to {cfg.lr * cfg.min_lr_ratio:.3g}"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    return (f"training on {graph.n_nodes} nodes: {cfg.steps} steps{f' (resuming at step {start})' if start else ''}, "
            f"{split}, {cfg.length_groups} context lengths per step, lr {cfg.lr:.3g} "
            f"(warmup {cfg.warmup} steps, {cosine}), d_model {cfg.model.d_model} x {cfg.model.n_layer} layers, "
            f"{device} {precision}")


def _recent(history: list[dict], key: str, k: int = 50) -> float:
    vals = [h[key] for h in history[-k:] if key in h]
    return sum(vals) / len(vals)


class HeldOut:
    """Fixed held-out tasks (own seed stream) scored against the true CPT rows, per context length."""

    def __init__(self, graph: Graph, prior, cfg: TrainConfig):
        gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_EVAL))
        self.graph = graph
        self.sets = {n: make_tasks(graph, prior, cfg.eval_tasks, n, cfg.n_queries, gen) for n in cfg.eval_lengths}
        self.chunk = max(group_sizes(cfg))  # tasks per forward pass: a training group's, not all at once (memory)

    @torch.no_grad()
    @flush_denormals()
    def __call__(self, model, device, autocast) -> dict:
        model.eval()
        out = {}
        for n, tasks in self.sets.items():
            B = tasks.contexts.shape[0]
            log_probs = torch.cat([query_log_probs(model, self.graph, tasks.part(slice(s, s + self.chunk)), device,
                                                   autocast).double().cpu() for s in range(0, B, self.chunk)])
            out[f"eval_ce@{n}"] = float(-(tasks.true * log_probs).sum(-1).mean())
            out[f"eval_tv@{n}"] = total_variation(log_probs.exp(), tasks.true)
            out[f"eval_mle_tv@{n}"] = total_variation(tasks.mle, tasks.true)
            if tasks.bayes is not None:
                out[f"eval_bayes_ce@{n}"] = bayes_cross_entropy(tasks.true, tasks.bayes)
                out[f"eval_bayes_tv@{n}"] = total_variation(tasks.bayes, tasks.true)
        for key in ("eval_ce", "eval_tv", "eval_mle_tv", "eval_bayes_ce", "eval_bayes_tv"):
            vals = [out[f"{key}@{n}"] for n in self.sets if f"{key}@{n}" in out]
            if vals:
                out[key] = float(np.mean(vals))
        return out
