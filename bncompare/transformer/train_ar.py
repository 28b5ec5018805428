"""Train an :class:`InContextTransformer` to forecast the next state of an autoregressive process.

The sequences are the study's prior's (:class:`bncompare.networks.autoregressive.ARPrior`): each has its
own W drawn from the law. One step:

1. split ``batch_size`` sequences into ``length_groups`` groups, one prefix length t per group drawn
   uniformly in 1..n_context_max;
2. draw each group's W and its states s_1 .. s_{t+1} (fresh every step, training seed stream);
3. one forward pass per group: tokens of the prefix s_1 .. s_t (:mod:`ar_tokens`), one query token,
   a linear head gives the forecast of s_{t+1} (d numbers);
4. the loss is the squared error ||forecast - s_{t+1}||^2 averaged over sequences (a point forecaster:
   its minimizer is the posterior mean of s_{t+1} given the prefix).

Held-out sequences (own seed stream, fixed) give, at each length t of ``eval_lengths``, ``eval_err@t`` =
E||forecast - s_{t+1}||^2 and the same for one GD step with the optimal step size (``eval_gd_err@t``,
:func:`bncompare.estimators.autoregressive.optimal_step` over the horizon n_context_max), minimum-norm
least squares (``eval_ls_err@t``) and, under the Gaussian law with noise, ridge (``eval_ridge_err@t``: the
exact posterior mean of W unless the law is rescaled by ``spectral_radius``); the keys without ``@t`` are
their means over the lengths.

Snapshots, the training log and the model cache are those of the other trainings (:mod:`snapshot`,
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
from bncompare.estimators.autoregressive import gd_direction, optimal_step
from bncompare.networks.graph import Graph
from bncompare.runtime import DEVICES, flush_denormals, resolve_device, single_thread
from bncompare.transformer import distributed, snapshot
from bncompare.transformer.ar_tokens import ARLayout, encode_ar
from bncompare.transformer.model import GRAPH_FIELDS, WRITTEN_FIELDS, InContextTransformer, TransformerConfig
from bncompare.transformer.readouts import AR_OUTPUTS
from bncompare.transformer.train import (
    STREAM_EVAL,
    STREAM_INIT,
    STREAM_TASKS,
    TrainRun,
    _restore,
    graph_signature,
    group_sizes,
    lr_at,
    make_optimizer,
    prior_signature,
    set_settings,
    stream_seed,
)
from bncompare.transformer.train_gaussian import model_config
from bncompare.transformer.trainlog import TrainLog

AR_TRAIN_CODE_VERSION = "1"
# what an autoregressive model's training depends on: the discrete training's parts (model, loop helpers), and these
AR_TRAIN_PARTS = TRAIN_PARTS + ("transformer/train_ar.py", "transformer/ar_tokens.py", "transformer/readouts.py",
                                "estimators/autoregressive.py")
EVAL_KEYS = ("eval_err", "eval_gd_err", "eval_ls_err", "eval_ridge_err")
log = logging.getLogger("bncompare.transformer.train")

# The autoregressive model's own defaults, with ARTrainConfig's 1000 steps (d = 5, T = 50 on the shared 2-core CPU):
# below one-step GD at every t >= d for the commuting and orthogonal laws. A smaller model (32 x 2 layers, 2 heads)
# is ~5x cheaper per step and fine on the orthogonal law, but stalled at error 0.40 on the commuting one.
AR_MODEL = {"d_model": 64, "n_layer": 3, "n_head": 4, "d_ff": 128, "output": "logits", "match_scores": False,
            "context_attention": "full"}

PRESETS = {
    "default": {},
    "smoke": {"steps": 200, "eval_every": 100, "eval_tasks": 64},  # seconds: tests and smoke runs
}


def preset(name: str) -> dict:
    """The training settings of a preset (a copy); an unknown name is a one-line BNError."""
    if name not in PRESETS:
        raise BNError(f"unknown autoregressive training preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def ar_model_config(d: dict | None = None) -> TransformerConfig:
    """A TransformerConfig from the autoregressive defaults updated by ``d``; a bad setting is a one-line BNError."""
    return model_config(AR_MODEL, "ARTrainConfig", d)


@dataclass(init=False)
class ARTrainConfig:
    """How one autoregressive forecaster is trained; ``model`` holds the model's settings (:class:`TransformerConfig`,
    defaults in ``AR_MODEL``). Model settings may be given flat, as for :class:`TrainConfig`."""

    model: TransformerConfig = field(default_factory=ar_model_config)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    min_lr_ratio: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_context_max: int = 50  # the longest prefix t (the study's T); also the positions' scale
    length_groups: int = 4  # prefix lengths per step (uniform on 1..n_context_max)
    seed: int = 0
    device: str = "auto"
    eval_every: int = 250
    eval_tasks: int = 256
    eval_lengths: tuple[int, ...] = (2, 5, 10, 25, 50)  # clipped to n_context_max

    def __init__(self, model: TransformerConfig | dict | None = None, **settings):
        set_settings(self, "ARTrainConfig", model, settings, ar_model_config)

    def __post_init__(self):
        check_setting_types(self, "ARTrainConfig")
        if self.model.output not in AR_OUTPUTS:
            raise BNError(f"an autoregressive model's output must be one of {list(AR_OUTPUTS)}, "
                          f"got {self.model.output!r}")
        set_by_hand = [name for name in GRAPH_FIELDS if getattr(self.model, name) is not None]
        if set_by_hand:
            raise BNError(f"ARTrainConfig.model: {set_by_hand} come from the graph; do not set them")
        if self.device not in DEVICES:
            raise BNError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        for name in ("steps", "batch_size", "length_groups", "n_context_max", "eval_tasks"):
            if int(getattr(self, name)) < 1:
                raise BNError(f"ARTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.length_groups > self.batch_size:
            raise BNError(f"ARTrainConfig.length_groups={self.length_groups} exceeds batch_size={self.batch_size}")
        if not self.lr > 0:
            raise BNError(f"ARTrainConfig.lr must be > 0, got {self.lr}")
        lengths = [int(n) for n in self.eval_lengths]
        if any(n < 1 for n in lengths):
            raise BNError(f"ARTrainConfig.eval_lengths must be >= 1, got {lengths}")
        self.eval_lengths = tuple(sorted({min(n, self.n_context_max) for n in lengths}))

    @classmethod
    def from_dict(cls, d: dict) -> ARTrainConfig:
        """The config of ``{"steps": 3000, "model": {"d_model": 64}}`` (or flat); unknown keys are a BNError."""
        return cls(**d)

    def to_dict(self) -> dict:
        """The fields as plain JSON values, the model's nested under ``model``."""
        d = asdict(self)
        d["model"] = {k: v for k, v in self.model.to_dict().items() if k not in GRAPH_FIELDS + WRITTEN_FIELDS}
        d["eval_lengths"] = list(self.eval_lengths)
        return d

    def model_config(self, graph: Graph) -> TransformerConfig:
        """The TransformerConfig of a model for ``graph``'s process."""
        return self.model.for_layout(ARLayout(graph.n_nodes))


def run_fingerprint_ar(graph: Graph, prior, cfg: ARTrainConfig) -> str:
    """sha256 of everything that determines a trained forecaster (as :func:`train.run_fingerprint`)."""
    train_cfg = cfg.to_dict()
    train_cfg.pop("device", None)
    blob = {"variables": "autoregressive", "graph": graph_signature(graph), "prior": prior_signature(prior),
            "train": train_cfg, "code": [AR_TRAIN_CODE_VERSION, code_version(AR_TRAIN_PARTS)]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def build_ar_model(graph: Graph, cfg: ARTrainConfig) -> InContextTransformer:
    """A fresh model for ``graph``'s process (its initial weights from the config's seed)."""
    return InContextTransformer(cfg.model_config(graph), seed=stream_seed(cfg.seed, STREAM_INIT))


def forecast(model, contexts: torch.Tensor, horizon: int, device) -> torch.Tensor:
    """The model's forecast of s_{t+1} for prefixes (B, t, d): (B, d) float64 on ``device``."""
    dtype = next(model.parameters()).dtype
    tokens = encode_ar(contexts.to(device), horizon, dtype)
    return model(tokens, contexts.shape[1])[:, 0].double()


def draw_prefix_length(cfg: ARTrainConfig, gen: torch.Generator) -> int:
    """A prefix length t, uniform on 1..n_context_max."""
    return 1 + int(torch.randint(cfg.n_context_max, (), generator=gen))


def draw_sequences(graph: Graph, prior, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """(n, length, d) states of n fresh sequences from ``prior``."""
    return prior.sequences(prior.sample(graph, n, gen), length, gen)


# ----- the references ----------------------------------------------------------------------------------

def least_squares_forecast(contexts: torch.Tensor) -> torch.Tensor:
    """W_hat s_t with W_hat the minimum-norm least-squares fit of s_{u+1} = W s_u (u < t): (B, d); 0 at t = 1."""
    x, y = contexts[:, :-1], contexts[:, 1:]
    W = y.transpose(1, 2) @ torch.linalg.pinv(x.transpose(1, 2))  # W X' = Y'
    return (W @ contexts[:, -1, :, None])[..., 0]


def ridge_forecast(contexts: torch.Tensor, sigma: float) -> torch.Tensor:
    """The posterior mean of W under N(0, 1/d) entries and noise sd sigma > 0, applied to s_t:
    W_hat = Y'X (X'X + sigma^2 d I)^-1 (the exact Bayes predictive mean of the Gaussian law)."""
    x, y = contexts[:, :-1], contexts[:, 1:]
    B, d = contexts.shape[0], contexts.shape[-1]
    # as least squares on X stacked over sigma sqrt(d) I (targets 0): QR, not the normal equations, whose X'X
    # is singular in float64 once the states of an unstable W have grown large
    root = sigma * d**0.5 * torch.eye(d, dtype=contexts.dtype).expand(B, d, d)
    W = torch.linalg.lstsq(torch.cat([x, root], 1), torch.cat([y, torch.zeros_like(root)], 1)).solution
    return (W.transpose(1, 2) @ contexts[:, -1, :, None])[..., 0]


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over sequences of ||pred - target||^2."""
    return float(((pred - target) ** 2).sum(-1).mean())


def has_ridge_reference(prior) -> bool:
    """Whether ridge is a reference under ``prior``: the Gaussian law with noise (the exact posterior mean of W
    when the law is not rescaled, ``spectral_radius`` null; close to it otherwise)."""
    return prior.law == "gaussian" and prior.sigma > 0


class ARHeldOut:
    """Fixed held-out sequences (own seed stream) and, at each eval length, the references' errors."""

    def __init__(self, graph: Graph, prior, cfg: ARTrainConfig):
        gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_EVAL))
        self.cfg = cfg
        seqs = draw_sequences(graph, prior, cfg.eval_tasks, max(cfg.eval_lengths) + 1, gen)
        self.eta = optimal_step(prior, graph.n_nodes, cfg.n_context_max)
        self.sets, self.references = {}, {}
        for t in cfg.eval_lengths:
            ctx, nxt = seqs[:, :t], seqs[:, t]
            self.sets[t] = (ctx, nxt)
            ref = {f"eval_gd_err@{t}": squared_error(self.eta * gd_direction(ctx), nxt),
                   f"eval_ls_err@{t}": squared_error(least_squares_forecast(ctx), nxt)}
            if has_ridge_reference(prior):
                ref[f"eval_ridge_err@{t}"] = squared_error(ridge_forecast(ctx, prior.sigma), nxt)
            self.references.update(ref)

    @torch.no_grad()
    @flush_denormals()
    def __call__(self, model, device) -> dict:
        model.eval()
        out = dict(self.references)
        for t, (ctx, nxt) in self.sets.items():
            out[f"eval_err@{t}"] = squared_error(forecast(model, ctx, self.cfg.n_context_max, device).cpu(), nxt)
        for key in EVAL_KEYS:
            vals = [out[f"{key}@{t}"] for t in self.sets if f"{key}@{t}" in out]
            if len(vals) == len(self.sets):
                out[key] = float(np.mean(vals))
        return out


# ----- training -------------------------------------------------------------------------------------

@flush_denormals()
def ar_train_step(model, graph: Graph, prior, cfg: ARTrainConfig, gen: torch.Generator, device) -> dict:
    """Forward and backward over one batch (one group per prefix length); returns the batch figures."""
    rec = {"loss": 0.0, "n_context": 0}
    for size in group_sizes(cfg):
        t = draw_prefix_length(cfg, gen)
        seqs = draw_sequences(graph, prior, size, t + 1, gen)
        target = seqs[:, t].to(device, torch.float32)
        err = ((forecast(model, seqs[:, :t], cfg.n_context_max, device).float() - target) ** 2).sum(-1).mean()
        (err * (size / cfg.batch_size)).backward()
        rec["loss"] += err.item() * size / cfg.batch_size
        rec["n_context"] = max(rec["n_context"], t)
    return rec


@single_thread()  # small matrices: one thread is faster on a shared CPU (as for the other trainings)
def train_ar(graph: Graph, prior, cfg: ARTrainConfig | None = None, progress: bool = True, *,
             run: TrainRun | None = None):
    """Train a fresh forecaster on ``prior``'s sequences -> (model on CPU in eval mode, history).

    ``history`` has one dict per step: ``step``, ``loss`` (the batch's mean squared error), ``lr``,
    ``n_context`` (the longest prefix of the step); every ``eval_every`` steps and at the end also
    ``seconds`` / ``train_seconds`` (the training clock so far, evaluation excluded) and the held-out
    figures (module docstring). ``history[-1]["train_seconds"]`` is the wall clock of the whole training
    (of every call, when it resumed).
    """
    cfg = cfg or ARTrainConfig()
    run = run or TrainRun()
    if not isinstance(graph, Graph) or graph.variables != "autoregressive":
        raise BNError(f"train_ar needs a Graph with variables='autoregressive', got {graph!r}")
    if getattr(prior, "variables", None) != "autoregressive" or not hasattr(prior, "sequences"):
        raise BNError(f"train_ar needs an autoregressive prior (ARPrior), got {type(prior).__name__}")
    if distributed.current().distributed:
        raise BNError("the autoregressive transformer trains in one process: run it without torchrun")
    evaluator = ARHeldOut(graph, prior, cfg) if cfg.eval_every > 0 else None  # its optimal step: not training time
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    model = build_ar_model(graph, cfg).to(device)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TASKS))
    fingerprint = run_fingerprint_ar(graph, prior, cfg)
    history, start, seconds_before = [], 0, 0.0
    world = distributed.current()
    snap = snapshot.load(run.folder, fingerprint, 1) if run.folder is not None else None
    if snap is not None and _restore(snap, model, opt, gen, world, cfg):
        history, start, seconds_before = snap.history, snap.step, snap.seconds
    elif snap is not None:
        model = build_ar_model(graph, cfg).to(device)
        opt = make_optimizer(model, cfg)
    log.info("training an autoregressive forecaster, d=%d: %d steps%s, batch %d, lr %.3g, d_model %d x %d layers",
             graph.n_nodes, cfg.steps, f" (resuming at step {start})" if start else "", cfg.batch_size, cfg.lr,
             cfg.model.d_model, cfg.model.n_layer)
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
            rec = {"step": step, "lr": lr, **ar_train_step(model, graph, prior, cfg, gen, device)}
            if not math.isfinite(rec["loss"]):
                raise BNError(f"the autoregressive training diverged at step {step} (loss {rec['loss']}): the "
                              "states grow too large (law=gaussian without spectral_radius?); lower lr or T")
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            last = step == cfg.steps - 1
            if evaluator is not None and (step % cfg.eval_every == 0 or last):
                t_eval = time.perf_counter()
                rec["seconds"] = rec["train_seconds"] = elapsed()
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
