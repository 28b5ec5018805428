"""Resumable training: one file with everything the next step depends on.

``train_state.pt`` holds the model's weights, the optimizer's state (AdamW
moments and step counts), the step to continue from (the learning-rate schedule
is a function of the step, so that is the scheduler's whole state), every
rank's task-generator state (uint8 tensors), the history so far (JSON text)
and the training seconds so far. All of it is tensors, numbers and strings, so
it is read back with ``torch.load(..., weights_only=True)``: nothing is
unpickled. It is written atomically (a kill leaves the previous snapshot), and
names a fingerprint of the training config and the process count: a snapshot
of another training is never resumed.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from bncompare.errors import BNError
from bncompare.files import atomic_write

STATE = "train_state.pt"
FORMAT = 1
log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    step: int  # the next step to run
    model: dict  # state_dict
    optimizer: dict  # state_dict
    generators: torch.Tensor  # (processes, n) uint8: each rank's task-generator state
    history: list  # one record per finished step
    seconds: float  # training wall clock so far, evaluation excluded


def to_cpu(obj):
    """``obj`` with every tensor moved to the CPU (nested dicts, lists and tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def write_torch(path, obj) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, with the same bytes for the same ``obj``: torch names the
    zip's inner folder after the file it writes, so it is saved to memory first (inner name "archive")
    instead of to a uniquely named temporary file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save(directory, snap: Snapshot, fingerprint: str) -> Path:
    path = Path(directory) / STATE
    blob = {"format": FORMAT, "fingerprint": fingerprint, "processes": int(snap.generators.shape[0]),
            "step": int(snap.step), "seconds": float(snap.seconds), "model": to_cpu(snap.model),
            "optimizer": to_cpu(snap.optimizer), "generators": snap.generators.cpu(),
            "history": json.dumps(snap.history)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_torch(path, blob)
    return path


def load(directory, fingerprint: str, processes: int) -> Snapshot | None:
    """The snapshot in ``directory`` for this training, or None (none there, damaged, or another training's:
    logged). A snapshot of this training written by another process count is a BNError: its task
    streams belong to that count."""
    path = Path(directory) / STATE
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} training snapshot")
        snap = Snapshot(int(blob["step"]), blob["model"], blob["optimizer"], blob["generators"],
                        json.loads(blob["history"]), float(blob["seconds"]))
        if not (isinstance(snap.model, dict) and isinstance(snap.optimizer, dict) and isinstance(snap.history, list)
                and isinstance(snap.generators, torch.Tensor) and snap.generators.dtype == torch.uint8
                and snap.generators.dim() == 2 and len(snap.history) == snap.step):
            raise ValueError("unexpected contents")
    except Exception as e:  # noqa: BLE001  truncated, garbage, foreign: train from the start instead
        log.warning("ignoring the damaged training snapshot %s (%s): training from step 0", path,
                    " ".join(f"{type(e).__name__}: {e}".split())[:200])
        return None
    if blob.get("fingerprint") != fingerprint:
        log.warning("ignoring the training snapshot %s: it belongs to another training config", path)
        return None
    if snap.generators.shape[0] != processes:
        raise BNError(f"the training snapshot {path} (step {snap.step}) was written by {snap.generators.shape[0]} "
                      f"process(es) and this run has {processes}: resume it with the same process count "
                      f"(torchrun --nproc_per_node={snap.generators.shape[0]}), or delete it to train from step 0")
    return snap


def remove(directory) -> None:
    (Path(directory) / STATE).unlink(missing_ok=True)
