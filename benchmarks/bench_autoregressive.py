"""Seconds per context of the autoregressive estimators, batched over B prefixes (a benchmark, not a test).

    python benchmarks/bench_autoregressive.py            # from the repository root
    python benchmarks/bench_autoregressive.py --pyro 0   # without Pyro NUTS

B = 512 prefixes of d = 5 (gaussian law, spectral radius 0.95, sigma = 0.1) at t = 10 and 50: one batched
fit + predict per estimator, against a plain numpy loop over the contexts (``np.linalg.lstsq`` per context,
least squares), which also checks the batched least squares to 1e-8. Pyro NUTS is timed on ``--pyro``
contexts (one plate, 100 warmup + 100 draws) and reported per context. Best of ``--repeats`` (wall clock),
torch on ``--threads`` threads (default 1).
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

from bncompare.estimators.autoregressive import ARLeastSquares, ARProcrustes, ARRidge, OneStepGD  # noqa: E402
from bncompare.networks.autoregressive import ARPrior, ar_graph  # noqa: E402


def best_of(repeats: int, run, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def fit_predict(est, g, contexts, queries):
    return est.fit(g, contexts).predict(queries)


def numpy_loop(contexts: np.ndarray) -> np.ndarray:
    """Least squares one context at a time: the minimum-norm W (B, d, d) by np.linalg.lstsq."""
    return np.stack([np.linalg.lstsq(c[:-1], c[1:], rcond=None)[0].T for c in contexts])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, default=512)
    ap.add_argument("--d", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pyro", type=int, default=8, help="contexts for Pyro NUTS (0: skip)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, d, sigma = args.contexts, args.d, 0.1
    g, prior = ar_graph(d), ARPrior("gaussian", sigma, "fixed", 0.95)
    gen = torch.Generator().manual_seed(0)
    seqs = prior.sequences(prior.sample(g, B, gen), 51, gen)
    estimators = [ARLeastSquares(), ARRidge(sigma), ARRidge(0.0), ARProcrustes(), OneStepGD(horizon=50, step=0.1)]
    labels = ["ar_least_squares", "ar_ridge (sigma 0.1)", "ar_ridge (sigma 0)", "ar_procrustes", "ar_one_step_gd"]
    print(f"B = {B}, d = {d}, torch threads {args.threads}; seconds per context (best of {args.repeats})")
    print(f"{'estimator':<24}" + "".join(f"{'t=' + str(t):>12}{'x numpy':>9}" for t in (10, 50)))
    rows: dict[str, list[float]] = {}
    loop = []
    for t in (10, 50):
        ctx = seqs[:, :t]
        q = seqs[:, t : t + 1]
        W = numpy_loop(ctx.numpy())
        assert np.abs(ARLeastSquares().fit(g, ctx).transition_.numpy() - W).max() < 1e-8
        loop.append(best_of(args.repeats, numpy_loop, ctx.numpy()) / B)
        for est, label in zip(estimators, labels):
            rows.setdefault(label, []).append(best_of(args.repeats, fit_predict, est, g, ctx, q) / B)
    if args.pyro:
        from bncompare.estimators.autoregressive_pyro import ARPyroNUTS

        nuts = ARPyroNUTS(sigma, num_samples=100, warmup_steps=100, plate_size=args.pyro)
        rows[f"ar_pyro_nuts ({args.pyro} ctx)"] = [
            best_of(1, fit_predict, nuts, g, seqs[: args.pyro, :t], seqs[: args.pyro, t : t + 1]) / args.pyro
            for t in (10, 50)]
    for label, per in rows.items():
        print(f"{label:<24}" + "".join(f"{s:>12.2e}{s / base:>9.3g}" for s, base in zip(per, loop)))
    print(f"{'numpy lstsq loop':<24}" + "".join(f"{s:>12.2e}{1:>9.3f}" for s in loop))


if __name__ == "__main__":
    main()
