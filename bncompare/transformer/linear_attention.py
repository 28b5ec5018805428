"""One layer of linear attention on augmented tokens, for in-context autoregression (Sander et al., arXiv 2402.05787).

The layer
---------
A sequence ``s_1 .. s_L`` of d-vectors becomes the augmented tokens ``e_t = (0, s_t, s_{t-1})`` of width 3d
(``s_0 = 0``; the first block is the slot the forecast is written to). One head, causal, no softmax, no
normalization, no MLP, no positional information, scale 1 (no ``1/t`` and no ``1/sqrt(width)``; Adam does not
care about a fixed scale, and the closed form below is then exactly ``eta A_t s_t``)::

    o_t = W_PV  M_t  W_KQ e_t,      M_t = sum_{tau <= t} e_tau e_tau'      (3d x 3d)

and the forecast of ``s_{t+1}`` is ``o_t[:d]``. Blocks of a 3d-vector are named ``0`` (coordinates ``0..d``),
``s`` (``d..2d``: ``s_t``) and ``p`` (``2d..3d``: ``s_{t-1}``); ``W[X, Y]`` is the block of rows X, columns Y.

One step of gradient descent (:func:`gd_weights`)
-------------------------------------------------
``M_t[s, p] = sum_{tau <= t} s_tau s_{tau-1}' = A_t`` (the in-context ``sum_{u<t} s_{u+1} s_u'``), so
``W_KQ[p, s] = I`` (the query's ``s_t`` moved to the key slot of ``s_{t-1}``) and ``W_PV[0, s] = eta I`` (the
value's ``s_tau`` written to the forecast slot) give ``o_t[:d] = eta A_t s_t``: one GD step from W = 0 on
``1/2 sum_{u<t} ||s_{u+1} - W s_u||^2`` with step eta (:func:`bncompare.estimators.autoregressive.gd_direction`).
All other blocks are 0.

The learned prediction map
--------------------------
The forecast is ``f_i = sum_{a,b,c} W_PV[i, a] M_t[a, b] W_KQ[b, c] e_t[c]`` for ``i`` in block 0: a bilinear
function of ``(M_t, e_t)`` whose coefficients are the tensor ``T[i, a, b, c] = W_PV[i, a] W_KQ[b, c]``. Since
block 0 of every token is 0, only ``a, b, c`` in blocks ``s, p`` reach the forecast, and the **prediction map**
is the restriction ``T = P (x) K`` with ``P = W_PV[0, (s p)]`` (d x 2d) and ``K = W_KQ[(s p), (s p)]``
(2d x 2d). It is invariant under the symmetry ``(W_PV c, W_KQ / c)`` of the weights, and so is:

- the **map distance** ``||T - T_gd||_F / ||T_gd||_F`` to the one-GD-step map at the optimal step eta*
  (:func:`map_distance`);
- the **d x d map** ``Gamma = tr(W_PV[0, s]) / d * W_KQ[p, s]`` (:func:`prediction_map`): the contraction of
  T over the (forecast, value-``s_t``) pair of indices, restricted to the (key-``s_{t-1}``, query-``s_t``)
  block, i.e. the best ``I (x) Gamma`` approximation of that block of T. Its forecast part is ``A_t Gamma s_t``
  (a right-preconditioned GD step); for the GD solution ``Gamma = eta* I``;
- not a property of the weights, the **forecast distance** ``sqrt(sum ||f - f_gd||^2 / sum ||f_gd||^2)`` of the
  forecasts to the one-step optimum's on held-out sequences (all t): T is not identifiable from the forecasts
  (M_t is symmetric, and the ``p`` blocks of the tokens repeat the ``s`` blocks one step later), so a trained
  layer can drift in T along directions that change no forecast; this distance does not.

Training (:func:`train_linear`)
-------------------------------
As Sander et al.: MSE ``||o_t[:d] - s_{t+1}||^2`` averaged over positions t = 1..T and sequences of the study's
prior (T + 1 states each), Adam with lr 1e-2, batch 1024, small Gaussian initial weights. Unlike their fixed pool
of 2^14 sequences, every step draws FRESH sequences (training stream of the seed): the loss is then an unbiased
estimate of the population risk whose minimizer the one-step optimum eta* is (there is no pool to over-fit,
and the draws cost little next to the step). The learning rate decays linearly to ``lr * lr_final``
over the last ``decay_fraction`` of the steps (the minibatch noise at a constant 1e-2 would otherwise leave the
weights jittering around the optimum). Held-out figures come from sequences of their own seed stream.

What it learns (measured, d = 5, T = 50, sigma = 0, fixed start; the figures are in docs/results.md)
-------------------------------------------------------------------------------------------------------
The one-GD-step map ``eta* I`` is NOT the optimum of this layer on these laws: the trained layer's held-out error
is BELOW the one-step optimum's (commuting: 0.331 vs 0.348 mean over t; orthogonal: ~0.40 vs 0.43), and its map
is far from ``eta* I (x) I``. Under ``law=commuting`` the loss's gradient at the GD weights is not zero and
training started there moves away (lower loss); from a small random init the layer settles on block-wise
rotations/reflections of the law's FIXED basis (``W_PV[0, .]`` and ``W_KQ`` blocks that are 2x2 rotations or
reflections per rotation block, of either sign on the +-1 coordinate). Most of the gain needs only the basis: the
forecast ``c D A_t D s_t`` with ``D = diag(-1, -1, -1, -1, 1)`` (the couplings between the +-1 coordinate and the
rotation blocks flipped) has mean error 0.325 against 0.354 for ``eta* A_t s_t`` (8192 sequences). Sander et al.'s
GD result assumes a sparse block structure of the weights; ``free="gd_blocks"`` trains only the two GD blocks, and
even then the layer learns rotations ``P = diag(R(a_j))``, ``K = diag(R(-a_j))`` with a per-block angle a_j,
not ``eta* I``. Only a law without preferred directions (``orthogonal`` with ``start=gaussian``) gives the GD
structure (``W_PV[0, s] ~ I``, ``W_KQ[p, s] ~ I``), at a step ~8% above eta* plus a small ``W_KQ[s, p]`` term:
map distance ~0.19 after 400 steps, mean error 1.5% below the one-step optimum's.

Cache (:func:`trained_linear`)
------------------------------
One entry per sha256 over the d, the prior, the training config (seed included), the device type and the
code version of the files that determine training (:data:`TRAIN_PARTS`), in
``checkpoint.default_cache_dir() / "ar_linear" / <key>``: ``weights.pt`` (the two matrices, read back with
``torch.load(..., weights_only=True)`` and checked for shape) and ``meta.json`` (key, config, history, the
weights' sha256), both written atomically, meta last.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bncompare.codeversion import code_version
from bncompare.errors import BNError
from bncompare.estimators.autoregressive import gd_directions
from bncompare.files import atomic_write
from bncompare.transformer.snapshot import write_torch

log = logging.getLogger(__name__)

# Seed streams of a training seed (the same derivation as transformer.train.stream_seed).
STREAM_TRAIN, STREAM_INIT, STREAM_EVAL, STREAM_TEST = 0, 1, 2, 3
TRAIN_PARTS = ("errors.py", "networks/autoregressive.py", "estimators/autoregressive.py",
               "transformer/linear_attention.py")
CACHE_FOLDER = "ar_linear"
WEIGHTS, META = "weights.pt", "meta.json"
EVAL_AT = (5, 10, 25, 50)
FREE = ("all", "gd_blocks")  # the context lengths of the per-t held-out figures (those <= T)


def stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0] >> 1)


# ----- the layer ---------------------------------------------------------------------------------

def augmented_tokens(states: torch.Tensor) -> torch.Tensor:
    """(B, L, d) states -> (B, L, 3d) tokens ``e_t = (0, s_t, s_{t-1})`` with ``s_0 = 0``."""
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], 1)
    return torch.cat([torch.zeros_like(states), states, prev], -1)


class LinearAttention(nn.Module):
    """``o_t = W_PV (sum_{tau<=t} e_tau e_tau') W_KQ e_t`` on augmented tokens (see the module docstring)."""

    def __init__(self, d: int, dtype=torch.float64, init_std: float = 0.0, seed: int | None = None):
        super().__init__()
        self.d = int(d)
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        width = 3 * self.d
        self.W_PV = nn.Parameter(init_std * torch.randn(width, width, generator=gen, dtype=dtype))
        self.W_KQ = nn.Parameter(init_std * torch.randn(width, width, generator=gen, dtype=dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, 3d) tokens -> (B, L, 3d) outputs at every position (causal)."""
        q = tokens @ self.W_KQ.T  # W_KQ e_t
        scores = torch.tril(q @ tokens.transpose(1, 2))  # [t, tau] = e_tau' W_KQ e_t for tau <= t
        return (scores @ tokens) @ self.W_PV.T

    def forecast(self, states: torch.Tensor) -> torch.Tensor:
        """(B, L, d) states -> (B, L, d) forecasts of s_{t+1} at every t = 1..L: ``forward(tokens)[..., :d]``,
        computed on the nonzero blocks only (``(s_t, s_{t-1})``, the forecast rows of W_PV), about 3x cheaper."""
        d = self.d
        s = states.to(self.W_PV.dtype)
        e = torch.cat([s, torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], 1)], -1)  # tokens without block 0
        scores = torch.tril((e @ self.W_KQ[d:, d:].T) @ e.transpose(1, 2))
        return scores @ (e @ self.W_PV[:d, d:].T)

    def last(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For prefixes (B, t, d): the forecast of s_{t+1} (B, d) and the linear map it applies to s_t (B, d, d),
        ``W_PV[0, :] M_t W_KQ[:, s]`` (the forecast is that map times s_t plus the query's s_{t-1} part)."""
        d = self.d
        tokens = augmented_tokens(states.to(self.W_PV.dtype))
        M = tokens.transpose(1, 2) @ tokens  # sum of e e' over the prefix
        left = self.W_PV[:d] @ M  # (B, d, 3d)
        f = torch.einsum("bia,ac,bc->bi", left, self.W_KQ, tokens[:, -1])
        return f, left @ self.W_KQ[:, d:2 * d]


def gd_weights(d: int, eta: float, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_PV, W_KQ)`` of one GD step with step ``eta``: ``W_PV[0, s] = eta I``, ``W_KQ[p, s] = I``, else 0."""
    W_PV = torch.zeros(3 * d, 3 * d, dtype=dtype)
    W_KQ = torch.zeros(3 * d, 3 * d, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    W_PV[:d, d:2 * d] = eta * eye
    W_KQ[2 * d:, d:2 * d] = eye
    return W_PV, W_KQ


def constructed_layer(d: int, eta: float, dtype=torch.float64) -> LinearAttention:
    layer = LinearAttention(d, dtype)
    W_PV, W_KQ = gd_weights(d, eta, dtype)
    with torch.no_grad():
        layer.W_PV.copy_(W_PV)
        layer.W_KQ.copy_(W_KQ)
    return layer


# ----- the prediction map ------------------------------------------------------------------------

def map_tensor(W_PV, W_KQ) -> torch.Tensor:
    """The prediction map ``T[i, a, b, c] = W_PV[i, a] W_KQ[b, c]`` on the blocks that reach the forecast,
    (d, 2d, 2d, 2d) (see the module docstring)."""
    W_PV, W_KQ = torch.as_tensor(W_PV).detach().double().cpu(), torch.as_tensor(W_KQ).detach().double().cpu()
    d = W_PV.shape[0] // 3
    return torch.einsum("ia,bc->iabc", W_PV[:d, d:], W_KQ[d:, d:])


def map_distance(W_PV, W_KQ, W_PV_ref, W_KQ_ref) -> float:
    """``||T - T_ref||_F / ||T_ref||_F`` of the prediction maps (:func:`map_tensor`)."""
    ref = map_tensor(W_PV_ref, W_KQ_ref)
    return float((map_tensor(W_PV, W_KQ) - ref).norm() / ref.norm())


def prediction_map(W_PV, W_KQ) -> torch.Tensor:
    """The d x d map ``tr(W_PV[0, s]) / d * W_KQ[p, s]`` (eta I for the GD solution; see the module docstring)."""
    W_PV, W_KQ = torch.as_tensor(W_PV).double(), torch.as_tensor(W_KQ).double()
    d = W_PV.shape[0] // 3
    return torch.diagonal(W_PV[:d, d:2 * d]).sum() / d * W_KQ[2 * d:, d:2 * d]


# ----- held-out figures --------------------------------------------------------------------------

def least_squares_forecasts(sequences: torch.Tensor) -> torch.Tensor:
    """(B, L, d) -> (B, L, d): the minimum-norm least-squares W of each prefix's pairs times s_t (0 at t = 1)."""
    B, L, d = sequences.shape
    out = torch.zeros_like(sequences)
    for t in range(2, L + 1):
        X, Y = sequences[:, : t - 1], sequences[:, 1:t]  # rows s_u, s_{u+1}, u < t
        W = (torch.linalg.pinv(X) @ Y).transpose(1, 2)  # min-norm solution of X W' = Y
        out[:, t - 1] = torch.einsum("bij,bj->bi", W, sequences[:, t - 1])
    return out


def _err(forecasts: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """(L,) mean over sequences of ||forecast_t - s_{t+1}||^2 for forecasts (B, L, d) of sequences (B, L+1, d)."""
    return ((forecasts - sequences[:, 1:]) ** 2).sum(-1).mean(0)


def draw_sequences(prior, d: int, n: int, length: int, seed: int) -> torch.Tensor:
    from bncompare.networks.autoregressive import ar_graph

    gen = torch.Generator().manual_seed(seed)
    return prior.sequences(prior.sample(ar_graph(d), n, gen), length, gen)


class HeldOut:
    """Fixed held-out sequences with their one-step-GD (at eta*) and least-squares errors per t."""

    def __init__(self, prior, d: int, horizon: int, eta: float, n: int, seed: int, least_squares: bool = True):
        self.sequences = draw_sequences(prior, d, n, horizon + 1, seed)
        self.eta = eta
        self.gd_forecasts = eta * gd_directions(self.sequences[:, :-1])
        self.gd_err = _err(self.gd_forecasts, self.sequences)
        self.ls_err = _err(least_squares_forecasts(self.sequences[:, :-1]), self.sequences) if least_squares else None

    @torch.no_grad()
    def forecasts(self, layer: LinearAttention) -> torch.Tensor:
        device = layer.W_PV.device
        return torch.cat([layer.forecast(self.sequences[i:i + 1024, :-1].to(device)).double().cpu()
                          for i in range(0, len(self.sequences), 1024)])

    def errors(self, layer: LinearAttention) -> torch.Tensor:
        return _err(self.forecasts(layer), self.sequences)

    def forecast_distance(self, forecasts: torch.Tensor) -> float:
        """``sqrt(sum ||f - f_gd||^2 / sum ||f_gd||^2)`` over these sequences and t: the distance of the forecasts
        (the FUNCTION) to the one-step optimum's, blind to any reparametrization of the weights."""
        return float(((forecasts - self.gd_forecasts) ** 2).sum().sqrt() / (self.gd_forecasts ** 2).sum().sqrt())

    def record(self, layer: LinearAttention, W_PV_gd, W_KQ_gd) -> dict:
        f = self.forecasts(layer)
        err = _err(f, self.sequences)
        rec = {"eval_err": float(err.mean()), "eval_gd_err": float(self.gd_err.mean()),
               "eval_forecast_distance": self.forecast_distance(f),
               "eval_map_distance": map_distance(layer.W_PV.detach().cpu(), layer.W_KQ.detach().cpu(), W_PV_gd,
                                                 W_KQ_gd)}
        if self.ls_err is not None:
            rec["eval_ls_err"] = float(self.ls_err.mean())
        for t in EVAL_AT:
            if t <= len(err):
                rec[f"eval_err@{t}"] = float(err[t - 1])
                rec[f"eval_gd_err@{t}"] = float(self.gd_err[t - 1])
        return rec


# ----- training ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearTrainConfig:
    """Everything that determines a training of the layer (all of it goes into the cache key)."""

    horizon: int = 50  # T: forecasts at t = 1..T of sequences of T + 1 states
    steps: int = 1000
    batch_size: int = 1024
    lr: float = 1e-2
    decay_fraction: float = 0.5  # the last fraction of the steps decays the lr linearly ...
    lr_final: float = 0.01  # ... to lr * lr_final
    init_std: float = 1e-2  # the initial weights' entries ~ N(0, init_std^2)
    eval_every: int = 100  # held-out figures every this many steps (and at the last); 0: only at the last
    n_eval: int = 1024
    free: str = "all"  # which blocks train: "all", or "gd_blocks" (W_PV[0, s] and W_KQ[p, s]; the rest stays 0)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        for name in ("horizon", "steps", "batch_size", "n_eval"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BNError(f"ar_trained_linear: {name} must be an integer >= 1, got {v!r}")
        for name in ("lr", "init_std", "lr_final", "decay_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise BNError(f"ar_trained_linear: {name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0 or self.decay_fraction > 1:
            raise BNError(f"ar_trained_linear: lr must be > 0 and decay_fraction in [0, 1], got lr={self.lr!r}, "
                          f"decay_fraction={self.decay_fraction!r}")
        if self.free not in FREE:
            raise BNError(f"ar_trained_linear: free must be one of {', '.join(FREE)}, got {self.free!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise BNError(f"ar_trained_linear: eval_every must be an integer >= 0, got {self.eval_every!r}")


def free_masks(d: int, free: str, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """0/1 masks of the trained entries of (W_PV, W_KQ), or None when all train."""
    if free == "all":
        return None
    pv, kq = (m.ne(0).double().to(device) for m in gd_weights(d, 1.0))
    pv[:d, d:2 * d] = 1.0
    kq[2 * d:, d:2 * d] = 1.0
    return pv, kq


def lr_at(step: int, cfg: LinearTrainConfig) -> float:
    start = cfg.steps * (1 - cfg.decay_fraction)
    if step < start:
        return cfg.lr
    frac = (step - start) / max(cfg.steps - start, 1)
    return cfg.lr * (1 - frac * (1 - cfg.lr_final))


def train_linear(prior, d: int, cfg: LinearTrainConfig, eta: float, progress: bool = False):
    """Train a fresh layer on ``prior``'s sequences -> (layer on the CPU, history; see the module docstring).

    ``eta`` is the optimal one-step GD step (the reference of the held-out map distance)."""
    from bncompare.networks.autoregressive import ar_graph
    from bncompare.runtime import resolve_device

    device = resolve_device(cfg.device)
    graph = ar_graph(d)
    layer = LinearAttention(d, torch.float64, cfg.init_std, seed=stream_seed(cfg.seed, STREAM_INIT)).to(device)
    masks = free_masks(d, cfg.free, device)
    if masks is not None:
        with torch.no_grad():
            layer.W_PV.mul_(masks[0])
            layer.W_KQ.mul_(masks[1])
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TRAIN))
    held = HeldOut(prior, d, cfg.horizon, eta, cfg.n_eval, stream_seed(cfg.seed, STREAM_EVAL))
    W_PV_gd, W_KQ_gd = gd_weights(d, eta)
    history, seconds = [], 0.0
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        seqs = prior.sequences(prior.sample(graph, cfg.batch_size, gen), cfg.horizon + 1, gen).to(device)
        f = layer.forecast(seqs[:, :-1])
        loss = ((f - seqs[:, 1:]) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masks is not None:  # Adam leaves a weight whose gradient is always 0 where it is
            layer.W_PV.grad.mul_(masks[0])
            layer.W_KQ.grad.mul_(masks[1])
        opt.step()
        seconds += time.perf_counter() - t0
        rec = {"step": step, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"], "train_seconds": seconds}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps - 1:
            rec.update(held.record(layer, W_PV_gd, W_KQ_gd))
            if progress:
                log.info("ar_linear step %d: loss %.4f, held-out %.4f (one GD step %.4f), map distance %.4f, "
                         "forecast distance %.4f, %.1f s", step, rec["loss"], rec["eval_err"], rec["eval_gd_err"],
                         rec["eval_map_distance"], rec["eval_forecast_distance"], seconds)
        history.append(rec)
    return layer.cpu().eval(), history


# ----- the cache ---------------------------------------------------------------------------------

def cache_key(prior, d: int, cfg: LinearTrainConfig) -> str:
    from bncompare.runtime import resolve_device

    what = {"d": int(d), "prior": {"law": prior.law, "sigma": float(prior.sigma), "start": prior.start,
                                   "spectral_radius": prior.spectral_radius},
            "config": asdict(cfg), "device": resolve_device(cfg.device).type, "code": code_version(TRAIN_PARTS)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_entry(folder: Path, key: str, d: int):
    """(layer, history) from a cache entry, or None when it is missing, foreign or damaged (logged)."""
    w_path, m_path = folder / WEIGHTS, folder / META
    if not (w_path.is_file() and m_path.is_file()):
        return None
    try:
        meta = json.loads(m_path.read_text())
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("weights_sha256") != _sha256(w_path):
            raise ValueError("its meta does not match")
        state = torch.load(w_path, map_location="cpu", weights_only=True)  # plain tensors only, never code
        want = (3 * d, 3 * d)
        if not isinstance(state, dict) or set(state) != {"W_PV", "W_KQ"} or any(
                not isinstance(v, torch.Tensor) or tuple(v.shape) != want or not v.is_floating_point()
                or not torch.isfinite(v).all() for v in state.values()):
            raise ValueError(f"its weights are not two finite {want} matrices")
        history = meta.get("history")
        if not isinstance(history, list):
            raise ValueError("it has no history")
    except Exception as e:  # noqa: BLE001  a damaged or foreign entry: train again and overwrite it
        log.warning("bad ar_linear cache entry %s (%s): training again", folder, str(e).splitlines()[0][:160]
                    if str(e) else type(e).__name__)
        return None
    layer = LinearAttention(d)
    with torch.no_grad():
        layer.W_PV.copy_(state["W_PV"])
        layer.W_KQ.copy_(state["W_KQ"])
    return layer.eval(), history


def save_entry(folder: Path, key: str, layer: LinearAttention, history: list, cfg: LinearTrainConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {"W_PV": layer.W_PV.detach().cpu().clone(), "W_KQ": layer.W_KQ.detach().cpu().clone()}
    write_torch(folder / WEIGHTS, state)  # the same bytes for the same weights
    meta = {"key": key, "config": asdict(cfg), "weights_sha256": _sha256(folder / WEIGHTS), "history": history}
    text = json.dumps(meta, indent=0)
    atomic_write(folder / META, lambda tmp: tmp.write_text(text))


def trained_linear(prior, d: int, cfg: LinearTrainConfig, eta: float, cache_dir=None, progress: bool = False):
    """(layer, history, cache folder): the cached training of ``cfg`` on ``prior`` for dimension d, or a new one."""
    from bncompare.transformer.checkpoint import check_writable, default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(prior, d, cfg)
    folder = root / CACHE_FOLDER / key[:32]
    got = load_entry(folder, key, d)
    if got is not None:
        return (*got, folder)
    check_writable(folder.parent)
    layer, history = train_linear(prior, d, cfg, eta, progress)
    save_entry(folder, key, layer, history, cfg)
    return layer, history, folder


