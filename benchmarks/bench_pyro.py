"""Pyro NUTS and SVI: one inference run per plate of 32 contexts vs one run per context (a benchmark, not a test).

    python benchmarks/bench_pyro.py            # from the repository root

The baseline is what a Pyro user writes for one data set: ``MCMC(NUTS(bn_model))``
(or ``SVI`` with an ``AutoDiagonalNormal`` guide) on the rows of one context,
once per context. bncompare's ``PyroNUTS`` / ``PyroSVI`` (the default study's
settings) put 32 contexts in one ``pyro.plate`` and run once. Each line gives
seconds per context for both and their ratio, and the mean absolute error of
the posterior-mean CPTs against the closed form (Dirichlet(1) posterior), so a
fast wrong answer cannot pass unnoticed. One run, wall clock, one thread.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pyro  # noqa: E402
import torch  # noqa: E402

from bncompare.estimators import DirichletPosterior, PyroNUTS, PyroSVI  # noqa: E402
from bncompare.networks import DirichletPrior, get_graph, sample  # noqa: E402
from bncompare.networks.pyro_model import bn_model, cpt_site  # noqa: E402
from bncompare.runtime import seeded  # noqa: E402

GRAPH = get_graph("tree-7")
PLATE, ONE_BY_ONE = 32, 4  # contexts fitted in one plate; contexts fitted one by one for the baseline


def per_context_nuts(x):
    from pyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(bn_model), num_samples=100, warmup_steps=100, disable_progbar=True)
    mcmc.run(GRAPH, alpha=1.0, data=x)
    draws = mcmc.get_samples()
    return [draws[cpt_site(n)].mean(0) for n in GRAPH.names]


def per_context_svi(x):
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoDiagonalNormal
    from pyro.optim import ClippedAdam

    pyro.clear_param_store()
    guide = AutoDiagonalNormal(bn_model)
    svi = SVI(bn_model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / 300)}), Trace_ELBO())
    for _ in range(300):
        svi.step(GRAPH, alpha=1.0, data=x)
    with torch.no_grad():
        draws = [guide(GRAPH, alpha=1.0, data=x) for _ in range(200)]
    return [torch.stack([d[cpt_site(n)] for d in draws]).mean(0) for n in GRAPH.names]


def error(tables, exact, k):
    return sum(float((t[:k] - e[:k]).abs().mean()) for t, e in zip(tables, exact)) / len(exact)


def main() -> None:
    torch.set_num_threads(1)
    print(f"tree-7, Dirichlet(1) rows; baseline: {ONE_BY_ONE} contexts one by one; bncompare: a plate of {PLATE}")
    print(f"{'method':6} {'N':>4} {'baseline s/ctx':>15} {'plate s/ctx':>12} {'speed-up':>9} "
          f"{'baseline err':>13} {'plate err':>10}")
    for n in (10, 100, 500):
        cpts = DirichletPrior(1.0).sample(GRAPH, PLATE, torch.Generator().manual_seed(n))
        x = sample(GRAPH, cpts, n, torch.Generator().manual_seed(n + 1))
        exact = DirichletPosterior(1.0).fit(GRAPH, x).cpts_
        for name, one, batched in (
            ("NUTS", per_context_nuts, PyroNUTS(1.0, num_samples=100, warmup_steps=100, max_tree_depth=5)),
            ("SVI", per_context_svi, PyroSVI(1.0, steps=300, lr=0.05, num_draws=200)),
        ):
            t0 = time.perf_counter()
            with seeded(0):
                base = [one(x[b]) for b in range(ONE_BY_ONE)]
            t_base = (time.perf_counter() - t0) / ONE_BY_ONE
            base = [torch.stack([b[m] for b in base]) for m in range(GRAPH.n_nodes)]
            t0 = time.perf_counter()
            plate = batched.fit(GRAPH, x).cpts_
            t_plate = (time.perf_counter() - t0) / PLATE
            print(f"{name:6} {n:>4} {t_base:>15.3f} {t_plate:>12.3f} {t_base / t_plate:>8.1f}x "
                  f"{error(base, exact, ONE_BY_ONE):>13.4f} {error(plate, exact, PLATE):>10.4f}", flush=True)


if __name__ == "__main__":
    main()
