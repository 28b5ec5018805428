"""The time estimate (bncompare.studies.timing) against what each cell and training really takes.

    python benchmarks/bench_time_estimate.py                        # the default tree-7 study
    python benchmarks/bench_time_estimate.py study=smoke
    python benchmarks/bench_time_estimate.py graph=hailfinder study=smoke only=mle only=trained
    python benchmarks/bench_time_estimate.py graph=hailfinder study=smoke context_lens=[2] only=constructed_mle

Measured 2026-12-03 on 2 cores shared with other jobs (load 5-12): the default tree-7 study (models cached)
3.9 min estimated, 731 s in run_study (load 9-12; 168 s on the quiet machine); graph=hailfinder study=smoke,
mle/naive/trained/pgmpy/Pyro: 44 s of cells estimated, 39 s measured, training 11 s against 21 s; the
constructed transformer's hailfinder cell 169 s against 139 s. 2026-12-04, after the transformers' lines were
measured again (query_slots, STEP_SLOT), ``graph=munin study=smoke only=trained_plain context_lens=[2]``: training
526 s estimated, 308 s measured; the cell 461 s estimated, 232 s measured (another job on the other core).

Takes the study command's overrides (``only=NAME``, repeatable, keeps some estimators). For every cell it
prints the estimate, the seconds ``evaluate_cell`` took and their ratio; for every estimator that prepares
a model, the training estimate and the seconds ``prepare`` took (training into the cache, or loading from it:
set BNCOMPARE_CACHE to an empty folder to time a training). Then the totals. Nothing is written to reports/.
The coefficients are meant to get the order of magnitude: ratios within 3x are what the table aims at.
"""
from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> None:
    from bncompare.studies import timing
    from bncompare.studies.evaluate import evaluate_cell
    from bncompare.studies.protocol import Episodes
    from bncompare.studies.run import compose
    from bncompare.studies.runner import build_estimators, plan_cells
    from bncompare.studies.spec import study_spec
    from bncompare.studies.truth import build_problem

    only = [a.removeprefix("only=") for a in argv if a.startswith("only=")]
    spec = study_spec(compose([a for a in argv if not a.startswith("only=")] + ["progress=false"]))
    graph, truth, prior = build_problem(spec)
    estimators = build_estimators(spec, graph, truth)
    cells = [(n, name) for n, name in plan_cells(spec) if not only or name in only]
    guess = timing.estimate(spec, graph, prior, estimators, cells, truth.per_episode_graphs)
    print(f"{graph.n_nodes} nodes, {sum(c * k for c, k in zip(graph.n_configs, graph.cards))} CPT parameters; "
          f"estimate {guess.total:.1f} s ({guess.total / 60:.2f} min)", flush=True)
    episodes, prepared, measured = Episodes(graph, truth, spec), set(), {"cells": 0.0, "training": 0.0}
    print(f"{'estimator':20s} {'kind':16s} {'N':>5s} {'estimate':>9s} {'measured':>9s} {'ratio':>6s}")
    for n, name in cells:
        e = spec.estimator(name)
        for need in filter(None, (name, e.mirrors)):
            if need not in prepared:
                prepared.add(need)
                t0 = time.perf_counter()
                estimators[need].prepare(graph, prior, spec.seed)
                dt = time.perf_counter() - t0
                if need in guess.training or dt > 1:
                    measured["training"] += dt
                    print(f"{'prepare ' + need:43s} {guess.training.get(need, 0):9.2f} {dt:9.2f}", flush=True)
        list(episodes.batches(n, spec.episodes, spec.batch_size))  # the draws are the same for every estimator
        est = timing.cell_seconds(spec, graph, e, n, truth.per_episode_graphs)
        t0 = time.perf_counter()
        evaluate_cell(episodes, estimators[name], e, n, estimators[e.mirrors] if e.mirrors else None)
        dt = time.perf_counter() - t0
        measured["cells"] += dt
        print(f"{name:20s} {e.kind:16s} {n:5d} {est:9.3f} {dt:9.3f} {est / dt:6.2f}", flush=True)
    total = sum(measured.values())
    print(f"cells: estimate {sum(guess.cells.values()):.1f} s, measured {measured['cells']:.1f} s; training: "
          f"estimate {sum(guess.training.values()):.1f} s, measured {measured['training']:.1f} s; "
          f"total ratio {guess.total / max(total, 1e-9):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
