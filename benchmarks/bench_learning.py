"""Does the trained transformer learn? Ablations of the training recipe, and the compute each network needs.

    python benchmarks/bench_learning.py ablation                   # tree-7 and the Sachs structure, every lever
    python benchmarks/bench_learning.py ablation --graph sachs --levers recipe,paper
    python benchmarks/bench_learning.py budget                     # sachs, child, insurance, alarm: steps to 1.10
    python benchmarks/bench_learning.py probe --graph sachs --set model.mlp=relu --set steps=1500

Every run trains a fresh model (no cache) on the graph's structure with CPTs from
Dirichlet(1), the truth of ``graph.options.truth=prior``, and scores it on
held-out tasks (their own seed stream) at N = 1, 10, 100, 500: the figure is the
trained model's mean TV to the true CPT rows divided by that of the Bayes
posterior mean on the same tasks (1.00 is the limit), next to MLE's ratio.

A lever is a set of TrainConfig overrides applied to the recipe (the defaults
of ``TrainConfig`` with the ``--set`` settings), the model's own under ``model``
(``--set model.n_head=4``); ``paper`` is the recipe before this benchmark existed.
docs/levers.md lists the levers with their measured effect.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import torch

from bncompare.networks import DirichletPrior, get_graph, load_network
from bncompare.transformer.train import TrainConfig, train
from bncompare.transformer.trained import PAPER

LENGTHS = (1, 10, 100, 500)

# Each lever: what it changes relative to the recipe (TrainConfig defaults).
LEVERS = {
    "recipe": {},
    "paper": PAPER,  # the paper's plain architecture, as the study's trained_plain trains it
    "context_attention=full": dict(model=dict(context_attention="full")),
    "mlp=relu": dict(model=dict(mlp="relu")),
    "query_view=parents": dict(model=dict(query_view="parents")),
    "n_head=4": dict(model=dict(n_head=4)),
    "batch_size=64": dict(batch_size=64),
    "attn_scale=fixed": dict(model=dict(attn_scale="fixed")),
    "attn_scale=log_n": dict(model=dict(attn_scale="log_n")),
    "attention=softmax_1": dict(model=dict(attention="softmax_1")),
    "length_groups=1": dict(length_groups=1),
    "loss_weight_power=1": dict(loss_weight_power=1.0),
    "context_sampling=loguniform": dict(context_sampling="loguniform"),
    "output=logits": dict(model=dict(output="logits", match_scores=False)),
    "match_scores=false": dict(model=dict(match_scores=False)),
}


def with_settings(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """``cfg`` with TrainConfig overrides, the model's nested under ``model``."""
    rest = {k: v for k, v in overrides.items() if k != "model"}
    return replace(cfg, **rest, model=replace(cfg.model, **overrides.get("model", {})))


def structure(name: str):
    """A named family or the structure of a bundled real network."""
    try:
        return get_graph(name)
    except Exception:
        return load_network(name).graph


def parse_sets(items: list[str]) -> dict:
    """``key=value`` and ``model.key=value`` settings -> nested overrides, each value of its default's type."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        owner, name, into = TrainConfig(), key, out
        if key.startswith("model."):
            owner, name, into = owner.model, key.removeprefix("model."), out.setdefault("model", {})
        default = getattr(owner, name)
        into[name] = type(default)(value) if not isinstance(default, bool) else value.lower() in ("1", "true", "yes")
    return out


def log_eval(rec: dict) -> None:
    """One line per held-out check on stderr, so a long run shows where it is."""
    ratios = " ".join(f"{rec[f'eval_tv@{n}'] / rec[f'eval_bayes_tv@{n}']:.3f}" for n in LENGTHS)
    print(f"  step {rec['step']:6d}  {rec['seconds']:7.0f} s  trained/Bayes at N={list(LENGTHS)}: {ratios}",
          file=sys.stderr, flush=True)


def run(graph, cfg: TrainConfig) -> dict:
    """Train once; the held-out ratios at every evaluation step and the cost."""
    cfg = replace(cfg, eval_lengths=LENGTHS, eval_tasks=cfg.eval_tasks, device="auto")
    t0 = time.perf_counter()
    _, history = train(graph, DirichletPrior(1.0), cfg, progress=sys.stderr.isatty(), on_eval=log_eval)
    curve = [{"step": h["step"], "seconds": h["seconds"],
              **{n: h[f"eval_tv@{n}"] / h[f"eval_bayes_tv@{n}"] for n in LENGTHS},
              **{f"mle{n}": h[f"eval_mle_tv@{n}"] / h[f"eval_bayes_tv@{n}"] for n in LENGTHS}}
             for h in history if "eval_tv" in h]
    return {"curve": curve, "seconds": time.perf_counter() - t0, "steps": cfg.steps}


def row(label: str, result: dict) -> str:
    last = result["curve"][-1]
    ratios = " ".join(f"{last[n]:6.3f}" for n in LENGTHS)
    mle = " ".join(f"{last[f'mle{n}']:5.2f}" for n in LENGTHS)
    return f"{label:30s} {ratios}   {mle}   {result['seconds']:7.1f} {result['steps']:6d}"


HEADER = (f"{'lever':30s} " + " ".join(f"{'N=' + str(n):>6s}" for n in LENGTHS)
          + "   MLE/Bayes at N        seconds  steps")


def ablation(args) -> None:
    for name in args.graph:
        graph = structure(name)
        print(f"\n{name}: trained/Bayes held-out TV ({args.eval_tasks} tasks per N), then MLE/Bayes", flush=True)
        print(HEADER, flush=True)
        for lever in args.levers:
            # the lever goes on top of the --set settings, so it always shows its own change
            cfg = replace(with_settings(with_settings(TrainConfig(), args.sets), LEVERS[lever]),
                          eval_tasks=args.eval_tasks)
            cfg = replace(cfg, eval_every=cfg.steps)
            print(row(lever, run(graph, cfg)), flush=True)


def budget(args) -> None:
    """Train with held-out checks every ``--every`` steps; report when the worst ratio first drops to 1.10."""
    print(f"{'network':12s} {'worst ratio':>11s} {'steps':>7s} {'seconds':>8s}   curve (step: worst ratio over N)")
    for name in args.graph:
        graph = structure(name)
        cfg = replace(with_settings(TrainConfig(), args.sets), eval_tasks=args.eval_tasks, eval_every=args.every)
        result = run(graph, cfg)
        worst = [(c["step"] + 1, c["seconds"], max(c[n] for n in LENGTHS)) for c in result["curve"]]
        hit = next(((s, t) for s, t, w in worst if w <= 1.10), None)
        reached = f"{hit[0]:7d} {hit[1]:8.0f}" if hit else f"{'>' + str(cfg.steps):>7s} {'>' + format(worst[-1][1], '.0f'):>8s}"
        curve = ", ".join(f"{s}: {w:.2f}" for s, _, w in worst)
        print(f"{name:12s} {worst[-1][2]:11.3f} {reached}   {curve}", flush=True)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["ablation", "budget", "probe"])
    p.add_argument("--graph", default=None, help="comma-separated names (families or bundled networks)")
    p.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, from {list(LEVERS)}")
    p.add_argument("--set", dest="sets", action="append", default=[], help="TrainConfig override key=value, or model.key=value for a model setting")
    p.add_argument("--eval-tasks", type=int, default=512)
    p.add_argument("--every", type=int, default=500, help="budget: steps between held-out checks")
    args = p.parse_args()
    defaults = {"ablation": "tree-7,sachs", "budget": "sachs,child,insurance,alarm", "probe": "sachs"}
    args.graph = (args.graph or defaults[args.mode]).split(",")
    args.levers = ["recipe"] if args.mode == "probe" else args.levers.split(",")
    args.sets = parse_sets(args.sets)
    budget(args) if args.mode == "budget" else ablation(args)


if __name__ == "__main__":
    main()
