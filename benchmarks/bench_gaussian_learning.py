"""Does the trained Gaussian transformer reach the Bayes posterior predictive? One run, a table per N.

    python benchmarks/bench_gaussian_learning.py                    # gaussian-tree-7, the default training
    python benchmarks/bench_gaussian_learning.py --graph ecoli70    # ecoli70, its preset
    python benchmarks/bench_gaussian_learning.py --set output=student_t --set n_layer=2   # an alternative

Protocol: truth drawn from NIGPrior() (mean 0, precision 1, a 3, b 2) per episode; for each context length
N in 1, 2, 5, 10, 20, 50, 100, 200, 500 the same episodes (contexts and query rows) go to every estimator;
the figure is the mean over nodes, queries and episodes of KL(true conditional || prediction). References,
computed here: the exact NIG posterior predictive on the true parents (Bayes, a Student-t) and least
squares on the parents with sigma^2 = RSS / N (MLE; infinite where a context is too short). Targets:
trained / Bayes <= 1.10 at every N >= 5 (ecoli70: N >= 10) and trained < MLE at every N <= 50.
The model trains into (or loads from) ``--cache`` (default: a fresh temporary folder, so it trains).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from bncompare.networks.families import tree  # noqa: E402
from bncompare.networks.gaussian import sample_gaussian, true_conditional  # noqa: E402
from bncompare.networks.graph import Graph  # noqa: E402
from bncompare.networks.priors import NIGPrior  # noqa: E402
from bncompare.transformer.train_gaussian import (  # noqa: E402
    kl_normal_to_prediction,
    least_squares_predictive,
    nig_predictive,
    preset,
)
from bncompare.transformer.trained_gaussian import TrainedGaussianTransformer  # noqa: E402

LENGTHS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def gaussian_tree() -> Graph:
    """The structure of families.tree(7) with real-valued nodes."""
    t = tree(7)
    edges = [(t.names[p], t.names[m]) for m in range(t.n_nodes) for p in t.parents[m]]
    return Graph.from_edges(list(t.names), edges, variables="gaussian")


def ecoli70_graph() -> Graph:
    """ecoli70's structure (pgmpy's bundled copy of bnlearn's network) with real-valued nodes."""
    from pgmpy.utils import get_example_model

    model = get_example_model("ecoli70")
    return Graph.from_edges(sorted(model.nodes()), sorted(model.edges()), variables="gaussian")


def evaluate(graph: Graph, est, prior, episodes: int, queries: int, seed: int = 1234, lengths=LENGTHS) -> list[dict]:
    """Per N: the mean KL of the trained model, Bayes and MLE on the same episodes."""
    rows = []
    for n in lengths:
        gen = torch.Generator().manual_seed(seed + n)
        params = prior.sample(graph, episodes, gen)
        ctx = sample_gaussian(graph, params, n, gen)
        qry = sample_gaussian(graph, params, queries, gen)
        preds = est.fit(graph, ctx).predict(qry)
        kl = {"trained": [], "bayes": [], "mle": []}
        for m in range(graph.n_nodes):
            true = true_conditional(graph, params, qry, m)
            kl["trained"].append(kl_normal_to_prediction(true[..., 1], true[..., 2], preds[m]))
            kl["bayes"].append(kl_normal_to_prediction(true[..., 1], true[..., 2], nig_predictive(graph, prior, ctx, qry, m)))
            kl["mle"].append(kl_normal_to_prediction(true[..., 1], true[..., 2], least_squares_predictive(graph, ctx, qry, m)))
        row = {"N": n, **{k: float(torch.stack(v).mean()) for k, v in kl.items()}}
        row["ratio"] = row["trained"] / row["bayes"]
        rows.append(row)
    return rows


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", choices=("tree", "ecoli70"), default="tree")
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="the training's seed (prepare(graph, prior, seed))")
    ap.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training setting")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the training's progress lines
    graph = gaussian_tree() if args.graph == "tree" else ecoli70_graph()
    cfg = preset("default" if args.graph == "tree" else "large")
    for item in args.set:
        k, v = item.split("=", 1)
        cfg[k] = parse_value(v)
    prior = NIGPrior()
    with tempfile.TemporaryDirectory() as tmp:
        est = TrainedGaussianTransformer(cfg, cache_dir=args.cache or tmp, progress=True)
        est.prepare(graph, prior, seed=args.seed)
        seconds = est.history_[-1].get("train_seconds", float("nan")) if est.history_ else float("nan")
        rows = evaluate(graph, est, prior, args.episodes, args.queries)
    first = 5 if args.graph == "tree" else 10
    print(f"graph {args.graph} ({graph.n_nodes} nodes), seed {args.seed}, settings {cfg}")
    print(f"training seconds: {seconds:.0f} (this run; 0 when loaded from the cache)")
    print(f"{'N':>5} {'trained':>10} {'bayes':>10} {'mle':>10} {'trained/bayes':>14} {'< mle':>6}")
    ok = True
    for r in rows:
        below = r["trained"] < r["mle"]
        ok &= (r["N"] < first or r["ratio"] <= 1.10) and (r["N"] > 50 or below)
        mle = f"{r['mle']:10.4g}" if math.isfinite(r["mle"]) else f"{'inf':>10}"
        print(f"{r['N']:>5} {r['trained']:10.4g} {r['bayes']:10.4g} {mle} {r['ratio']:14.3f} {str(below):>6}")
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
