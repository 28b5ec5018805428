"""Run by tests/test_scale_out.py under torchrun: one data-parallel training step per process.

    torchrun --standalone --nproc_per_node=2 tests/scripts/ddp_step.py OUT.pt '{"batch_size": 9, ...}'

Rank 0 saves the gradient DistributedDataParallel leaves in the model and the step's loss
over the global batch, for the test to compare with one process doing the same tasks.
"""
import json
import sys

import torch
from torch.nn.parallel import DistributedDataParallel

from bncompare.networks import DirichletPrior, get_graph
from bncompare.transformer import distributed
from bncompare.transformer.train import STREAM_TASKS, TrainConfig, build_model, stream_seed, train_step

out, cfg = sys.argv[1], TrainConfig(**json.loads(sys.argv[2]))
world = distributed.init_from_env("cpu")
graph, prior = get_graph("chain-3"), DirichletPrior(1.0)
model = build_model(graph, cfg)
net = DistributedDataParallel(model)
gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TASKS, world.rank))
groups = distributed.rank_groups(cfg.batch_size, cfg.length_groups, world.rank, world.size)
rec = train_step(net, graph, prior, cfg, gen, torch.device("cpu"), False, groups=groups, world_size=world.size)
(loss,) = distributed.all_reduce([rec["loss"]], world)
if world.is_main:
    grads = {name: p.grad for name, p in model.named_parameters()}
    torch.save({"grads": grads, "loss": torch.tensor(loss), "world": torch.tensor(world.size)}, out)
# Both ranks leave together: a rank destroying the gloo group while the other still works can abort
# ("terminate called without an active exception", seen once in CI).
distributed.barrier(world)
del net
distributed.shutdown()
