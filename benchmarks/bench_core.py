"""Speed of the core layer against pgmpy, measured in one run (a benchmark, not a test).

    python benchmarks/bench_core.py            # from the repository root
    python benchmarks/bench_core.py --full     # (c) with all 1000 pgmpy fits instead of 100 scaled

(a) sampling 100k rows from alarm: our vectorized sampler vs pgmpy ``model.simulate``
(b) MLE on alarm, 100k rows: our bincount MLE vs pgmpy ``DiscreteMLE``
(c) 1000 contexts x 200 rows from tree-7: one batched MLE call vs one pgmpy fit per context

Torch runs on ``--threads`` threads (default 1, the same one core pgmpy uses).

Each timing is the best of a few repeats (wall clock). Each comparison also
checks that both sides agree, so a fast wrong answer cannot pass.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bncompare.estimators import MLE  # noqa: E402
from bncompare.estimators.pgmpy_baselines import cpd_to_table, pgmpy_structure, quiet_pgmpy  # noqa: E402
from bncompare.networks import DirichletPrior, get_graph, load_network, sample, to_pgmpy  # noqa: E402

TARGETS = {"a": 15.0, "b": 4.0, "c": 200.0}


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def report(key: str, what: str, ours: float, theirs: float, note: str = "") -> bool:
    ratio = theirs / ours
    ok = ratio >= TARGETS[key]
    print(f"({key}) {what}: ours {ours:.4f} s | pgmpy {theirs:.4f} s{note} | "
          f"ratio {ratio:.1f}x | target >= {TARGETS[key]:g}x {'PASS' if ok else 'MISS'}")
    return ok


def bench_sampling(net, n: int) -> bool:
    g = net.graph
    cpts = net.cpt_batch()
    ours, x = best_time(lambda: sample(g, cpts, n, torch.Generator().manual_seed(0)), 3)
    model = to_pgmpy(net)
    with quiet_pgmpy():
        theirs, df = best_time(lambda: model.simulate(n, seed=0, show_progress=False), 2)
    df = df[list(g.names)]  # simulate's column order is arbitrary
    # same distribution: every state's marginal frequency, as a two-sample z-score
    worst = 0.0
    for m, name in enumerate(g.names):
        states = list(net.state_names[m])
        theirs_freq = df[name].astype(str).map({s: i for i, s in enumerate(states)}).value_counts(normalize=True)
        ours_freq = torch.bincount(x[0, :, m], minlength=g.cards[m]).double() / n
        for v in range(g.cards[m]):
            a, b = ours_freq[v].item(), theirs_freq.get(v, 0.0)
            pooled = (a + b) / 2
            if 0 < pooled < 1:
                worst = max(worst, abs(a - b) / np.sqrt(pooled * (1 - pooled) * 2 / n))
    n_states = sum(g.cards)
    print(f"    check: largest |z| of ours vs pgmpy marginal frequencies over {n_states} states = {worst:.2f} (expect < ~4)")
    return report("a", f"sample {g.n_nodes}-node alarm, {n} rows", ours, theirs), x


def bench_mle(net, x: torch.Tensor) -> bool:
    import pandas as pd

    g = net.graph
    ours, est = best_time(lambda: MLE().fit(g, x), 5)
    with quiet_pgmpy():
        from pgmpy.parameter_estimator import DiscreteMLE

        structure = pgmpy_structure(g)
        state_names = {name: list(range(d)) for name, d in zip(g.names, g.cards)}
        df = pd.DataFrame(x[0].numpy(), columns=list(g.names))
        theirs, fitted = best_time(lambda: DiscreteMLE(state_names=state_names).fit(structure, df), 3)
        err = max(
            np.abs(cpd_to_table(g, g.index(str(c.variable)), c) - est.cpts_[g.index(str(c.variable))][0].numpy()).max()
            for c in fitted.parameters_
        )
    print(f"    check: largest |ours - pgmpy| CPT entry = {err:.2e}")
    return report("b", f"MLE on alarm, {x.shape[1]} rows", ours, theirs)


def bench_many_contexts(n_contexts: int, n_rows: int, n_pgmpy: int) -> bool:
    import pandas as pd

    g = get_graph("tree-7")
    cpts = DirichletPrior(1.0).sample(g, n_contexts, torch.Generator().manual_seed(0))
    x = sample(g, cpts, n_rows, torch.Generator().manual_seed(1))
    ours, est = best_time(lambda: MLE().fit(g, x), 5)
    with quiet_pgmpy():
        from pgmpy.parameter_estimator import DiscreteMLE

        structure = pgmpy_structure(g)
        state_names = {name: list(range(d)) for name, d in zip(g.names, g.cards)}

        def pgmpy_loop():
            out = []
            for rows in x[:n_pgmpy].numpy():
                df = pd.DataFrame(rows, columns=list(g.names))
                out.append(DiscreteMLE(state_names=state_names).fit(structure, df).parameters_)
            return out

        measured, fits = best_time(pgmpy_loop, 1)
        err = max(
            np.abs(cpd_to_table(g, g.index(str(c.variable)), c) - est.cpts_[g.index(str(c.variable))][b].numpy()).max()
            for b, params in enumerate(fits) for c in params
        )
    print(f"    check: largest |ours - pgmpy| CPT entry over {n_pgmpy} contexts = {err:.2e}")
    theirs = measured * n_contexts / n_pgmpy
    note = "" if n_pgmpy == n_contexts else f" (measured {n_pgmpy} fits in {measured:.3f} s, scaled x{n_contexts // n_pgmpy})"
    return report("c", f"{n_contexts} contexts x {n_rows} rows, tree-7", ours, theirs, note)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run all 1000 pgmpy fits in (c) instead of 100 scaled")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: pgmpy runs on one core, and on a shared machine extra "
                             "threads wait on each other)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bncompare core benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    net = load_network("alarm")
    ok_a, x = bench_sampling(net, 100_000)
    ok_b = bench_mle(net, x)
    ok_c = bench_many_contexts(1000, 200, 1000 if args.full else 100)
    print("all targets met" if ok_a and ok_b and ok_c else "some targets missed")


if __name__ == "__main__":
    main()
