"""Seconds of the sample-fidelity measures on munin (1041 nodes, 5651 states): generation and pairwise TV.

    python benchmarks/bench_generate_scale.py              # from the repository root
    python benchmarks/bench_generate_scale.py --loop 1     # also the per-node public predict_proba loop
    python benchmarks/bench_generate_scale.py --network hailfinder --estimators trained --loop 1

What it measures, torch on one thread (``--threads``), wall clock of one run each:

- B = 32 contexts of N = 20 rows sampled from munin's bundled CPTs (seed 0); MLE and the naive prefix MLE
  fitted on them, and with ``--estimators trained`` a transformer of study=smoke's size (d_model 32, 2 heads,
  d_ff 64, the default recipe's mixture readout), untrained (seeded weights: generation costs the same);
- ``generate(est, 200, u=u)`` for each, with fixed float64 uniforms u of shape (32, 200, 1041);
- with ``--loop 1``: the same samples drawn by the public loop, one ``predict_proba(xs, [m])`` per node
  (what ``generate`` did before it validated once), on the first ``--loop-n`` samples; the table gives its
  seconds and whether its samples equal generate's (torch.equal);
- ``pairwise_tv(x, y, cards)`` on two (32, 200, 1041) sample sets (MLE's samples and fresh true samples).

Measured 2026-12-03, 2-core CPU shared with other jobs (load ~2.5), one thread, before (d7c1aa6) -> after:
MLE generate 23.8 s -> 0.65 s; naive generate 186.4 s -> 2.1 s (the same samples as the per-node loop);
pairwise_tv 20.6 s -> 19.5 s here, 12.8/11.9 s -> 11.3/10.7 s old/new alternated in one process (the same
value to the last bit); what remains is the one-hot product (~11.5 s of it, profiled), not the bookkeeping.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from bncompare.estimators import MLE, NaiveMLE  # noqa: E402
from bncompare.estimators.generate import generate  # noqa: E402
from bncompare.metrics.joint import pairwise_tv  # noqa: E402
from bncompare.networks import draw_categorical, load_network, sample, sample_with_uniforms  # noqa: E402
from bncompare.transformer import TrainConfig, TransformerEstimator  # noqa: E402
from bncompare.transformer.train import build_model  # noqa: E402


def timed(run, *args):
    start = time.perf_counter()
    out = run(*args)
    return time.perf_counter() - start, out


def per_node_loop(est, u):
    """Generation through the public interface, one predict_proba call per node (the old generate)."""
    x = torch.zeros(u.shape, dtype=torch.long)
    for m in range(u.shape[-1]):
        x[..., m] = draw_categorical(est.predict_proba(x, [m])[0], u[..., m])
    return x


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="munin")
    ap.add_argument("--contexts", type=int, default=32)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--loop", type=int, default=0, help="1: also time the per-node predict_proba loop")
    ap.add_argument("--loop-n", type=int, default=200, help="samples the per-node loop draws")
    ap.add_argument("--estimators", default="mle,naive")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t_load, net = timed(load_network, args.network)
    graph, B = net.graph, args.contexts
    cpts = [torch.as_tensor(c)[None].expand(B, -1, -1).contiguous() for c in net.cpts]
    gen = torch.Generator().manual_seed(0)
    contexts = sample(graph, cpts, args.rows, gen)
    u = torch.rand(B, args.samples, graph.n_nodes, generator=gen, dtype=torch.float64)
    u_true = torch.rand(B, args.samples, graph.n_nodes, generator=gen, dtype=torch.float64)
    print(f"{args.network}: {graph.n_nodes} nodes, {sum(graph.cards)} states (loaded in {t_load:.1f} s); "
          f"B={B} contexts of N={args.rows} rows, n={args.samples} samples, {torch.get_num_threads()} thread(s)")

    rows, samples = [], {}
    smoke_size = TrainConfig(d_model=32, n_head=2, d_ff=64)
    kinds = {"mle": MLE, "naive": NaiveMLE, "trained": lambda: TransformerEstimator(build_model(graph, smoke_size))}
    for name in args.estimators.split(","):
        t_fit, est = timed(kinds[name]().fit, graph, contexts)
        t_gen, x = timed(generate, est, args.samples, None, u)
        samples[name] = x
        rows.append((f"{name}: fit", t_fit, ""))
        rows.append((f"{name}: generate(est, {args.samples}, u=u)", t_gen, ""))
        if args.loop:
            k = min(args.loop_n, args.samples)
            t_loop, y = timed(per_node_loop, est, u[:, :k].contiguous())
            rows.append((f"{name}: per-node predict_proba loop, {k} samples", t_loop,
                         f"equal to generate: {torch.equal(y, x[:, :k])}"))
    x_true = sample_with_uniforms(graph, cpts, u_true)
    x_gen = samples.get("mle", x_true.flip(1))
    t_tv, tv = timed(pairwise_tv, x_gen, x_true, graph.cards)
    rows.append((f"pairwise_tv on two {tuple(x_true.shape)} sets", t_tv, f"mean TV {float(tv.mean())!r}"))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}")
    for what, sec, note in rows:
        print(f"{what:<{width}}  {sec:8.2f}  {note}")


if __name__ == "__main__":
    main()
