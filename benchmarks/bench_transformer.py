"""Benchmark: a trained transformer against the Bayes-optimal posterior mean, MLE and the construction.

    python benchmarks/bench_transformer.py [--steps S] [--tasks 2000] [--threads 1]

Trains on tree-7 (binary, Dirichlet(1) rows) with the default TrainConfig (a
fixed number of steps), timing the ``train`` call by wall clock. Then, on
held-out CPT sets (a seed stream training never uses), reports the mean
conditional total variation between each estimator's predictive distribution
and the TRUE CPT row at the query's parent configuration, for every node of
query samples drawn from the true network, +- standard error over tasks.

Targets (printed PASS/MISS):
  1. trained within 10% of Bayes-optimal, averaged over the grid
     (mean over lengths of TV_trained / TV_bayes <= 1.10);
  2. trained below MLE at every length <= 20;
  3. training took at most 5 minutes.
Also prints the throughput (queries/s, one query = one target of one query
sample) of the constructed transformer next to the counting MLE.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bncompare.estimators.counting import MLE, DirichletPosterior  # noqa: E402
from bncompare.networks import DirichletPrior, get_graph, sample  # noqa: E402
from bncompare.transformer.construct import ConstructedTransformer  # noqa: E402
from bncompare.transformer.estimator import TransformerEstimator  # noqa: E402
from bncompare.transformer.train import TrainConfig, stream_seed, train  # noqa: E402

LENGTHS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
BENCH_STREAM = 1000  # held-out tasks: a seed stream the training never uses
TRAIN_BUDGET_S = 300.0


def tv_per_task(graph, est, cpts, contexts, queries) -> np.ndarray:
    """Mean TV to the true conditional over the queries and nodes of each task, shape (B,)."""
    est.fit(graph, contexts)
    probs = est.predict_proba(queries)
    batch = torch.arange(queries.shape[0])[:, None]
    tv = [0.5 * (p.cpu() - cpts[m][batch, graph.config_index(queries, m)]).abs().sum(-1) for m, p in enumerate(probs)]
    return torch.stack(tv, -1).mean((1, 2)).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig's)")
    ap.add_argument("--tasks", type=int, default=2000, help="held-out tasks per context length")
    ap.add_argument("--queries", type=int, default=10, help="query samples per task (each asks for all 7 nodes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    graph, prior = get_graph("tree-7"), DirichletPrior(1.0)
    cfg = TrainConfig(seed=args.seed)
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    print(f"tree-7, Dirichlet(1) rows; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"TrainConfig: {cfg.to_dict()}")

    t0 = time.perf_counter()
    model, history = train(graph, prior, cfg, progress=True)
    train_s = time.perf_counter() - t0
    print(f"trained {cfg.steps} steps in {train_s:.1f} s ({cfg.steps / train_s:.1f} steps/s), "
          f"{model.n_params()} parameters")

    estimators = {"trained": TransformerEstimator(model, batch_size=128), "bayes": DirichletPosterior(1.0), "mle": MLE()}
    estimators["constructed"] = ConstructedTransformer("mle")

    gen = torch.Generator().manual_seed(stream_seed(args.seed, BENCH_STREAM))
    res = {k: [] for k in estimators}
    print(f"\nmean conditional TV to the true CPT row, {args.tasks} held-out tasks x {args.queries} queries x 7 nodes "
          f"per length (+- s.e. over tasks)")
    print(f"{'N':>5} " + " ".join(f"{k:>19}" for k in estimators) + "   trained/bayes")
    for n in LENGTHS:
        cpts = prior.sample(graph, args.tasks, gen)
        contexts, queries = sample(graph, cpts, n, gen), sample(graph, cpts, args.queries, gen)
        row = []
        for k, est in estimators.items():
            tv = tv_per_task(graph, est, cpts, contexts, queries)
            res[k].append((tv.mean(), tv.std(ddof=1) / np.sqrt(len(tv))))
            row.append(f"{tv.mean():.5f} +- {res[k][-1][1]:.5f}")
        print(f"{n:>5} " + " ".join(f"{r:>19}" for r in row) + f"   {res['trained'][-1][0] / res['bayes'][-1][0]:.3f}")

    ratios = np.array([t[0] / b[0] for t, b in zip(res["trained"], res["bayes"])])
    means = {k: np.mean([m for m, _ in v]) for k, v in res.items()}
    print("grid average TV: " + ", ".join(f"{k} {v:.5f}" for k, v in means.items()))
    ok1 = ratios.mean() <= 1.10
    short = [i for i, n in enumerate(LENGTHS) if n <= 20]
    ok2 = all(res["trained"][i][0] < res["mle"][i][0] for i in short)
    ok3 = train_s <= TRAIN_BUDGET_S
    print(f"\n[{'PASS' if ok1 else 'MISS'}] trained within 10% of Bayes-optimal: mean TV ratio over the grid "
          f"{ratios.mean():.3f} (max {ratios.max():.3f} at N={LENGTHS[int(ratios.argmax())]}; "
          f"ratio of grid averages {means['trained'] / means['bayes']:.3f})")
    worst = max(short, key=lambda i: res["trained"][i][0] / res["mle"][i][0])
    print(f"[{'PASS' if ok2 else 'MISS'}] trained below MLE at every N <= 20: worst trained/MLE "
          f"{res['trained'][worst][0] / res['mle'][worst][0]:.3f} at N={LENGTHS[worst]}")
    print(f"[{'PASS' if ok3 else 'MISS'}] training time {train_s:.1f} s <= {TRAIN_BUDGET_S:.0f} s")

    # throughput: fit + predict on one batch of tasks at N = 100
    n, B = 100, min(args.tasks, 1000)
    cpts = prior.sample(graph, B, gen)
    contexts, queries = sample(graph, cpts, n, gen), sample(graph, cpts, args.queries, gen)
    n_queries = B * args.queries * graph.n_nodes
    print(f"\nthroughput at N={n}, {B} tasks x {args.queries} query samples x 7 targets = {n_queries} queries:")
    for k in ("constructed", "mle", "trained"):
        if k not in estimators:
            continue
        t = time.perf_counter()
        estimators[k].fit(graph, contexts).predict_proba(queries)
        dt = time.perf_counter() - t
        print(f"  {k:>12}: {n_queries / dt:12.0f} queries/s ({dt:.3f} s)")


if __name__ == "__main__":
    main()
