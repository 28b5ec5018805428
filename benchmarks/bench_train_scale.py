"""Seconds of one training step on a big network, and the memory it peaked at (a benchmark, not a test).

    python benchmarks/bench_train_scale.py munin trained paper        # from the repository root
    python benchmarks/bench_train_scale.py tree-7 trained --steps 40   # a small graph: steps per second
    python benchmarks/bench_train_scale.py munin paper --profile       # with the top of a cProfile

At the smoke study's sizes (d_model 32, 2 heads, d_ff 64, 4 query samples, contexts up to 20, batch 16), for
each recipe: ``trained`` (TrainConfig's defaults: the mixture readout, 4 length groups) and ``paper``
(bncompare.transformer.trained.PAPER: a logits head). Prints the mean wall clock of ``--steps`` steps (one
torch thread), the process's peak resident memory so far and the budget's training estimate
(studies/budget.py ``_training``), which should stay above it.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from bncompare.networks import get_graph  # noqa: E402
from bncompare.networks.priors import DirichletPrior  # noqa: E402
from bncompare.studies.budget import F64, _training  # noqa: E402
from bncompare.transformer.train import TrainConfig, build_model, make_optimizer, train_step  # noqa: E402
from bncompare.transformer.trained import PAPER  # noqa: E402

SMOKE = dict(steps=60, n_queries=4, n_context_max=20, warmup=10, eval_every=30, eval_tasks=16, eval_lengths=(2, 20))
SMOKE_MODEL = dict(d_model=32, n_head=2, d_ff=64)


def recipe_settings(recipe: str) -> dict:
    """TrainConfig settings (its model's under "model") of a recipe at the smoke sizes."""
    if recipe == "trained":
        return {**SMOKE, "model": SMOKE_MODEL}
    return {**{k: v for k, v in PAPER.items() if k != "model"}, **SMOKE, "model": {**PAPER["model"], **SMOKE_MODEL}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph")
    ap.add_argument("recipes", nargs="+", choices=["trained", "paper"])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    graph = get_graph(args.graph)
    print(f"{args.graph}: loaded in {time.perf_counter() - t:.1f} s, S {sum(graph.cards)}, M {graph.n_nodes}")
    prior, device = DirichletPrior(1.0), torch.device("cpu")
    cpt = sum(c * k for c, k in zip(graph.n_configs, graph.cards)) * F64
    node = max(c * k for c, k in zip(graph.n_configs, graph.cards)) * F64
    for recipe in args.recipes:
        settings = recipe_settings(recipe)
        cfg = TrainConfig(**settings)
        model, gen = build_model(graph, cfg), torch.Generator().manual_seed(0)
        opt = make_optimizer(model, cfg)
        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        for _ in range(args.steps):
            opt.zero_grad(set_to_none=True)
            train_step(model, graph, prior, cfg, gen, device, False)
            opt.step()
        if prof:
            prof.disable()
        seconds = (time.perf_counter() - t) / args.steps
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        estimate = _training({**settings, "model": settings["model"]}, graph, cpt, node)[1]
        print(f"{recipe}: {seconds:.3f} s/step ({1 / seconds:.2f} steps/s), peak RSS so far {rss / 2**30:.2f} GB, "
              f"training estimate {estimate / 2**30:.2f} GB", flush=True)
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
