"""Where and how torch runs: device choice, a seeded global RNG, a single thread.

The OpenMP wait policy lives in ``bncompare/__init__.py``: it must be set before
torch is first imported, and importing any part of bncompare runs that file first.
"""
from __future__ import annotations

import contextlib

import torch

from bncompare.errors import BNError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is a user error."""
    if device not in DEVICES:
        raise BNError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BNError("device=cuda but CUDA is not available here; use device=auto or device=cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@contextlib.contextmanager
def single_thread():
    """Run with one torch thread: Pyro's tensors and the transformer's matrices are small, and
    intra-op threads cost more in synchronization than they save (Pyro: 10x; training: 2-3x measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int):
    """Run code that uses torch's global RNG (Pyro) seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as 0 inside the block (CPU only; restored after).

    Training sharpens attention until the weights of non-matching rows fall below 1e-38; x86
    cores handle such subnormal numbers in microcode, and one training run was seen slowing down
    15-fold after a few hundred steps. Zeroing them changes no result that matters.
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)
