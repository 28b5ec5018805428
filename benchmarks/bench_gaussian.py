"""Speed of batched least squares against pgmpy's linear-Gaussian fit, measured in one run (a benchmark, not a test).

    python benchmarks/bench_gaussian.py            # from the repository root
    python benchmarks/bench_gaussian.py --full     # (a) with all 1000 pgmpy fits instead of 50 scaled

(a) 1000 contexts x 200 rows of gaussian-tree-7 (tree-7's structure, NIG-prior parameters per context):
    one batched ``LeastSquares`` call vs one pgmpy ``LinearGaussianBayesianNetwork.fit`` per context
    (``LinearGaussianMLE(std_estimator="mle")``); pgmpy is timed on the first 50 contexts and scaled
    to 1000 unless ``--full``
(b) ecoli70 (46 nodes, read from pgmpy's wheel), 100k rows: ``LeastSquares`` vs one pgmpy fit

Torch runs on ``--threads`` threads (default 1, the same one core pgmpy uses). Each timing is the
best of a few repeats (wall clock). Each comparison also checks that both sides give the same
intercepts, weights and sigmas (to 1e-8), so a fast wrong answer cannot pass.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bncompare.estimators.gaussian import LeastSquares  # noqa: E402
from bncompare.estimators.gaussian_libraries import cpd_params  # noqa: E402
from bncompare.estimators.pgmpy_baselines import quiet_pgmpy  # noqa: E402
from bncompare.networks.families import tree  # noqa: E402
from bncompare.networks.gaussian import sample_gaussian  # noqa: E402
from bncompare.networks.graph import Graph  # noqa: E402
from bncompare.networks.priors import NIGPrior  # noqa: E402

TARGETS = {"a": 200.0, "b": 5.0}
AGREE = 1e-8


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def report(key: str, what: str, ours: float, theirs: float, gap: float, note: str = "") -> bool:
    ratio = theirs / ours
    ok = ratio >= TARGETS[key] and gap < AGREE
    print(f"    check: largest |ours - pgmpy| parameter = {gap:.2e} (must be < {AGREE:g})")
    print(f"({key}) {what}: ours {ours:.4f} s | pgmpy {theirs:.4f} s{note} | "
          f"ratio {ratio:.1f}x | target >= {TARGETS[key]:g}x {'PASS' if ok else 'MISS'}")
    return ok


def pgmpy_fit(graph: Graph, rows: np.ndarray):
    """One pgmpy fit of ``rows`` (N, M), as a user of pgmpy writes it."""
    import pandas as pd
    from pgmpy.models import LinearGaussianBayesianNetwork
    from pgmpy.parameter_estimator import LinearGaussianMLE

    model = LinearGaussianBayesianNetwork(graph.edges)
    model.add_nodes_from(graph.names)
    return model.fit(pd.DataFrame(rows, columns=list(graph.names)), estimator=LinearGaussianMLE(std_estimator="mle"))


def gap_to_pgmpy(graph: Graph, ours: list[torch.Tensor], models) -> float:
    """Largest difference of any intercept, weight or sigma, over the contexts pgmpy fitted."""
    return max(float(np.abs(cpd_params(graph, m, model.get_cpds(name)) - ours[m][b].numpy()).max())
               for b, model in enumerate(models) for m, name in enumerate(graph.names))


def bench_many_contexts(n_contexts: int, n_rows: int, n_pgmpy: int) -> bool:
    g = tree(7)
    g = Graph(g.names, (1,) * g.n_nodes, g.parents, "gaussian")
    gen = torch.Generator().manual_seed(0)
    x = sample_gaussian(g, NIGPrior().sample(g, n_contexts, gen), n_rows, gen)
    ours, est = best_time(lambda: LeastSquares().fit(g, x), 5)
    with quiet_pgmpy():
        pgmpy_fit(g, x[0].numpy())  # untimed: the first fit pays pgmpy's and sklearn's imports, which scaling would multiply
        measured, models = best_time(lambda: [pgmpy_fit(g, rows) for rows in x[:n_pgmpy].numpy()], 1)
    theirs = measured * n_contexts / n_pgmpy
    note = "" if n_pgmpy == n_contexts else f" (measured {n_pgmpy} fits in {measured:.3f} s, scaled x{n_contexts / n_pgmpy:g})"
    return report("a", f"{n_contexts} contexts x {n_rows} rows, gaussian-tree-7", ours, theirs,
                  gap_to_pgmpy(g, est.network_, models), note)


def ecoli70() -> tuple[Graph, list[torch.Tensor]]:
    """ecoli70 from pgmpy's wheel as our graph and a parameter batch with G = 1."""
    from pgmpy.utils import get_example_model

    with quiet_pgmpy(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_example_model("ecoli70")
    cpds = {str(c.variable): c for c in model.get_cpds()}
    names = [str(v) for v in model.nodes()]
    g = Graph.from_edges(names, [(str(u), str(v)) for u, v in model.edges()], variables="gaussian",
                         parent_order={n: [str(v) for v in cpds[n].evidence] for n in names})
    params = [torch.tensor([[float(cpds[n].beta[0]), *map(float, cpds[n].beta[1:]), float(cpds[n].std)]],
                           dtype=torch.float64) for n in g.names]
    return g, params


def bench_big_network(n_rows: int) -> bool:
    g, params = ecoli70()
    x = sample_gaussian(g, params, n_rows, torch.Generator().manual_seed(2))
    ours, est = best_time(lambda: LeastSquares().fit(g, x), 5)
    with quiet_pgmpy():
        rows = x[0].numpy()
        theirs, model = best_time(lambda: pgmpy_fit(g, rows), 3)
    return report("b", f"ecoli70 ({g.n_nodes} nodes), {n_rows} rows", ours, theirs,
                  gap_to_pgmpy(g, est.network_, [model]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run all 1000 pgmpy fits in (a) instead of 50 scaled")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: pgmpy runs on one core, and on a shared machine extra "
                             "threads wait on each other)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bncompare linear-Gaussian benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    ok_a = bench_many_contexts(1000, 200, 1000 if args.full else 50)
    ok_b = bench_big_network(100_000)
    print("all targets met" if ok_a and ok_b else "some targets missed")


if __name__ == "__main__":
    main()
