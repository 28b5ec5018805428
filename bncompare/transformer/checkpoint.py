"""Checkpoints and the trained-model cache.

A checkpoint is a directory with two files:

- ``model.pt``: the model's ``state_dict`` only (plain tensors), read back with
  ``torch.load(..., weights_only=True)``, so loading never runs pickled code;
- ``config.json``: the model config, plus whatever ``meta`` the caller adds
  (train config, graph signature, prior, history) and the sha256 of
  ``model.pt``.

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
A bad entry is reported in one log line and trained again; an unwritable cache is
reported before training, not after.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import torch

from bncompare.codeversion import TRAIN_PARTS, code_version
from bncompare.errors import BNError
from bncompare.files import atomic_write, probe_writable
from bncompare.networks.graph import Graph
from bncompare.transformer.model import InContextTransformer, TransformerConfig
from bncompare.transformer.train import TRAIN_CODE_VERSION, TrainConfig, train

WEIGHTS, CONFIG = "model.pt", "config.json"
log = logging.getLogger(__name__)


# ----- signatures -------------------------------------------------------------

def graph_signature(graph: Graph) -> dict:
    return {"names": list(graph.names), "cards": list(graph.cards), "parents": [list(p) for p in graph.parents]}


def prior_signature(prior) -> dict:
    if not is_dataclass(prior):
        raise BNError(f"cannot describe prior of type {type(prior).__name__}: use DirichletPrior or UniformRangePrior")
    return {"kind": type(prior).__name__, **asdict(prior)}


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
    atomic_write(directory / WEIGHTS, lambda tmp: torch.save(state, tmp))
    config = {"model": model.cfg.to_dict(), "weights_sha256": _sha256(directory / WEIGHTS), **(meta or {})}
    text = json.dumps(config, indent=1, allow_nan=True).encode()
    atomic_write(directory / CONFIG, lambda tmp: tmp.write_bytes(text))
    return directory


def load_checkpoint(directory, graph: Graph | None = None, device="cpu") -> tuple[InContextTransformer, dict]:
    """Read a checkpoint -> (model in eval mode, meta). ``graph`` checks it was trained for that network."""
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
    known = {f.name for f in fields(TransformerConfig)}
    mcfg = meta.get("model")
    if not isinstance(mcfg, dict) or set(mcfg) - known or not {"d_in", "d_out"} <= set(mcfg):
        raise BNError(f"checkpoint {cfg_path} has no valid 'model' config (fields {sorted(known)})")
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
        raise BNError(f"checkpoint {directory}: weights do not fit the model config in {CONFIG}")
    model = InContextTransformer(TransformerConfig(**mcfg))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise BNError(f"checkpoint {directory}: weights do not fit the model config ({detail})") from None
    return model.to(device).eval(), meta


# ----- cache ------------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("BNCOMPARE_CACHE") or Path.home() / ".cache" / "bncompare")


def cache_key(graph: Graph, prior, cfg) -> str:
    """sha256 of everything that determines the trained model: graph, prior, the full TrainConfig (defaults
    included) and the training code's version (package version + a hash of the code it runs, so an upgrade or a
    fix retrains). The device is left out: a model trained on a GPU serves CPU runs too."""
    train_cfg = cfg.to_dict()
    train_cfg.pop("device", None)
    blob = {"graph": graph_signature(graph), "prior": prior_signature(prior), "train": train_cfg,
            "code": [TRAIN_CODE_VERSION, code_version(TRAIN_PARTS)]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def check_writable(directory: Path) -> None:
    """``directory`` can take a checkpoint (created if needed), or a one-line BNError that says how to move it."""
    try:
        probe_writable(directory)
    except OSError as e:
        raise BNError(f"cannot write to the model cache {directory} ({e.strerror or e}); "
                      "set BNCOMPARE_CACHE or transformer.cache_dir to a writable folder") from None


def trained_model(graph: Graph, prior, cfg=None, cache_dir=None, progress: bool = True):
    """A model trained on ``prior``'s tasks for ``graph`` -> (model, history); loads it when cached."""
    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or TrainConfig())
    key = cache_key(graph, prior, cfg)
    directory = Path(cache_dir or default_cache_dir()) / "transformer" / key[:24]
    if (directory / CONFIG).is_file() or (directory / WEIGHTS).is_file():
        try:
            model, meta = load_checkpoint(directory, graph)
            history = meta.get("history", [])
            if meta.get("cache_key") == key and isinstance(history, list):
                return model, history
            log.warning("model cache entry %s belongs to other settings: training again", directory)
        except BNError as e:  # a damaged or foreign entry: train again and overwrite it
            log.warning("bad model cache entry (%s): training again", " ".join(str(e).split()))
    check_writable(directory)  # before training, not after
    model, history = train(graph, prior, cfg, progress=progress)
    meta = {"cache_key": key, "graph": graph_signature(graph), "prior": prior_signature(prior),
            "train": cfg.to_dict(), "code_version": code_version(TRAIN_PARTS), "history": history}
    save_checkpoint(directory, model, meta)
    return model, history
