"""Data-parallel training over several processes (torch.distributed, started by ``torchrun``).

Each process (rank) holds a full copy of the model inside DistributedDataParallel,
which averages the gradients after every step; NCCL on GPUs, gloo on CPUs.

What a rank does differently from a single process, and nothing else:

- it draws its own task stream, seeded by the training seed AND its rank
  (``train.stream_seed``; rank 0 keeps the single-process stream);
- it computes its share of the GLOBAL batch (:func:`rank_groups`): ``batch_size``
  is the batch of one optimizer step summed over ranks, so a config means the same
  training (batch per step, schedule, task distribution) whatever the process
  count, only the tasks drawn differ; the model cache, keyed by the config, is
  shared between single-process studies and ``torchrun`` jobs.

One process (no ``torchrun``, or ``WORLD_SIZE=1``) is the plain loop: no process
group, no collective call, bit-for-bit the numbers of a run without this module.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bncompare.errors import BNError
from bncompare.runtime import resolve_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" when single-process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current() -> World:
    """The process group this process belongs to (set up by :func:`init_from_env`), or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


def init_from_env(device: str = "auto") -> World:
    """Join the process group ``torchrun`` describes in the environment (WORLD_SIZE, RANK, MASTER_ADDR...).

    NCCL when this run trains on CUDA, gloo otherwise. Without ``torchrun`` (no
    WORLD_SIZE, or 1) nothing is set up and this is a single process."""
    if dist.is_available() and dist.is_initialized():
        return current()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_available():
        raise BNError("this torch build has no torch.distributed: run with one process")
    use_cuda = resolve_device(device).type == "cuda"
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_of(device: str, world: World) -> torch.device:
    """This rank's device: ``cuda:<local rank>`` when training on CUDA, else the CPU."""
    d = resolve_device(device)
    if d.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return d


def rank_groups(batch_size: int, length_groups: int, rank: int, size: int) -> list[int]:
    """The context-length groups rank ``rank`` of ``size`` computes in one step (sequence counts).

    The global batch is split into ``max(length_groups, size)`` near-equal groups, one
    context length each, dealt round-robin to the ranks. One process gets every group,
    exactly the single-process split; with more ranks than length groups each rank
    gets one group (so a step then sees one length per rank)."""
    if batch_size < size:
        raise BNError(f"batch_size={batch_size} is the global batch, split over the processes: "
                      f"it must be at least the process count ({size})")
    k = max(length_groups, size)
    sizes = [batch_size // k + (i < batch_size % k) for i in range(k)]
    return sizes[rank::size]


# ----- collectives (each a no-op on one process) -------------------------------------------------

def _comm_device(world: World) -> torch.device:
    return torch.device("cuda", world.local_rank) if world.backend == "nccl" else torch.device("cpu")


def all_reduce(values: list[float], world: World, op: str = "sum") -> list[float]:
    """Elementwise sum (or max) of ``values`` over the ranks."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.cpu().tolist()


def broadcast_json(obj, world: World):
    """Rank 0's JSON-able ``obj`` on every rank (sent as UTF-8 bytes: nothing is unpickled)."""
    if not world.distributed:
        return obj
    device = _comm_device(world)
    data = json.dumps(obj).encode() if world.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(n, 0)
    buf = torch.zeros(int(n.item()), dtype=torch.uint8, device=device)
    if world.is_main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(buf.cpu().numpy().tobytes().decode())


def on_main(fn, world: World):
    """Run ``fn()`` on rank 0 only; every rank returns its (JSON-able) result, or raises the same BNError."""
    result, error = None, None
    if world.is_main:
        try:
            result = fn()
        except BNError as e:
            error = str(e)
    out = broadcast_json({"result": result, "error": error}, world)
    if out["error"] is not None:
        raise BNError(out["error"])
    return out["result"]


def broadcast_module(model: torch.nn.Module, world: World) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    if not world.distributed:
        return
    device = _comm_device(world)
    for t in model.state_dict().values():
        buf = t.detach().to(device).contiguous()
        dist.broadcast(buf, 0)
        t.copy_(buf.to(t.device))


def gather_states(state: torch.Tensor, world: World) -> torch.Tensor:
    """(size, n) stack of every rank's byte tensor ``state`` (e.g. a generator state), on the CPU."""
    if not world.distributed:
        return state[None].clone()
    device = _comm_device(world)
    parts = [torch.empty_like(state, device=device) for _ in range(world.size)]
    dist.all_gather(parts, state.to(device))
    return torch.stack([p.cpu() for p in parts])


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
