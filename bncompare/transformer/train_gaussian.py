"""Train an :class:`InContextTransformer` on linear-Gaussian tasks drawn from a parameter prior.

The loop of :mod:`train` for real-valued rows. One step:

1. draw ``batch_size`` parameter sets from the prior (one per sequence, the structure fixed),
   split into ``length_groups`` groups with one context length each (as for discrete tasks);
2. draw each group's context rows and ``n_queries`` query rows (:func:`sample_gaussian`);
3. one forward pass answers every node of every query with a Student-t ``(df, loc, scale)``;
4. the loss is KL(true conditional || prediction) averaged over queries and nodes: the true conditional
   is the Normal of the query's node given its parents under the sequence's parameters, so the loss is
   against the truth (never a sample's label alone, never an estimator's answer). For a Student-t the
   expectation is a Gauss-Hermite quadrature (exact for a Normal prediction). Its minimizer is the exact
   posterior predictive of the prior. Groups weigh ``(N + 1) ** loss_weight_power``: the excess KL
   shrinks like 1 / N, so power 1 lets long contexts count as much as short ones.

Every step records ``bayes_loss``, the same KL of the exact Normal-inverse-gamma posterior predictive
(the graph's parents, the training prior) on the same batch, when the prior is :class:`NIGPrior`.
Held-out tasks (own seed stream) give ``eval_kl@N``, ``eval_bayes_kl@N`` and ``eval_mle_kl@N`` (least
squares, sigma^2 = RSS / N; left out where a context is too short for it to be finite).

Snapshots, the training log and the model cache are those of the discrete training (:mod:`snapshot`,
:mod:`trainlog`, :mod:`checkpoint`); a killed run resumes from its last snapshot with the weights an
uninterrupted run would have. Single process only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from bncompare.codeversion import TRAIN_PARTS, code_version
from bncompare.errors import BNError, check_setting_types
from bncompare.networks.gaussian import sample_gaussian, true_conditional
from bncompare.networks.graph import Graph
from bncompare.runtime import DEVICES, flush_denormals, resolve_device, single_thread
from bncompare.transformer import distributed, snapshot
from bncompare.transformer.gaussian_tokens import GaussianLayout, encode_gaussian
from bncompare.transformer.model import GRAPH_FIELDS, WRITTEN_FIELDS, InContextTransformer, TransformerConfig
from bncompare.transformer.readouts import GAUSSIAN_OUTPUTS
from bncompare.transformer.train import (
    MODEL_SETTINGS,
    SAMPLINGS,
    STREAM_EVAL,
    STREAM_INIT,
    STREAM_TASKS,
    TrainRun,
    _restore,
    draw_length,
    graph_signature,
    group_sizes,
    lr_at,
    make_optimizer,
    prior_signature,
    set_settings,
    stream_seed,
)
from bncompare.transformer.trainlog import TrainLog

GAUSSIAN_TRAIN_CODE_VERSION = "1"
# what a Gaussian model's training depends on: the discrete training's parts (model, loop helpers), and these
GAUSSIAN_TRAIN_PARTS = TRAIN_PARTS + ("transformer/train_gaussian.py", "transformer/readouts.py",
                                      "transformer/gaussian_tokens.py")
LOSSES = ("true_kl",)
EVAL_KEYS = ("eval_kl", "eval_bayes_kl", "eval_mle_kl")
log = logging.getLogger("bncompare.transformer.train")

# The Gaussian model's own defaults (the discrete ones are the trained discrete recipe's).
GAUSSIAN_MODEL = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64, "output": "conjugate",
                  "match_scores": False, "context_attention": "self"}


# Training presets (GaussianTrainConfig settings) by network size; "default" is GaussianTrainConfig().
PRESETS = {
    "default": {},
    # networks of about 50 nodes (ecoli70, magic-niab, magic-irri): 461 s for ecoli70 on 2 shared cores
    "large": {"steps": 2000, "batch_size": 16, "n_queries": 4, "eval_tasks": 16},
}


def preset(name: str) -> dict:
    """The training settings of a preset (a copy); an unknown name is a one-line BNError."""
    if name not in PRESETS:
        raise BNError(f"unknown Gaussian training preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def model_config(defaults: dict, owner: str, d: dict | None = None) -> TransformerConfig:
    """A TransformerConfig from a kind's model ``defaults`` updated by ``d``; a bad setting is a one-line BNError
    naming ``owner`` (the training config that holds it)."""
    d = {k: v for k, v in (d or {}).items() if not (k in GRAPH_FIELDS and v is None)}
    unknown = sorted(set(d) - MODEL_SETTINGS)
    if unknown:
        raise BNError(f"unknown {owner}.model fields {unknown}; known fields are {sorted(MODEL_SETTINGS)}")
    try:
        return TransformerConfig(**{**defaults, **d})
    except BNError as e:
        raise BNError(f"{owner}.model: {e}") from None


def gaussian_model_config(d: dict | None = None) -> TransformerConfig:
    """A TransformerConfig from the Gaussian defaults updated by ``d``; a bad setting is a one-line BNError."""
    return model_config(GAUSSIAN_MODEL, "GaussianTrainConfig", d)


@dataclass(init=False)
class GaussianTrainConfig:
    """How one Gaussian model is trained; ``model`` holds the model's settings (:class:`TransformerConfig`,
    defaults in ``GAUSSIAN_MODEL``). Model settings may be given flat, as for :class:`TrainConfig`."""

    model: TransformerConfig = field(default_factory=gaussian_model_config)
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_context_max: int = 500
    context_sampling: str = "loguniform"  # "uniform" | "loguniform" (over 0..n_context_max)
    length_groups: int = 4
    n_queries: int = 8  # query rows per sequence; each asks for every node
    loss: str = "true_kl"
    loss_weight_power: float = 1.0  # each group's KL weighs (N + 1) ** power
    quadrature: int = 24  # Gauss-Hermite nodes of the training loss
    seed: int = 0
    device: str = "auto"
    eval_every: int = 500
    eval_tasks: int = 64
    eval_lengths: tuple[int, ...] = (1, 10, 100, 500)

    def __init__(self, model: TransformerConfig | dict | None = None, **settings):
        set_settings(self, "GaussianTrainConfig", model, settings, gaussian_model_config)

    def __post_init__(self):
        check_setting_types(self, "GaussianTrainConfig")
        self.eval_lengths = tuple(int(n) for n in self.eval_lengths)
        if self.loss not in LOSSES:
            raise BNError(f"unknown Gaussian training loss {self.loss!r}; choose one of {list(LOSSES)}")
        if self.context_sampling not in SAMPLINGS:
            raise BNError(f"unknown context sampling {self.context_sampling!r}; choose one of {list(SAMPLINGS)}")
        if self.model.output not in GAUSSIAN_OUTPUTS:
            raise BNError(f"a Gaussian model's output must be one of {list(GAUSSIAN_OUTPUTS)}, "
                          f"got {self.model.output!r}")
        set_by_hand = [name for name in GRAPH_FIELDS if getattr(self.model, name) is not None]
        if set_by_hand:
            raise BNError(f"GaussianTrainConfig.model: {set_by_hand} come from the graph; do not set them")
        if self.device not in DEVICES:
            raise BNError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        for name in ("steps", "batch_size", "n_queries", "length_groups", "quadrature"):
            if int(getattr(self, name)) < 1:
                raise BNError(f"GaussianTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.length_groups > self.batch_size:
            raise BNError(f"GaussianTrainConfig.length_groups={self.length_groups} exceeds "
                          f"batch_size={self.batch_size}")
        if self.n_context_max < 0:
            raise BNError(f"GaussianTrainConfig.n_context_max must be >= 0, got {self.n_context_max}")
        if not self.lr > 0:
            raise BNError(f"GaussianTrainConfig.lr must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> GaussianTrainConfig:
        """The config of ``{"steps": 3000, "model": {"d_model": 32}}`` (or flat); unknown keys are a BNError."""
        return cls(**d)

    def to_dict(self) -> dict:
        """The fields as plain JSON values, the model's nested under ``model``."""
        d = asdict(self)
        d["model"] = {k: v for k, v in self.model.to_dict().items() if k not in GRAPH_FIELDS + WRITTEN_FIELDS}
        d["eval_lengths"] = list(self.eval_lengths)
        return d

    def model_config(self, graph: Graph) -> TransformerConfig:
        """The TransformerConfig of a model for ``graph``."""
        return self.model.for_layout(GaussianLayout(graph.n_nodes))


def run_fingerprint_gaussian(graph: Graph, prior, cfg: GaussianTrainConfig) -> str:
    """sha256 of everything that determines a trained Gaussian model (as :func:`train.run_fingerprint`)."""
    train_cfg = cfg.to_dict()
    train_cfg.pop("device", None)
    blob = {"variables": "gaussian", "graph": graph_signature(graph), "prior": prior_signature(prior),
            "train": train_cfg, "code": [GAUSSIAN_TRAIN_CODE_VERSION, code_version(GAUSSIAN_TRAIN_PARTS)]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def build_gaussian_model(graph: Graph, cfg: GaussianTrainConfig) -> InContextTransformer:
    """A fresh model for ``graph`` (its initial weights from the config's seed)."""
    return InContextTransformer(cfg.model_config(graph), seed=stream_seed(cfg.seed, STREAM_INIT))


# ----- the reference predictions and the KL ---------------------------------------------------------

def _design(graph: Graph, x: torch.Tensor, m: int) -> torch.Tensor:
    """(1, parents of m) at each row of x (..., M): (..., k + 1)."""
    return torch.cat([x.new_ones(*x.shape[:-1], 1), x[..., list(graph.parents[m])]], -1)


def nig_predictive(graph: Graph, prior, contexts: torch.Tensor, queries: torch.Tensor, m: int) -> torch.Tensor:
    """The exact posterior predictive of node ``m`` under a Normal-inverse-gamma ``prior`` on its regression on
    the graph's parents, at each query row: (B, Q, 3) Student-t."""
    X, y, Z = _design(graph, contexts, m), contexts[..., m], _design(graph, queries, m)
    K, N = X.shape[-1], X.shape[1]
    L0 = prior.precision * torch.eye(K, dtype=X.dtype)
    mu0 = torch.full((K,), float(prior.mean), dtype=X.dtype)
    A = L0 + X.transpose(1, 2) @ X
    chol = torch.linalg.cholesky(A)
    beta = torch.cholesky_solve((L0 @ mu0 + (X.transpose(1, 2) @ y[..., None])[..., 0])[..., None], chol)[..., 0]
    resid = ((y - (X @ beta[..., None])[..., 0]) ** 2).sum(-1) + prior.precision * ((beta - mu0) ** 2).sum(-1)
    a_n, b_n = prior.a + N / 2, prior.b + resid / 2
    v = torch.linalg.solve_triangular(chol, Z.transpose(1, 2), upper=False)
    scale = torch.sqrt((b_n / a_n)[:, None] * (1 + (v**2).sum(1)))
    loc = (Z @ beta[..., None])[..., 0]
    return torch.stack([torch.full_like(loc, 2 * a_n), loc, scale], -1)


def least_squares_predictive(graph: Graph, contexts: torch.Tensor, queries: torch.Tensor, m: int) -> torch.Tensor:
    """Least squares on the parents (minimum norm), sigma^2 = RSS / N: (B, Q, 3) Normal (scale 0 when the
    context fits exactly)."""
    X, y, Z = _design(graph, contexts, m), contexts[..., m], _design(graph, queries, m)
    beta = (torch.linalg.pinv(X) @ y[..., None])[..., 0]
    rss = ((y - (X @ beta[..., None])[..., 0]) ** 2).mean(-1)
    loc = (Z @ beta[..., None])[..., 0]
    return torch.stack([torch.full_like(loc, math.inf), loc, rss.sqrt()[:, None].expand_as(loc)], -1)


def kl_normal_to_prediction(loc: torch.Tensor, sigma: torch.Tensor, pred: torch.Tensor,
                            nodes: int = 64) -> torch.Tensor:
    """KL(N(loc, sigma^2) || prediction) for predictions (..., 3) = (df, loc, scale): closed form where df is
    inf (a Normal), Gauss-Hermite quadrature with ``nodes`` points otherwise. Same shape as ``loc``."""
    df, m, s = pred[..., 0], pred[..., 1], pred[..., 2]
    normal = torch.log(s / sigma) + (sigma**2 + (loc - m) ** 2) / (2 * s**2) - 0.5
    normal = torch.where(s > 0, normal, math.inf)  # a point mass (least squares on a fitted-exactly context)
    finite = torch.isfinite(df)
    nu = torch.where(finite, df, torch.ones_like(df))
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device)
    w = torch.as_tensor(w / math.sqrt(math.pi), dtype=loc.dtype, device=loc.device)
    u = (loc[..., None] + math.sqrt(2) * sigma[..., None] * x - m[..., None]) / s[..., None]
    log_t = (torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi) - torch.log(s))
    cross = -(log_t - (nu + 1) / 2 * (w * torch.log1p(u**2 / nu[..., None])).sum(-1))
    entropy = 0.5 * torch.log(2 * math.pi * math.e * sigma**2)
    return torch.where(finite, cross - entropy, normal)


# ----- tasks ----------------------------------------------------------------------------------------

@dataclass
class GaussianTasks:
    """A batch of tasks: contexts, queries, and each query node's true conditional and references."""

    contexts: torch.Tensor  # (B, N, M) float64
    queries: torch.Tensor  # (B, Q, M) float64
    true: torch.Tensor  # (B, Q, M, 3): the true conditional (a Normal) of each node at the query's parents
    bayes: torch.Tensor | None  # (B, Q, M, 3): the NIG posterior predictive (None unless the prior is NIG)


def is_nig(prior) -> bool:
    """Whether ``prior`` is a Normal-inverse-gamma prior (it has an exact posterior predictive)."""
    fields_there = all(hasattr(prior, k) for k in ("mean", "precision", "a", "b"))
    return getattr(prior, "variables", "") == "gaussian" and fields_there


def make_gaussian_tasks(graph: Graph, prior, n_tasks: int, n_context: int, n_queries: int,
                        gen: torch.Generator) -> GaussianTasks:
    params = prior.sample(graph, n_tasks, gen)
    contexts = sample_gaussian(graph, params, n_context, gen)
    queries = sample_gaussian(graph, params, n_queries, gen)
    M = graph.n_nodes
    true = torch.stack([true_conditional(graph, params, queries, m) for m in range(M)], 2)
    bayes = (torch.stack([nig_predictive(graph, prior, contexts, queries, m) for m in range(M)], 2)
             if is_nig(prior) else None)
    return GaussianTasks(contexts, queries, true, bayes)


def kl_to_true(tasks: GaussianTasks, pred: torch.Tensor, nodes: int = 64) -> torch.Tensor:
    """(B, Q, M) KL(true conditional || pred) for predictions (B, Q, M, 3)."""
    return kl_normal_to_prediction(tasks.true[..., 1], tasks.true[..., 2], pred, nodes)


def predict_all(model, tasks: GaussianTasks, device) -> torch.Tensor:
    """The model's prediction of every node of every query, (B, Q, M, 3) float64."""
    B, N, M = tasks.contexts.shape
    Q = tasks.queries.shape[1]
    tokens = encode_gaussian(tasks.contexts.to(device), tasks.queries.to(device), range(M))
    return model(tokens, N).double().reshape(B, Q, M, 3)


@flush_denormals()
def gaussian_train_step(model, graph: Graph, prior, cfg: GaussianTrainConfig, gen: torch.Generator, device) -> dict:
    """Forward and backward over one batch (one group per context length); returns the batch figures."""
    rec = {"loss": 0.0, "n_context": 0}
    bayes, total_weight, parts = [], 0.0, []
    for size in group_sizes(cfg):
        tasks = make_gaussian_tasks(graph, prior, size, draw_length(cfg, gen), cfg.n_queries, gen)
        weight = size * (tasks.contexts.shape[1] + 1.0) ** cfg.loss_weight_power
        parts.append((tasks, weight))
        total_weight += weight
    for tasks, weight in parts:
        kl = kl_to_true(tasks, predict_all(model, tasks, device), cfg.quadrature).mean()
        (kl * (weight / total_weight)).backward()
        share = sum(len(t.contexts) for t, _ in parts)
        rec["loss"] += kl.item() * len(tasks.contexts) / share
        rec["n_context"] = max(rec["n_context"], tasks.contexts.shape[1])
        if tasks.bayes is not None:
            bayes.append(float(kl_to_true(tasks, tasks.bayes, cfg.quadrature).mean()) * len(tasks.contexts) / share)
    if bayes:
        rec["bayes_loss"] = sum(bayes)
    return rec


class GaussianHeldOut:
    """Fixed held-out tasks (own seed stream) scored by KL to the true conditional, per context length."""

    def __init__(self, graph: Graph, prior, cfg: GaussianTrainConfig):
        gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_EVAL))
        self.graph = graph
        self.sets = {n: make_gaussian_tasks(graph, prior, cfg.eval_tasks, n, cfg.n_queries, gen)
                     for n in cfg.eval_lengths}

    @torch.no_grad()
    @flush_denormals()
    def __call__(self, model, device) -> dict:
        model.eval()
        out = {}
        for n, tasks in self.sets.items():
            out[f"eval_kl@{n}"] = float(kl_to_true(tasks, predict_all(model, tasks, device).cpu()).mean())
            if tasks.bayes is not None:
                out[f"eval_bayes_kl@{n}"] = float(kl_to_true(tasks, tasks.bayes).mean())
            mle = torch.stack([least_squares_predictive(self.graph, tasks.contexts, tasks.queries, m)
                               for m in range(self.graph.n_nodes)], 2)
            mle_kl = float(kl_to_true(tasks, mle).mean()) if n > 0 else math.inf
            if math.isfinite(mle_kl):
                out[f"eval_mle_kl@{n}"] = mle_kl
        for key in EVAL_KEYS:
            vals = [out[f"{key}@{n}"] for n in self.sets if f"{key}@{n}" in out]
            if len(vals) == len(self.sets):
                out[key] = float(np.mean(vals))
        return out


# ----- training -------------------------------------------------------------------------------------

@single_thread()  # small matrices: one thread is faster on a shared CPU (as for the discrete training)
def train_gaussian(graph: Graph, prior, cfg: GaussianTrainConfig | None = None, progress: bool = True, *,
                   run: TrainRun | None = None):
    """Train a fresh model on linear-Gaussian tasks from ``prior`` -> (model on CPU in eval mode, history).

    ``history`` has one dict per step like the discrete training's: ``step``, ``loss`` (the batch's mean KL
    to the true conditionals), ``bayes_loss`` (the NIG posterior predictive's, on the same batch), ``lr``,
    ``n_context``; every ``eval_every`` steps and at the end also ``seconds`` and the held-out figures
    ``eval_kl@N``, ``eval_bayes_kl@N``, ``eval_mle_kl@N`` and their means ``eval_kl``, ...;
    ``history[-1]["train_seconds"]`` is the wall clock of the training (of every call, when it resumed).
    """
    cfg = cfg or GaussianTrainConfig()
    run = run or TrainRun()
    if not isinstance(graph, Graph) or graph.variables != "gaussian":
        raise BNError(f"train_gaussian needs a Graph with variables='gaussian', got {graph!r}")
    if not hasattr(prior, "sample") or getattr(prior, "variables", None) != "gaussian":
        raise BNError(f"train_gaussian needs a prior of Gaussian parameters (e.g. NIGPrior), "
                      f"got {type(prior).__name__}")
    world = distributed.current()
    if world.distributed:
        raise BNError("the Gaussian transformer trains in one process: run it without torchrun")
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    model = build_gaussian_model(graph, cfg).to(device)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TASKS))
    fingerprint = run_fingerprint_gaussian(graph, prior, cfg)
    history, start, seconds_before = [], 0, 0.0
    snap = snapshot.load(run.folder, fingerprint, 1) if run.folder is not None else None
    if snap is not None and _restore(snap, model, opt, gen, world, cfg):
        history, start, seconds_before = snap.history, snap.step, snap.seconds
    elif snap is not None:
        model = build_gaussian_model(graph, cfg).to(device)
        opt = make_optimizer(model, cfg)
    evaluator = GaussianHeldOut(graph, prior, cfg) if cfg.eval_every > 0 else None
    log.info("training a Gaussian model on %d nodes: %d steps%s, batch %d, lr %.3g, d_model %d x %d layers, "
             "output %s", graph.n_nodes, cfg.steps, f" (resuming at step {start})" if start else "",
             cfg.batch_size, cfg.lr, cfg.model.d_model, cfg.model.n_layer, cfg.model.output)
    watch = TrainLog(run.folder, cfg.eval_lengths, start, lines=progress, log_every=run.log_every,
                     tensorboard=run.tensorboard, total_steps=cfg.steps, eval_keys=EVAL_KEYS)
    paused = 0.0
    elapsed = lambda: seconds_before + time.perf_counter() - t0 - paused  # noqa: E731
    last_snapshot = time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            model.train()
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            rec = {"step": step, "lr": lr, **gaussian_train_step(model, graph, prior, cfg, gen, device)}
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            last = step == cfg.steps - 1
            if evaluator is not None and (step % cfg.eval_every == 0 or last):
                t_eval = time.perf_counter()
                rec["seconds"] = elapsed()
                rec.update(evaluator(model, device))
                paused += time.perf_counter() - t_eval
                watch.pause(time.perf_counter() - t_eval)
            history.append(rec)
            watch.step({"seconds": elapsed(), **rec})
            due = run.folder is not None and not last and (
                (run.checkpoint_every > 0 and (step + 1) % run.checkpoint_every == 0)
                or (run.checkpoint_minutes > 0 and time.perf_counter() - last_snapshot >= 60 * run.checkpoint_minutes))
            if due:
                t_snap = time.perf_counter()
                snapshot.save(run.folder, snapshot.Snapshot(step + 1, model.state_dict(), opt.state_dict(),
                                                            gen.get_state()[None], history, elapsed()), fingerprint)
                last_snapshot = time.perf_counter()
                paused += last_snapshot - t_snap
                watch.pause(last_snapshot - t_snap)
            if run.keep is not None and step + 1 in run.keep_steps and not last:
                t_keep = time.perf_counter()
                run.keep(step + 1, model)
                paused += time.perf_counter() - t_keep
            if run.on_step is not None:
                run.on_step(rec)
    finally:
        watch.close()
    model = model.cpu().eval()
    history[-1]["train_seconds"] = seconds_before + time.perf_counter() - t0
    return model, history
