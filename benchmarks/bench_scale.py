"""How each estimator's cost grows from asia to munin, measured in one run (a benchmark, not a test).

    python benchmarks/bench_scale.py                                  # the default networks and kinds
    python benchmarks/bench_scale.py --networks asia,alarm --kinds mle,naive,trained
    python benchmarks/bench_scale.py --max-seconds 20 --csv docs/_static/scale.csv --plot docs/_static/scale.png

For each bundled network (its true CPTs; contexts and queries sampled from it) and each estimator kind:
seconds per context for ``fit`` and for ``predict_proba`` (every node of ``--queries`` query rows) at
N = 10 and 500 context rows, the peak memory the measurement added, and for ``trained`` the seconds per
training step at the smoke transformer's size (the model it then predicts with is briefly trained: its
cost, not its accuracy, is measured). Then the growth exponents: the least-squares slope of
log(seconds per context) against log(CPT parameters) and against log(nodes), per kind.

Each (network, kind) runs in a forked child: its peak resident memory is its own (``ru_maxrss`` minus
the size at the fork), a child over ``--max-gb`` fails its allocation instead of the machine, and one
over ``--max-seconds`` is stopped. A kind that ran out of time or memory is not tried on networks at
least as large in both nodes and parameters (listed "skipped (> budget)"). The slow library baselines (pgmpy, Pyro) fit a subset of the
contexts (``--library-contexts``): the figure is per context either way.

Torch runs on one thread (the study's trained-model setting; the machine is shared).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning idle threads distort timings
import csv
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bncompare.bundled import discrete_names  # noqa: E402
from bncompare.networks import DirichletPrior, load_network, sample  # noqa: E402
from bncompare.networks.listing import bundled_size  # noqa: E402
from bncompare.studies.registry import build  # noqa: E402

NETWORKS = "asia,sachs,child,alarm,insurance,hepar2,hailfinder,andes,pigs,water,link,munin1,munin"
LENGTHS = (10, 500)
# kind -> (registry kind, constructor settings, a library baseline: fits a subset of the contexts).
# The Pyro budgets are the smoke study's (tiny): the cost per step or draw, not the posterior, is measured.
KINDS = {
    "mle": ("mle", {}, False),
    "dirichlet": ("dirichlet", {"alpha": 1.0}, False),
    "bdeu": ("bdeu", {"ess": 1.0}, False),
    "naive": ("naive", {}, False),
    "bayes_median": ("dirichlet_median", {"alpha": 1.0}, False),
    "pgmpy_mle": ("pgmpy_mle", {}, True),
    "pgmpy_bayes": ("pgmpy_bayes", {"prior_type": "BDeu", "equivalent_sample_size": 1.0}, True),
    "pyro_conjugate": ("pyro_conjugate", {"alpha": 1.0}, True),
    "pyro_svi": ("pyro_svi", {"alpha": 1.0, "steps": 20, "lr": 0.05, "guide": "diag_normal", "num_draws": 20}, True),
    "pyro_nuts": ("pyro_nuts", {"alpha": 1.0, "num_samples": 4, "warmup_steps": 4, "max_tree_depth": 5}, True),
    "constructed": ("constructed", {"mode": "mle"}, False),
    "trained": ("trained", {}, False),
}
# the smoke transformer (studies/conf/transformer/smoke.yaml), trained a few steps
SMOKE_MODEL = {"d_model": 32, "n_head": 2, "d_ff": 64}
TRAIN_STEPS = 3
REPEATS, REPEAT_BELOW_S = 5, 0.5  # a fast measurement is the best of up to 5 (the machine is shared)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def trained_estimator(graph, args, out):
    """A smoke-size model trained ``TRAIN_STEPS`` steps (seconds per step into ``out``), as an estimator."""
    from bncompare.transformer.estimator import TransformerEstimator
    from bncompare.transformer.train import TrainConfig, build_model, lr_at, make_optimizer, train_step

    cfg = TrainConfig(steps=100, warmup=10, n_queries=4, eval_every=0, **SMOKE_MODEL)
    model = build_model(graph, cfg)
    opt = make_optimizer(model, cfg)
    gen, prior = torch.Generator().manual_seed(0), DirichletPrior(1.0)
    times = []
    for step in range(TRAIN_STEPS):
        t = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        train_step(model, graph, prior, cfg, gen, torch.device("cpu"), False)
        opt.step()
        times.append(time.perf_counter() - t)
    out["train_s_per_step"] = float(np.median(times))
    out["train_batch"] = cfg.batch_size
    model.eval()
    return TransformerEstimator(model, batch_size=cfg.batch_size)


def measure(kind: str, graph, contexts: torch.Tensor, queries: torch.Tensor, args, conn) -> None:
    """The child: fit and predict at each length, one message per finished piece (a timeout keeps the rest)."""
    torch.set_num_threads(1)
    start = rss_mb()
    limit = int((args.max_gb * 1024 + start) * 2**20 * 4)  # address space: generous, torch maps more than it uses
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    registry_kind, params, _ = KINDS[kind]
    try:
        extra = {}
        if kind == "trained":
            est = trained_estimator(graph, args, extra)
            conn.send(("train", extra["train_s_per_step"], peak_mb() - start))
        for n in LENGTHS:
            if kind != "trained":
                est = build(registry_kind, params)
                est.prepare(graph, DirichletPrior(1.0))
            B, fits, preds = contexts.shape[0], [], []
            while not fits or (len(fits) < REPEATS and sum(fits) + sum(preds) < REPEAT_BELOW_S):
                t0 = time.perf_counter()
                est.fit(graph, contexts[:, :n])
                t1 = time.perf_counter()
                est.predict_proba(queries)
                fits.append(t1 - t0)
                preds.append(time.perf_counter() - t1)
            conn.send(("length", n, min(fits) / B, min(preds) / B, peak_mb() - start))
    except (MemoryError, RuntimeError) as e:
        if "memory" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        conn.send(("memory", str(e).splitlines()[0][:80]))
    conn.close()


def run_one(kind: str, graph, contexts, queries, args) -> dict:
    """Fork a child for one (network, kind); its messages until it ends or the budget is spent."""
    parent, child = mp.get_context("fork").Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=measure, args=(kind, graph, contexts, queries, args, child))
    proc.start()
    child.close()
    row, deadline = {"status": "ok"}, time.perf_counter() + args.max_seconds * (len(LENGTHS) + (kind == "trained"))
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            row["status"] = "skipped (> budget)"
            proc.kill()  # our own child, by its handle
            break
        if parent.poll(min(left, 1.0)):
            try:
                msg = parent.recv()
            except EOFError:
                break
            if msg[0] == "train":
                row["train_s_per_step"], row["peak_mb"] = msg[1], msg[2]
            elif msg[0] == "length":
                _, n, fit, pred, peak = msg
                row[f"fit@{n}"], row[f"predict@{n}"], row["peak_mb"] = fit, pred, peak
            elif msg[0] == "memory":
                row["status"] = f"skipped (> {args.max_gb:g} GB)"
        elif not proc.is_alive() and not parent.poll():
            break
    proc.join()
    if proc.exitcode not in (0, None) and row["status"] == "ok":
        row["status"] = f"failed (exit {proc.exitcode})"
    return row


def warm_up(kinds: list[str], args) -> None:
    """One tiny fit and predict of every kind on asia in this process, so the children (forks) start warm:
    lazy imports and first-call set-up are not timed on the first network."""
    net = load_network("asia")
    x = sample(net.graph, net.cpt_batch(), 14, torch.Generator().manual_seed(0)).reshape(1, 14, -1)
    for kind in kinds:
        est = trained_estimator(net.graph, args, {}) if kind == "trained" else build(KINDS[kind][0], KINDS[kind][1])
        est.prepare(net.graph, DirichletPrior(1.0)) if kind != "trained" else None
        est.fit(net.graph, x[:, :10]).predict_proba(x[:, 10:])


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than three points or one x)."""
    pts = [(np.log(x), np.log(y)) for x, y in zip(xs, ys) if y and y > 0]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2:
        return None
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def fmt(v, spec=".2e") -> str:
    return "-" if v is None else format(v, spec)


def cost(row: dict, n: int) -> float | None:
    """Seconds per context of one fit and one predict at length n."""
    fit, pred = row.get(f"fit@{n}"), row.get(f"predict@{n}")
    return None if fit is None or pred is None else fit + pred


def print_table(rows: list[dict]) -> None:
    print(f"\n{'network':11s} {'nodes':>5s} {'params':>7s}  {'kind':15s} {'fit@10':>8s} {'pred@10':>8s} "
          f"{'fit@500':>8s} {'pred@500':>8s} {'peak MB':>8s} {'s/step':>8s}  status")
    for r in rows:
        print(f"{r['network']:11s} {r['nodes']:5d} {r['parameters']:7d}  {r['kind']:15s} "
              f"{fmt(r.get('fit@10')):>8s} {fmt(r.get('predict@10')):>8s} {fmt(r.get('fit@500')):>8s} "
              f"{fmt(r.get('predict@500')):>8s} {fmt(r.get('peak_mb'), '.0f'):>8s} "
              f"{fmt(r.get('train_s_per_step'), '.3f'):>8s}  {r['status']}")


def exponents(rows: list[dict], kinds: list[str]) -> list[dict]:
    out = []
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        e = {"kind": kind}
        for n in LENGTHS:
            ys = [cost(r, n) for r in mine]
            e[f"params@{n}"] = slope([r["parameters"] for r in mine], ys)
            e[f"nodes@{n}"] = slope([r["nodes"] for r in mine], ys)
        e["networks"] = sum(cost(r, LENGTHS[-1]) is not None for r in mine)
        if kind == "trained":  # and its training step
            steps = [r.get("train_s_per_step") for r in mine]
            e["train_step@params"] = slope([r["parameters"] for r in mine], steps)
            e["train_step@nodes"] = slope([r["nodes"] for r in mine], steps)
        out.append(e)
    return out


def print_exponents(exps: list[dict]) -> None:
    print("\ngrowth exponents: slope of log(fit + predict seconds per context) against log(parameters), "
          "log(nodes)")
    print(f"{'kind':15s} {'params@10':>9s} {'params@500':>10s} {'nodes@10':>9s} {'nodes@500':>9s}  networks")
    for e in exps:
        print(f"{e['kind']:15s} {fmt(e['params@10'], '.2f'):>9s} {fmt(e['params@500'], '.2f'):>10s} "
              f"{fmt(e['nodes@10'], '.2f'):>9s} {fmt(e['nodes@500'], '.2f'):>9s}  {e['networks']}")
        if "train_step@nodes" in e:
            print(f"{'  training step':15s} {fmt(e['train_step@params'], '.2f'):>9s} {'':>10s} "
                  f"{fmt(e['train_step@nodes'], '.2f'):>9s}")


def markdown(rows: list[dict], kinds: list[str]) -> str:
    """The table the docs page shows: fit + predict milliseconds per context at N = 500, one column per kind."""
    nets = list(dict.fromkeys(r["network"] for r in rows))
    by = {(r["network"], r["kind"]): r for r in rows}
    lines = ["| network | nodes | parameters | " + " | ".join(kinds) + " | trained s/step |",
             "|---|---:|---:|" + "---:|" * (len(kinds) + 1)]
    for net in nets:
        first = next(r for r in rows if r["network"] == net)
        cells = []
        for kind in kinds:
            r = by.get((net, kind), {})
            c = cost(r, 500) if r else None
            cells.append(f"{c * 1e3:.3g}" if c is not None else ("-" if r.get("status", "ok") == "ok" else "over"))
        step = by.get((net, "trained"), {}).get("train_s_per_step")
        lines.append(f"| {net} | {first['nodes']} | {first['parameters']} | " + " | ".join(cells)
                     + f" | {fmt(step, '.2f')} |")
    return "\n".join(lines)


def plot(rows: list[dict], kinds: list[str], path: str) -> None:
    """Two log-log panels of seconds per context (N = 500) against parameters and against nodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
    colors = plt.get_cmap("tab20").colors
    for ax, size, label in zip(axes, ("parameters", "nodes"), ("free CPT parameters", "nodes")):
        for i, kind in enumerate(kinds):
            pts = sorted((r[size], cost(r, 500)) for r in rows if r["kind"] == kind and cost(r, 500))
            if pts:
                ax.plot(*zip(*pts), marker="os^Dv"[i % 5], ms=3.5, lw=1, color=colors[(2 * i) % 20 + (i >= 10)],
                        label=kind)
        ax.set(xscale="log", yscale="log", xlabel=label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("seconds per context (fit + predict, N = 500)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("Cost per context on the bundled networks (one thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=NETWORKS, help=f"comma-separated bundled networks (default {NETWORKS})")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)}")
    ap.add_argument("--contexts", type=int, default=16, help="contexts per measurement (counting, transformers)")
    ap.add_argument("--library-contexts", type=int, default=2, help="contexts per measurement for pgmpy and Pyro")
    ap.add_argument("--queries", type=int, default=4, help="query rows per context (each asks every node)")
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="budget of one fit + predict (a kind over it is not tried on larger networks)")
    ap.add_argument("--max-gb", type=float, default=3.0, help="memory one measurement may add")
    ap.add_argument("--csv", default=None, help="write the table here (and the exponents next to it, .json)")
    ap.add_argument("--markdown", action="store_true", help="also print the docs page's table (milliseconds, N = 500)")
    ap.add_argument("--plot", default=None, help="write a log-log PNG of cost against parameters here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kinds = args.kinds.split(",")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown kinds {bad}; choose from {list(KINDS)}")
    unknown = [n for n in args.networks.split(",") if n not in discrete_names()]
    if unknown:
        ap.error(f"not bundled networks: {unknown}; see python -m bncompare.networks")
    listing = {n: bundled_size(n) for n in args.networks.split(",")}
    names = sorted(listing, key=lambda n: listing[n].parameters)
    if any(KINDS[k][2] for k in kinds):  # import the libraries once, before the forks
        import pgmpy  # noqa: F401
        import pyro  # noqa: F401
    warm_up(kinds, args)
    print(f"bncompare scale benchmark: torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; {args.contexts} contexts ({args.library_contexts} for "
          f"pgmpy/Pyro), {args.queries} queries, budget {args.max_seconds:g} s and {args.max_gb:g} GB", flush=True)
    rows, over = [], {k: [] for k in kinds}  # kind -> (nodes, parameters) of the networks it ran out on
    for name in names:
        net = load_network(name)
        g, info = net.graph, listing[name]
        gen = torch.Generator().manual_seed(0)
        B = args.contexts
        x = sample(g, net.cpt_batch(), B * (max(LENGTHS) + args.queries), gen)[0]
        x = x.reshape(B, max(LENGTHS) + args.queries, g.n_nodes)
        contexts, queries = x[:, : max(LENGTHS)].contiguous(), x[:, max(LENGTHS):].contiguous()
        for kind in kinds:
            row = {"network": name, "nodes": g.n_nodes, "states": info.states, "in_degree": info.in_degree,
                   "parameters": info.parameters, "kind": kind}
            if any(g.n_nodes >= n and info.parameters >= p for n, p in over[kind]):  # larger in both
                row["status"] = "skipped (> budget)"
            else:
                b = args.library_contexts if KINDS[kind][2] else B
                t = time.perf_counter()
                row.update(run_one(kind, g, contexts[:b], queries[:b], args))
                if row["status"] != "ok":
                    over[kind].append((g.n_nodes, info.parameters))
                print(f"  {name} {kind}: {time.perf_counter() - t:.1f} s {row['status']}", file=sys.stderr, flush=True)
            rows.append(row)
    print_table(rows)
    exps = exponents(rows, kinds)
    print_exponents(exps)
    if args.csv:
        keys = ["network", "nodes", "states", "in_degree", "parameters", "kind", "fit@10", "predict@10", "fit@500",
                "predict@500", "peak_mb", "train_s_per_step", "status"]
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in keys} for r in rows)
        Path(args.csv).with_suffix(".json").write_text(json.dumps({"rows": rows, "exponents": exps}, indent=1))
        print(f"table: {args.csv} (and {Path(args.csv).with_suffix('.json')})")
    if args.plot:
        plot(rows, kinds, args.plot)
    if args.markdown:
        print("\n" + markdown(rows, kinds))


if __name__ == "__main__":
    main()
