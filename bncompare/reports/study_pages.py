"""The pages about the study itself: title, configuration, DAG, unseen configurations, cost, agreement, overview."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import yaml

from bncompare.reports.context import Ctx, header, make_ctx, save
from bncompare.reports.dag import draw_dag, uses_numbers
from bncompare.reports.data import ReportData, optimal_here
from bncompare.reports.plots import (
    PAGE,
    Z,
    fig_legend,
    half_width,
    line_panel,
    message_page,
    no_data,
    set_xscale,
    table,
)
from bncompare.reports.transformer_pages import hard_wired


def title_page(pdf, data: ReportData) -> None:
    fig = plt.figure(figsize=PAGE)
    graphs = data.graphs
    cfg = data.runs[0].config
    header(fig, "bncompare study report", f"graph{'s' if len(graphs) > 1 else ''}: {', '.join(graphs)}")
    prior = cfg.get("prior", {})
    prior_text = f"{prior.get('kind')} {prior.get('params')}"
    if cfg.get("eval_prior"):
        prior_text = (f"training {prior_text}; the truth's (eval_prior) {cfg['eval_prior'].get('kind')} "
                      f"{cfg['eval_prior'].get('params')}")
    lines = [
        f"prior of the CPTs: {prior_text}",
        f"context lengths N: {cfg.get('context_lens')}",
        f"episodes per (estimator, N): {cfg.get('episodes')}   query samples per episode: {cfg.get('queries')} "
        f"(each scores every node)",
        _references_line(data),
        f"seeds: {sorted({r.seed for r in data.runs})}",
    ]
    meta = data.runs[0].meta
    if meta:
        total = sum(sum(x.get("wall_seconds", 0) for x in r.meta.get("runs", [])) for r in data.runs)
        last = meta.get("runs", [{}])[-1]
        invocations = sum(len(r.meta.get("runs", [])) for r in data.runs)
        lines += [
            f"device: {meta.get('device')}",
            f"study wall time (before this report): {total:.1f} s in total over {invocations} invocation(s) "
            f"of {len(data.runs)} run(s); last invocation {last.get('wall_seconds', 0):.1f} s "
            f"({last.get('cells_computed', 0)} cells computed, {last.get('cells_reused', 0)} reused), "
            f"started {last.get('started')}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        ]
        code = meta.get("code_version") or {}
        if code:  # part of every cell's key: results of other code are never mixed in
            lines.append(f"code that computed the cells: bncompare {code.get('package')}, "
                         f"source hash {code.get('source')}")
    truths = {f"{r.graph}: {r.truth.get('truth', r.truth.get('kind', '?'))}" for r in data.runs if r.truth}
    if truths:  # which truth each graph's episodes used: bundled CPTs, prior draws, held-out rows
        lines.append("truth of the episodes: " + ", ".join(sorted(truths)))
    for r in data.runs:  # real networks / real data: distance of the true CPTs from the training prior
        if r.truth.get("prior_distance"):
            lines.append(f"{r.graph}: {r.truth['prior_distance']}")
            break
    y = 0.89
    for line in lines:
        for part in textwrap.wrap(line, 150):
            fig.text(0.03, y, part, fontsize=10, va="top")
            y -= 0.032
    # what each trained model computes rather than learns, in full, under the table (the table names it)
    said: dict[str, list[str]] = {}  # the same sentence once, with every estimator it is about
    for name, e in data.runs[0].estimators.items():
        if hard_wired(e):
            said.setdefault(hard_wired(e), []).append(name)
    notes = [f"{', '.join(names)}: {text}" for text, names in said.items()]
    note_lines = [part for note in notes for part in textwrap.wrap(note, 190)]
    bottom = 0.03 + 0.022 * len(note_lines)
    for i, part in enumerate(note_lines):
        fig.text(0.03, bottom - 0.022 * (i + 1), part, fontsize=7.5, va="bottom", color="0.25")
    ax = fig.add_axes([0.03, bottom + 0.01, 0.94, y - 0.07 - bottom + 0.03])
    rows = []
    for name, e in data.runs[0].estimators.items():
        given = [(k, v) for k, v in (e.get("params") or {}).items() if v is not None]
        given.sort(key=lambda kv: isinstance(kv[1], dict))  # plain settings (e.g. recipe) before a whole config
        params = ", ".join(f"{k}={_short(v)}" for k, v in given)
        rows.append([name, textwrap.shorten(e.get("label") or "", 66), e.get("kind", ""), textwrap.shorten(params, 48),
                     _computed_cell(e), str(e.get("subset") or "all"), str(e.get("context_lens") or "all"),
                     str(e.get("mirrors") or "")])
    table(ax, rows, ["name", "label", "kind", "parameters", "computed, not learned", "episodes", "context lengths",
                     "mirrors"], fontsize=7, title="Estimators",
          col_widths=[0.09, 0.28, 0.08, 0.2, 0.14, 0.05, 0.08, 0.06])
    save(pdf, fig)


def _computed_cell(entry: dict) -> str:
    """The short names of what a trained model computes rather than learns ('nothing'), '' for other estimators."""
    tags = entry.get("tags") or {}
    if tags.get("family") != "trained" or tags.get("computed") is None:
        return ""
    return ", ".join(p.split()[0] for p in tags["computed"]) or "nothing"


def _references_line(data: ReportData) -> str:
    """Which estimators the excess errors are measured against, each with what it declares it minimizes."""
    run, cfg = data.runs[0], data.runs[0].config
    refs = [("KL and joint measures", cfg.get("reference")), ("conditional TV", cfg.get("tv_reference")
                                                              or cfg.get("reference"))]
    parts = []
    for what, name in refs:
        if not name:
            continue
        entry = run.estimators.get(name, {}) or {}
        optimal = optimal_here(entry, cfg)
        parts.append(f"{what}: {entry.get('label') or name}" + (f" (minimizes expected {optimal})" if optimal
                                                                 else " (not optimal under this prior)"))
    if not parts:
        return "references: none (no excess errors)"
    truth = run.truth.get("truth", "prior") if run.truth else "prior"
    caveat = "" if truth == "prior" else f"; the truth here ({truth}) is not drawn from the prior, so no reference " \
                                         "is optimal"
    return "references of the excess errors: " + "; ".join(parts) + caveat


def _short(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x}" for k, x in list(v.items())[:4]) + (", ..." if len(v) > 4 else "") + "}"
    return str(v)


def config_page(pdf, data: ReportData) -> None:
    cfg = data.runs[0].config
    width, n_cols = 62, 3
    text = []
    for line in yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=width).splitlines():
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        text += textwrap.wrap(line, width, subsequent_indent=indent, drop_whitespace=False) or [""]
    per_col = max(30, -(-len(text) // n_cols))
    # fit the height (536 pt of text per column) and the width (62 characters in 270 pt)
    size = float(min(7.5, 536 / (1.25 * per_col), 270 / (0.6 * width)))
    fig = plt.figure(figsize=PAGE)
    header(fig, "Configuration", f"config.yaml of {data.runs[0].dir}" + (" (first run; others differ in graph/seed)"
                                                                          if len(data.runs) > 1 else ""))
    for i in range(n_cols):
        col = text[i * per_col : (i + 1) * per_col]
        fig.text(0.02 + i * 0.33, 0.92, "\n".join(col), family="monospace", fontsize=size, va="top")
    save(pdf, fig)


def dag_page(pdf, ctx: Ctx) -> None:
    run = ctx.data.runs_of(ctx.graph)[0]
    graph = run.dag
    if graph is None:
        message_page(pdf, f"{ctx.graph}: structure", "graph.json is missing from the run directory: no DAG to draw")
        return
    fig = plt.figure(figsize=PAGE)
    edges = sum(len(p) for p in graph.parents)
    if run.truth.get("per_episode_dags"):  # the drawn graph is the layout, not any episode's DAG
        header(fig, f"{ctx.graph}: the layout", f"every episode draws its own DAG; drawn: the complete graph on "
               f"{graph.n_nodes} nodes that holds every DAG's CPTs (each node's possible parents)")
    else:
        header(fig, f"{ctx.graph}: the DAG", f"{graph.n_nodes} nodes, {edges} edges; layers by topological depth, "
               f"arrows from parent to child")
    small = graph.n_nodes <= 24
    ax = fig.add_axes([0.02, 0.04, 0.62, 0.86] if small else [0.01, 0.02, 0.76, 0.88])
    draw_dag(ax, graph)
    if small:
        side = fig.add_axes([0.66, 0.04, 0.33, 0.86])
        rows = [[graph.names[m], str(graph.cards[m]), ", ".join(graph.names[p] for p in graph.parents[m]) or "–",
                 str(graph.n_configs[m])] for m in range(graph.n_nodes)]
        table(side, rows, ["node", "states", "parents", "CPT rows"], fontsize=8, col_widths=[0.25, 0.15, 0.45, 0.15])
    else:
        fig.text(0.78, 0.88, f"{graph.n_nodes} nodes, up to {max(len(p) for p in graph.parents)} parents,\n"
                 f"{sum(graph.n_configs)} CPT rows in total;\n" + ("boxes show node numbers:\nthe node table follows"
                 if uses_numbers(graph) else "boxes show the number of states\nwhen it is not 2"), va="top", fontsize=9)
    info = run.truth.get("description", "")
    fig.text(0.66 if small else 0.78, 0.06, info, fontsize=8.5 if small else 7.5, va="bottom", wrap=True)
    save(pdf, fig)
    if uses_numbers(graph):
        node_table_pages(pdf, ctx, graph)


NODE_TABLE_ROWS = 45  # rows per page of a large network's node table


def node_table_pages(pdf, ctx: Ctx, graph) -> None:
    """The numbers drawn on a wide DAG, with name, states and parents (by number), a page per 45 nodes."""
    n_pages = -(-graph.n_nodes // NODE_TABLE_ROWS)
    for page, start in enumerate(range(0, graph.n_nodes, NODE_TABLE_ROWS)):
        fig = plt.figure(figsize=PAGE)
        header(fig, f"{ctx.graph}: node table ({page + 1}/{n_pages})", "numbers as drawn on the DAG page; "
               "parents by number")
        nodes = range(start, min(start + NODE_TABLE_ROWS, graph.n_nodes))
        rows = [[str(m + 1), graph.names[m], str(graph.cards[m]),
                 textwrap.shorten(", ".join(str(p + 1) for p in graph.parents[m]) or "–", 60),
                 str(graph.n_configs[m])] for m in nodes]
        table(fig.add_axes([0.03, 0.03, 0.94, 0.86]), rows, ["#", "node", "states", "parents", "CPT rows"],
              fontsize=7, col_widths=[0.07, 0.38, 0.1, 0.33, 0.12])
        save(pdf, fig)


def unseen_page(pdf, ctx: Ctx) -> None:
    d = ctx.comb[ctx.comb["metric"] == "unseen_frac"]
    full = [e for e in ctx.estimators if e not in ctx.styles.subset]
    source = ctx.reference if ctx.reference in full else (full[0] if full else None)
    if d.empty or source is None:
        message_page(pdf, f"{ctx.graph}: unseen parent configurations", "no unseen_frac values")
        return
    d = d[d["estimator"] == source]
    fig, ax = plt.subplots(figsize=PAGE)
    header(fig, f"{ctx.graph}: unseen parent configurations",
            "fraction of queries whose parent configuration never occurs in the context (the same data for every "
            "estimator). There MLE has nothing to count and answers uniform; roots are never unseen for N >= 1.")
    nodes = [n for n in dict.fromkeys(d["node"]) if n != "all"]
    palette = plt.get_cmap("viridis")
    for i, node in enumerate(nodes):
        x = d[d["node"] == node].sort_values("context_len")
        if (x["mean"] > 0).any():
            ax.plot(x["context_len"], x["mean"], color=palette(i / max(1, len(nodes) - 1)), lw=1,
                    label=node if len(nodes) <= 20 else None)
    x = d[d["node"] == "all"].sort_values("context_len")
    ax.plot(x["context_len"], x["mean"], color="black", lw=2.5, label="all nodes")
    half = np.nan_to_num(half_width(x))
    ax.fill_between(x["context_len"], x["mean"] - half, x["mean"] + half,
                    color="black", alpha=0.15, lw=0)
    set_xscale(ax, ctx.lens)
    ax.set_ylabel("fraction of queries (0 to 1)")
    ax.set_ylim(bottom=0)
    ax.legend(ncol=2, fontsize=8, title="node (nodes never unseen omitted)")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save(pdf, fig)


def cost_page(pdf, ctx: Ctx) -> None:
    fig = plt.figure(figsize=PAGE)
    device = ctx.data.runs_of(ctx.graph)[0].meta.get("device", "?")
    header(fig, f"{ctx.graph}: cost", "wall-clock seconds per context (fit + predict of every node for all queries "
           f"of an episode), measured in the study's vectorized batches on {device}")
    ax = fig.add_axes([0.07, 0.51, 0.6, 0.37])
    if line_panel(ax, ctx.comb, "seconds_per_context", ctx.estimators, ctx.styles, ylog=True, band=False):
        set_xscale(ax, ctx.lens)
        ax.set_ylabel("seconds per context (log)")
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    prep = ctx.prepare_seconds()
    rows = []
    for e in ctx.estimators:
        ran = sorted(ctx.comb.loc[(ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "seconds_per_context"),
                                  "context_len"])
        row = [ctx.styles.label(e), f"{prep[e]:.2f}" if e in prep else "–"]
        for n in (ran[:1] + ran[-1:]) if ran else []:
            row += [str(n), _ms(ctx.value(e, n, "fit_seconds_per_context")),
                    _ms(ctx.value(e, n, "predict_seconds_per_context"))]
        rows.append(row + ["–"] * (8 - len(row)))
    ax = fig.add_axes([0.03, 0.02, 0.94, 0.38])
    table(ax, rows, ["estimator", "prepare (s, once)", "smallest N", "fit (ms/context)", "predict (ms/context)",
                     "largest N", "fit (ms/context)", "predict (ms/context)"], fontsize=8,
          col_widths=[0.2, 0.11, 0.09, 0.12, 0.13, 0.09, 0.12, 0.13])
    fig.text(0.03, 0.415, "prepare = training or loading the cached model (a trained model), 0 for the others. "
             "Fit and predict times at the smallest and largest N each estimator ran at", fontsize=8, color="0.3")
    save(pdf, fig)


def _ms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def agreement_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: library baselines and constructed transformers vs the estimators they mirror"
    pairs = [(e, ctx.data.entry(ctx.graph, e).get("mirrors")) for e in ctx.estimators]
    pairs = [(e, m) for e, m in pairs if m and ctx.has("agree_tv") and
             ((ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_tv")).any()]
    if not pairs:
        message_page(pdf, title, "No estimator in this study declares a 'mirrors' estimator.")
        return
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "each is run on the same episodes as the fast estimator it mirrors (slow ones on a subset, "
           "so they are compared in pairs: the middle panel is their conditional TV minus the mirror's on the same "
           "episodes, which is what results.csv holds as cond_tv_vs_mirror); agreement = TV between the two "
           "predicted conditionals, per query, and the largest absolute difference of any predicted probability. "
           "Exact mirrors agree to rounding; MCMC/VI to their Monte Carlo/optimization error.")
    rows = []
    for e, m in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["node"] == "all")]
        tvs = d[d["metric"] == "agree_tv"]
        mx = d[d["metric"] == "agree_max_abs"]
        entry = ctx.data.entry(ctx.graph, e)
        n_eps = int(tvs["n"].max()) if len(tvs) else 0
        episodes = f"{n_eps}" + (" (subset)" if entry.get("subset") else "")
        rows.append([ctx.styles.label(e), ctx.styles.label(m), episodes,
                     ", ".join(str(n) for n in sorted(tvs["context_len"])),
                     f"{float(tvs['mean'].mean()):.2g}", f"{float(mx['mean'].max()):.2g}"])
    ax = fig.add_axes([0.02, 0.55, 0.96, 0.33])
    table(ax, rows, ["estimator", "mirrors", "episodes per N", "context lengths N", "mean agreement TV",
                     "max |Δp| (worst N)"], fontsize=8,
          col_widths=[0.17, 0.17, 0.11, 0.2, 0.13, 0.22])
    ax = fig.add_axes([0.05, 0.07, 0.27, 0.4])
    eps = ctx.data.episodes(ctx.graph, ["cond_tv"])
    if eps is None or eps.empty:
        no_data(ax, "episodes.csv.gz not found: no per-episode scatter")
    else:
        eps = eps[eps["node"] == "all"]
        hi = 0
        for e, m in pairs:
            a = eps[eps["estimator"] == e][["seed", "context_len", "episode", "value"]]
            b = eps[eps["estimator"] == m][["seed", "context_len", "episode", "value"]]
            j = a.merge(b, on=["seed", "context_len", "episode"], suffixes=("", "_mirror"))
            if len(j):
                ax.scatter(j["value_mirror"], j["value"], s=10, alpha=0.6, color=ctx.styles.style[e]["color"],
                           label=f"{ctx.styles.label(e)} vs {ctx.styles.label(m)}")
                hi = max(hi, float(j[["value", "value_mirror"]].max().max()))
        ax.plot([0, hi], [0, hi], color="black", lw=0.8)
        ax.set_xlabel("conditional TV of the mirrored estimator (per episode)", fontsize=8)
        ax.set_ylabel("conditional TV of the baseline (same episode)", fontsize=8)
        ax.legend(fontsize=6)
    ax = fig.add_axes([0.39, 0.07, 0.27, 0.4])
    paired_panel(ax, ctx, pairs)
    ax = fig.add_axes([0.72, 0.07, 0.26, 0.4])
    for e, _ in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_tv") & (ctx.comb["node"] == "all")]
        d = d.sort_values("context_len")
        ax.plot(d["context_len"], d["mean"].clip(lower=1e-17), "o-", ms=3, color=ctx.styles.style[e]["color"],
                label=ctx.styles.label(e))
    ax.set_yscale("log")
    set_xscale(ax, ctx.lens)
    ax.set_ylabel("mean agreement TV (log; 1e-17 = identical)", fontsize=8)
    ax.legend(fontsize=6)
    save(pdf, fig)


def paired_panel(ax, ctx: Ctx, pairs, metric: str = "cond_tv", name: str = "cond. TV") -> None:
    """``metric`` minus the mirror's on the same episodes, ± 1.96 SE: how a subset baseline compares."""
    d = ctx.comb[(ctx.comb["metric"] == f"{metric}_vs_mirror") & (ctx.comb["node"] == "all")]
    drawn = False
    for i, (e, _) in enumerate(pairs):
        x = d[d["estimator"] == e].sort_values("context_len")
        if x.empty:
            continue
        shift = 1 + 0.04 * (i - len(pairs) / 2)  # side by side, so the error bars do not hide each other
        ax.errorbar(x["context_len"] * shift, x["mean"], yerr=np.nan_to_num(half_width(x)), fmt="o-", ms=3, lw=1,
                    capsize=2, color=ctx.styles.style[e]["color"], label=ctx.styles.label(e))
        drawn = True
    if not drawn:
        no_data(ax, "no paired differences recorded")
        return
    ax.axhline(0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-4)
    set_xscale(ax, ctx.lens)
    ax.set_ylabel(f"{name} minus the mirror's, same episodes (±{Z} SE; symlog)", fontsize=8)
    ax.set_title("paired difference to the mirrored estimator", fontsize=9)
    ax.legend(fontsize=6)


def overview_page(pdf, data: ReportData) -> None:
    """All graphs at a glance (merged reports): conditional TV against N, one panel per graph."""
    graphs = data.graphs
    cols = min(3, len(graphs))
    rows = -(-len(graphs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=PAGE, squeeze=False)
    header(fig, "All graphs: conditional TV against context length",
            f"one panel per graph; bands ±{Z} SE (across seeds when there are several)")
    for ax, g in zip(axes.flat, graphs):
        ctx = make_ctx(data, g)
        line_panel(ax, ctx.comb, "cond_tv", ctx.full(ctx.estimators), ctx.styles, ylog=True)  # raw means: all episodes
        set_xscale(ax, ctx.lens)
        ax.set_title(f"{g} ({len(ctx.seeds)} seed{'s' if len(ctx.seeds) > 1 else ''})", fontsize=10)
        ax.set_ylabel("conditional TV")
    for ax in list(axes.flat)[len(graphs):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.07, 1, 0.92))
    fig_legend(fig, axes, ncol=5)
    save(pdf, fig)
