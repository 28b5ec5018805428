"""Checkpoints and the trained-model cache.

A checkpoint is a directory with two files:

- ``model.pt``: the model's ``state_dict`` only (plain tensors), read back with
  ``torch.load(..., weights_only=True)``, so loading never runs pickled code;
- ``config.json``: the model config, plus whatever ``meta`` the caller adds
  (train config, graph signature, prior, history), the sha256 of
  ``model.pt``, the checkpoint format and the bncompare and torch versions
  that wrote it.

Checkpoints are portable: the weights are saved from the CPU and loaded with
``map_location``, so a model trained on CUDA loads on a CPU-only machine and the
other way round. A checkpoint from another bncompare version loads when its
model config and weights still fit this version's model; when they do not, the
one-line error says which version wrote it and what does not fit.

Each file is written to a temporary file in the same directory and moved into
place with ``os.replace`` (atomic on POSIX and Windows). ``config.json`` goes
last and names the weights' hash, so a save interrupted between the two files
is detected on load instead of pairing new weights with an old config.

Loading trusts nothing in the folder: every problem (config.json not a JSON object,
weights that do not unpickle as plain tensors, a config claiming a model larger than
the weights file, shapes that do not fit) is a one-line BNError, and the model is
built on the ``meta`` device first, so a forged config never allocates memory.

The cache (:func:`trained_model`) keeps one checkpoint per sha256 of everything
that determines a trained model: graph signature, prior, TrainConfig and the
training code's version (:func:`bncompare.codeversion.code_version`). It lives in
``$BNCOMPARE_CACHE`` or ``~/.cache/bncompare``.
The whole entry is checked before it is used: the model and the weights of every kept step
(``steps/<k>/``). An entry with any bad part (damaged, missing, another training's) is reported in
one log line, emptied and trained again from the start; an unwritable cache is
reported before training, not after. A process training an entry holds its lock
(``.training.lock``, an flock the kernel drops when the process dies): another
process needing the same model waits, then loads it, instead of training it twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from filelock import FileLock, Timeout

import bncompare
from bncompare.codeversion import TRAIN_PARTS, code_version
from bncompare.errors import BNError
from bncompare.files import atomic_write, probe_writable
from bncompare.networks.graph import Graph
from bncompare.transformer import distributed, snapshot
from bncompare.transformer.model import InContextTransformer, TransformerConfig
from bncompare.transformer.train import (
    TrainConfig,
    TrainRun,
    build_model,
    graph_signature,
    prior_signature,
    run_fingerprint,
    train,
)
from bncompare.transformer.train_ar import ARTrainConfig, build_ar_model, run_fingerprint_ar, train_ar
from bncompare.transformer.train_gaussian import (
    GaussianTrainConfig,
    build_gaussian_model,
    run_fingerprint_gaussian,
    train_gaussian,
)
from bncompare.transformer.trainlog import LOG_CSV

WEIGHTS, CONFIG = "model.pt", "config.json"
TRAIN_LOCK = ".training.lock"  # held while a process trains this entry
# Bump when the layout of a checkpoint folder changes in a way older code cannot read.
CHECKPOINT_FORMAT = 1
log = logging.getLogger(__name__)


# ----- signatures -------------------------------------------------------------

def _describe(sig: dict) -> str:
    edges = [f"{sig['names'][p]}->{n}" for n, pa in zip(sig["names"], sig["parents"]) for p in pa]
    return f"nodes {sig['names']} cards {sig['cards']} edges [{', '.join(edges)}]"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(directory, model: InContextTransformer, meta: dict | None = None) -> Path:
    """Write ``model``'s weights and config (plus JSON-able ``meta``) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    snapshot.write_torch(directory / WEIGHTS, state)  # the same weights, the same bytes
    config = {"model": model.cfg.to_dict(), "weights_sha256": _sha256(directory / WEIGHTS),
              "format": CHECKPOINT_FORMAT, "bncompare": bncompare.__version__, "torch": torch.__version__,
              **(meta or {})}
    text = json.dumps(config, indent=1, allow_nan=True).encode()
    atomic_write(directory / CONFIG, lambda tmp: tmp.write_bytes(text))
    return directory


def written_by(meta: dict) -> str:
    """Which bncompare wrote a checkpoint, for error messages."""
    version = meta.get("bncompare")
    return f"bncompare {version}" if isinstance(version, str) else "a bncompare that did not record its version"


def load_checkpoint(directory, graph: Graph | None = None, device="cpu") -> tuple[InContextTransformer, dict]:
    """Read a checkpoint -> (model in eval mode on ``device``, meta). ``graph`` checks it was trained for that
    network. Tensors are mapped to the CPU first, so it does not matter where the model was trained."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG, directory / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise BNError(f"no checkpoint in {directory}: expected {CONFIG} and {WEIGHTS}")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BNError(f"checkpoint config {cfg_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise BNError(f"checkpoint config {cfg_path} is not a JSON object")
    if graph is not None:
        want, got = graph_signature(graph), meta.get("graph")
        if got != want:
            described = isinstance(got, dict) and {"names", "cards", "parents"} <= set(got)
            got_s = _describe(got) if described else "no graph"
            raise BNError(f"checkpoint {directory} was trained for another network ({got_s}), not {_describe(want)}")
    if meta.get("weights_sha256") != _sha256(w_path):
        raise BNError(f"checkpoint {directory} is incomplete: {WEIGHTS} does not match the hash in {CONFIG}")
    fmt = meta.get("format", 0)
    if not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise BNError(f"checkpoint {directory} was written by {written_by(meta)} in checkpoint format {fmt!r}; "
                      f"this bncompare {bncompare.__version__} reads formats up to {CHECKPOINT_FORMAT}: "
                      "upgrade bncompare, or delete the folder to train it again")
    known = {f.name for f in fields(TransformerConfig)}
    mcfg = meta.get("model")
    if not isinstance(mcfg, dict) or not {"d_in", "d_out"} <= set(mcfg):
        raise BNError(f"checkpoint {cfg_path} has no valid 'model' config (fields {sorted(known)})")
    if set(mcfg) - known:
        raise BNError(f"checkpoint {directory} was written by {written_by(meta)}, whose model has settings this "
                      f"bncompare {bncompare.__version__} does not know: {sorted(set(mcfg) - known)}; load it "
                      "with that version, or delete the folder to train it again")
    try:
        with torch.device("meta"):  # shapes only: a forged d_model allocates nothing
            skeleton = InContextTransformer(TransformerConfig(**mcfg))
    except (TypeError, ValueError, RuntimeError) as e:
        raise BNError(f"checkpoint {cfg_path} has a bad model config: {e}") from None
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    need = sum(v.numel() * v.element_size() for v in skeleton.state_dict().values())
    if need > 2 * w_path.stat().st_size + 2**20:
        raise BNError(f"checkpoint {cfg_path} describes a model of {need / 2**20:.0f} MB but {WEIGHTS} holds "
                      f"{w_path.stat().st_size / 2**20:.1f} MB")
    try:
        state = torch.load(w_path, map_location="cpu", weights_only=True)  # plain tensors only, never code
    except Exception as e:  # noqa: BLE001  empty, truncated, garbage or a pickle that is not plain tensors
        raise BNError(f"checkpoint {directory}: {WEIGHTS} is not a plain state_dict "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(state, dict) or {k: tuple(getattr(v, "shape", ())) for k, v in state.items()} != want:
        raise BNError(f"checkpoint {directory}: weights do not fit the model config in {CONFIG} "
                      f"({_misfit(state, want)}; written by {written_by(meta)}, read by bncompare "
                      f"{bncompare.__version__})")
    model = InContextTransformer(TransformerConfig(**mcfg))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise BNError(f"checkpoint {directory}: weights do not fit the model config ({detail})") from None
    return model.to(device).eval(), meta


def _misfit(state, want: dict) -> str:
    """What differs between loaded weights and the model's expected shapes, in a few words."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a state_dict"
    extra, missing = sorted(set(state) - set(want)), sorted(set(want) - set(state))
    if extra or missing:
        return f"unexpected {extra[:3]}, missing {missing[:3]}"
    k = next(k for k in want if tuple(getattr(state[k], "shape", ())) != want[k])
    return f"{k} has shape {list(getattr(state[k], 'shape', ()))}, the model needs {list(want[k])}"


# ----- cache ------------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("BNCOMPARE_CACHE") or Path.home() / ".cache" / "bncompare")


def check_writable(directory: Path) -> None:
    """``directory`` can take a checkpoint (created if needed), or a one-line BNError that says how to move it."""
    try:
        probe_writable(directory)
    except OSError as e:
        raise BNError(f"cannot write to the model cache {directory} ({e.strerror or e}); "
                      "set BNCOMPARE_CACHE or transformer.cache_dir to a writable folder") from None


def _read_entry(directory: Path, graph: Graph, key: str, steps: tuple[int, ...]):
    """((model, history), None) from the finished cache entry ``directory`` when all of it is sound: its model
    and the weights of every kept step; else (None, what is wrong)."""
    try:
        model, meta = load_checkpoint(directory, graph)
    except BNError as e:
        return None, " ".join(str(e).split())
    if meta.get("cache_key") != key or not isinstance(meta.get("history"), list):
        return None, f"{directory / CONFIG} belongs to other settings"
    for step in steps:  # the kept weights along training are part of the entry (the checkpoint estimators)
        folder = directory / STEPS / str(step)
        if not (folder / CONFIG).is_file() and not (folder / WEIGHTS).is_file():
            return None, f"the weights after {step} steps ({folder}) are missing"
        try:
            _, step_meta = load_checkpoint(folder, graph)
        except BNError as e:
            return None, " ".join(str(e).split())
        if step_meta.get("cache_key") != key or step_meta.get("step") != step:
            return None, f"{folder} belongs to another training"
    return (model, meta["history"]), None


def _cached(directory: Path, graph: Graph, key: str, steps: tuple[int, ...] = (), clear: bool = True):
    """(model, history) from the cache entry ``directory`` when all of it is sound, else None. A finished
    entry with any bad part (its model, a kept step missing or damaged, another training's files) is
    logged in one line and, with ``clear``, emptied, so that it is trained again from the start."""
    if not ((directory / CONFIG).is_file() or (directory / WEIGHTS).is_file()):
        return None  # nothing cached yet, or a training that was stopped: its snapshot resumes it
    found, problem = _read_entry(directory, graph, key, steps)
    if found is None and clear:
        log.warning("bad model cache entry %s (%s): deleting it and training again", directory, problem)
        _clear(directory)
    return found


def _clear(directory: Path) -> None:
    """Remove everything of a cache entry but its training lock."""
    for path in directory.iterdir():
        if path.name == TRAIN_LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Recipe:
    """How one kind of trained model is made: the key of a training, the training loop, a fresh model, and
    the cache's subfolder. The cache, its locks and the kept steps are the same for every kind."""

    fingerprint: Callable  # (graph, prior, cfg) -> sha256 hex
    train: Callable  # (graph, prior, cfg, progress=, run=) -> (model, history)
    build_model: Callable  # (graph, cfg) -> a fresh model
    folder: str


def recipe_of(cfg) -> Recipe:
    """The recipe a training config belongs to (its type says it), built from this module's names at each call."""
    if isinstance(cfg, GaussianTrainConfig):
        return Recipe(run_fingerprint_gaussian, train_gaussian, build_gaussian_model, "transformer_gaussian")
    if isinstance(cfg, ARTrainConfig):
        return Recipe(run_fingerprint_ar, train_ar, build_ar_model, "transformer_ar")
    return Recipe(run_fingerprint, train, build_model, "transformer")


def cache_entry(graph: Graph, prior, cfg: TrainConfig | GaussianTrainConfig, cache_dir=None) -> Path:
    """The folder of the cache entry for this training (it may not exist yet)."""
    recipe = recipe_of(cfg)
    return Path(cache_dir or default_cache_dir()) / recipe.folder / recipe.fingerprint(graph, prior, cfg)[:24]


def pending_entry(graph: Graph, prior, cfg, cache_dir=None) -> str | None:
    """The cache entry :func:`trained_model` would train into, or None when it holds the finished model of this
    training (read from its config.json only: the weights are checked when they are loaded)."""
    directory = cache_entry(graph, prior, cfg, cache_dir)
    try:
        meta = json.loads((directory / CONFIG).read_text())
    except (OSError, ValueError):
        return str(directory)
    done = isinstance(meta, dict) and meta.get("cache_key") == recipe_of(cfg).fingerprint(graph, prior, cfg)
    return None if done else str(directory)


def _lock_training(directory: Path) -> FileLock | None:
    """Hold ``directory``'s training lock (an flock the kernel drops if the holder dies), waiting while another
    process trains the same model; the held lock, or None on a file system without locks."""
    lock = FileLock(directory / TRAIN_LOCK, mode=0o644, fallback_to_soft=False)  # soft locks outlive a process
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process is training %s: waiting for it to finish", directory)
            lock.acquire()
    except (OSError, NotImplementedError):  # no locks here (some network file systems): train without one
        return None
    return lock


def _find_or_lock(directory: Path, graph: Graph, key: str, steps: tuple[int, ...] = ()):
    """(cached (model, history) or None, training lock or None). When the model is not cached, waits for any
    other process training it and looks again, so two jobs needing one model train it once. A bad entry is
    cleared under the lock only, so a process never deletes what another one is writing."""
    found = _cached(directory, graph, key, steps, clear=False)
    if found:
        return found, None
    check_writable(directory)  # before training, not after
    lock = _lock_training(directory)
    found = _cached(directory, graph, key, steps, clear=lock is not None)
    if found:
        if lock is not None:
            lock.release()
        return found, None
    return None, lock


STEPS = "steps"  # <entry>/steps/<k>/: the weights after k steps (see kept_steps), a checkpoint each
KEPT_FRACTIONS = (0.25, 0.5, 0.75)


def kept_steps(cfg: TrainConfig) -> tuple[int, ...]:
    """Where training keeps its weights: every ``eval_every`` steps (beside the held-out checks) and at 1/4, 1/2
    and 3/4 of the training, the last step aside (that is the model itself)."""
    every = range(cfg.eval_every, cfg.steps, cfg.eval_every) if cfg.eval_every > 0 else ()
    return tuple(sorted({*every, *(round(f * cfg.steps) for f in KEPT_FRACTIONS)} - {0, cfg.steps}))


def _keeper(directory: Path, graph: Graph, key: str):
    """Keeps the weights along training as checkpoints of their own (the cost-accuracy page draws them)."""
    def keep(step: int, model) -> None:
        save_checkpoint(directory / STEPS / str(step), model, {"cache_key": key, "graph": graph_signature(graph),
                                                               "step": step})
    return keep


def kept_step(cfg: TrainConfig, fraction: float) -> int:
    """The step, among those whose weights training keeps (:func:`kept_steps`), nearest ``fraction`` x steps."""
    if not 0 < float(fraction) <= 1:
        raise BNError(f"at_fraction must be in (0, 1], got {fraction}")
    kept = kept_steps(cfg)
    if not kept:
        raise BNError(f"training keeps no weights along the way with steps={cfg.steps}: train longer, or drop the "
                      "checkpoint estimators")
    return min(kept, key=lambda k: (abs(k - fraction * cfg.steps), k))


def model_at_step(graph: Graph, prior, cfg: TrainConfig, step: int, cache_dir=None) -> InContextTransformer:
    """The model of the cache entry for (graph, prior, cfg) as it was after ``step`` training steps."""
    directory = cache_entry(graph, prior, cfg, cache_dir)
    kept = sorted(int(p.name) for p in (directory / STEPS).glob("*") if p.name.isdigit())
    if step not in kept:
        raise BNError(f"no checkpoint after {step} training steps in {directory} (kept after {kept or 'none'}): "
                      f"delete {directory} to train it again")
    model, meta = load_checkpoint(directory / STEPS / str(step), graph)
    if meta.get("cache_key") != recipe_of(cfg).fingerprint(graph, prior, cfg):
        raise BNError(f"checkpoint {directory / STEPS / str(step)} belongs to another training; delete {directory}")
    return model


def trained_model(graph: Graph, prior, cfg=None, cache_dir=None, progress: bool = True, *, run: TrainRun | None = None):
    """A model trained on ``prior``'s tasks for ``graph`` -> (model, history); loads it when cached.

    ``cfg`` is a :class:`TrainConfig` (or its dict) for a discrete network, a :class:`GaussianTrainConfig`
    for a linear-Gaussian one, an :class:`ARTrainConfig` for an autoregressive process (:func:`recipe_of`).

    While it trains, the entry's folder holds the training log (``train_log.csv``) and resumable
    snapshots (``train_state.pt``, dropped once ``model.pt`` is written): a killed training
    continues from its last snapshot the next time. ``run`` sets how often (its ``folder`` is the
    entry's). A process that needs a model another process is training waits for it and loads it.
    Inside a ``torchrun`` process group every process calls this: rank 0 looks in the cache and
    writes the entry, all ranks train (data-parallel) or get rank 0's cached model.
    """
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or TrainConfig())
    recipe = recipe_of(cfg)
    key = recipe.fingerprint(graph, prior, cfg)
    directory = cache_entry(graph, prior, cfg, cache_dir)
    world = distributed.current()
    found, lock, error = None, None, None
    if world.is_main:
        try:
            found, lock = _find_or_lock(directory, graph, key, kept_steps(cfg))
        except BNError as e:
            if not world.distributed:
                raise
            error = str(e)
    if world.distributed:  # every rank learns what rank 0 found
        shared = distributed.broadcast_json({"error": error, "history": found[1] if found else None}, world)
        if shared["error"] is not None:
            raise BNError(shared["error"])
        if shared["history"] is not None:
            model = found[0] if found else recipe.build_model(graph, cfg)
            distributed.broadcast_module(model, world)
            return model.eval(), shared["history"]
    elif found:
        return found

    try:
        if world.is_main:
            log.info("training into %s (log: %s, resumable snapshots: %s)", directory, LOG_CSV, snapshot.STATE)
        run = replace(run or TrainRun(), folder=directory, keep_steps=kept_steps(cfg),
                      keep=_keeper(directory, graph, key))
        model, history = recipe.train(graph, prior, cfg, progress=progress, run=run)
        if world.is_main:
            meta = {"cache_key": key, "graph": graph_signature(graph), "prior": prior_signature(prior),
                    "train": cfg.to_dict(), "processes": world.size,
                    "code_version": code_version(TRAIN_PARTS), "history": history}
            save_checkpoint(directory, model, meta)
            snapshot.remove(directory)
    finally:
        if lock is not None:
            lock.release()
    distributed.barrier(world)  # the entry is complete when any rank returns
    return model, history
