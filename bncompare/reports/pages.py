"""The pages of a study report, one function per page (or group of pages).

Each takes the PdfPages, the :class:`ReportData`, the graph name and the page
context, and adds its page(s). A page whose data is missing (e.g. no trained
transformer in the study) says so in one sentence instead of failing.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import FuncFormatter

from bncompare.reports.dag import draw_dag
from bncompare.reports.data import ReportData
from bncompare.reports.plots import (
    PAGE, Z, Styles, fig_legend, fmt, line_panel, message_page, no_data, set_xscale, table,
)


@dataclass
class Ctx:
    """What every page of one graph needs."""

    data: ReportData
    graph: str
    comb: pd.DataFrame  # results with seeds combined
    estimators: list[str]
    styles: Styles
    lens: list[int]
    reference: str | None
    seeds: list[int]

    @property
    def n_episodes(self) -> int:
        return int(self.data.config_of(self.graph).get("episodes", 0))

    def band_note(self) -> str:
        if len(self.seeds) > 1:
            return f"lines: mean over {len(self.seeds)} seeds; bands: ±{Z} SE across seeds"
        return f"lines: mean over {self.n_episodes} episodes per point; bands: ±{Z} SE over episodes"

    def has(self, metric: str) -> bool:
        return bool((self.comb["metric"] == metric).any())


def make_ctx(data: ReportData, graph: str) -> Ctx:
    comb = data.combined(graph)
    ests = data.estimators_of(graph)
    subset = {e for e in ests if data.entry(graph, e).get("subset") or data.entry(graph, e).get("context_lens")}
    styles = Styles(ests, data.reference(graph), subset, {e: data.label(graph, e) for e in ests})
    lens = sorted(comb["context_len"].unique().tolist())
    seeds = sorted({r.seed for r in data.runs_of(graph)})
    return Ctx(data, graph, comb, ests, styles, lens, data.reference(graph), seeds)


def _save(pdf, fig) -> None:
    pdf.savefig(fig)
    plt.close(fig)


def _header(fig, title: str, subtitle: str = "") -> None:
    fig.suptitle(title, fontsize=15, fontweight="bold", x=0.02, ha="left", y=0.985)
    if subtitle:
        fig.text(0.02, 0.94, textwrap.fill(subtitle, 165), fontsize=9, color="0.3", ha="left", va="top")


# ----- title and configuration ---------------------------------------------------------

def title_page(pdf, data: ReportData) -> None:
    fig = plt.figure(figsize=PAGE)
    graphs = data.graphs
    cfg = data.runs[0].config
    _header(fig, "bncompare study report", f"graph{'s' if len(graphs) > 1 else ''}: {', '.join(graphs)}")
    prior = cfg.get("prior", {})
    prior_text = f"{prior.get('kind')} {prior.get('params')}"
    lines = [
        f"prior of the CPTs: {prior_text}",
        f"context lengths N: {cfg.get('context_lens')}",
        f"episodes per (estimator, N): {cfg.get('episodes')}   query samples per episode: {cfg.get('queries')} "
        f"(each scores every node)",
        f"reference (Bayes-optimal under the prior on synthetic graphs): {cfg.get('reference')}",
        f"seeds: {sorted({r.seed for r in data.runs})}",
    ]
    meta = data.runs[0].meta
    if meta:
        total = sum(sum(x.get("wall_seconds", 0) for x in r.meta.get("runs", [])) for r in data.runs)
        last = meta.get("runs", [{}])[-1]
        lines += [
            f"device: {meta.get('device')}",
            f"study wall time (before this report): {total:.1f} s in total over {sum(len(r.meta.get('runs', [])) for r in data.runs)} invocation(s) "
            f"of {len(data.runs)} run(s); last invocation {last.get('wall_seconds', 0):.1f} s "
            f"({last.get('cells_computed', 0)} cells computed, {last.get('cells_reused', 0)} reused), started {last.get('started')}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        ]
        for r in data.runs:  # real networks / real data: distance of the true CPTs from the training prior
            if r.meta.get("prior_distance"):
                lines.append(f"{r.graph}: {r.meta['prior_distance']}")
                break
    y = 0.89
    for line in lines:
        for part in textwrap.wrap(line, 150):
            fig.text(0.03, y, part, fontsize=10, va="top")
            y -= 0.032
    ax = fig.add_axes([0.03, 0.03, 0.94, y - 0.06])
    rows = []
    for name, e in data.runs[0].estimators.items():
        params = ", ".join(f"{k}={_short(v)}" for k, v in (e.get("params") or {}).items())
        rows.append([name, e.get("label") or "", e.get("kind", ""), textwrap.shorten(params, 70),
                     str(e.get("subset") or "all"), str(e.get("context_lens") or "all"), str(e.get("mirrors") or "")])
    table(ax, rows, ["name", "label", "kind", "parameters", "episodes", "context lengths", "mirrors"], fontsize=8,
          title="Estimators", col_widths=[0.12, 0.16, 0.1, 0.34, 0.07, 0.11, 0.1])
    _save(pdf, fig)


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
    _header(fig, "Configuration", f"config.yaml of {data.runs[0].dir}" + (" (first run; others differ in graph/seed)"
                                                                          if len(data.runs) > 1 else ""))
    for i in range(n_cols):
        col = text[i * per_col : (i + 1) * per_col]
        fig.text(0.02 + i * 0.33, 0.92, "\n".join(col), family="monospace", fontsize=size, va="top")
    _save(pdf, fig)


# ----- structure -----------------------------------------------------------------------

def dag_page(pdf, ctx: Ctx) -> None:
    from bncompare.studies.runner import build_problem
    from bncompare.studies.spec import study_spec

    cfg = ctx.data.config_of(ctx.graph)
    try:
        graph, truth, prior = build_problem(study_spec(cfg))
    except Exception as e:  # a report should still render if the graph cannot be rebuilt here
        message_page(pdf, f"{ctx.graph}: structure", f"could not rebuild the graph: {e}")
        return
    fig = plt.figure(figsize=PAGE)
    edges = sum(len(p) for p in graph.parents)
    _header(fig, f"{ctx.graph}: the DAG", f"{graph.n_nodes} nodes, {edges} edges; layers by topological depth, "
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
                 f"{sum(graph.n_configs)} CPT rows in total;\nboxes show the number of states\nwhen it is not 2",
                 va="top", fontsize=9)
    info = _truth_text(graph, truth, prior)
    fig.text(0.66 if small else 0.78, 0.06, info, fontsize=8.5 if small else 7.5, va="bottom", wrap=True)
    _save(pdf, fig)


def _truth_text(graph, truth, prior) -> str:
    import torch

    if hasattr(truth, "describe"):
        return textwrap.fill(truth.describe(), 48)
    desc = prior.describe() if hasattr(prior, "describe") else str(prior)
    if not getattr(truth, "fixed", False):
        return f"Truth: a fresh CPT set per episode, rows ~ {desc}."
    real = torch.cat([c.reshape(-1) for c in truth.cpts])
    draws = prior.sample(graph, 200, torch.Generator().manual_seed(0))
    fake = torch.cat([c.reshape(-1) for c in draws])
    smallest = torch.stack([torch.cat([c[i].reshape(-1) for c in draws]).min() for i in range(200)]).median()
    share = lambda x, cond: f"{float(cond(x).double().mean()):.1%}"  # noqa: E731
    lines = ["Truth: the network's bundled CPTs",
             "in every episode. The trained",
             f"transformer learns from {desc}.",
             "Real CPTs vs draws from that prior:",
             f"  min entry: {real.min():.2g} vs {float(smallest):.2g} (median)",
             f"  entries < 0.01: {share(real, lambda x: x < 0.01)} vs {share(fake, lambda x: x < 0.01)}",
             f"  entries > 0.99: {share(real, lambda x: x > 0.99)} vs {share(fake, lambda x: x > 0.99)}"]
    return "\n".join(lines)


# ----- errors ----------------------------------------------------------------------------

def error_page(pdf, ctx: Ctx) -> None:
    fig, axes = plt.subplots(2, 2, figsize=PAGE)
    _header(fig, f"{ctx.graph}: estimation error against context length",
            "error of each node's predicted conditional at the query's parent values, averaged over nodes and queries "
            "(queries drawn from the true network); " + ctx.band_note())
    panels = [("cond_tv", "conditional TV (0 to 1)", True), ("cond_kl", "conditional KL(true ‖ est.) (nats)", True),
              ("cond_kl_inf_frac", "fraction of queries with infinite KL", False)]
    for ax, (metric, ylabel, ylog) in zip(axes.flat, panels):
        if line_panel(ax, ctx.comb, metric, ctx.estimators, ctx.styles, ylog=ylog):
            set_xscale(ax, ctx.lens)
            ax.set_ylabel(ylabel)
        else:
            no_data(ax, f"no {metric} values")
    axes[1, 1].axis("off")
    axes[1, 1].text(0.0, 0.95, textwrap.fill(
        "KL is infinite when an estimator gives probability 0 to a value the true CPT allows (MLE and the naive "
        "prefix MLE do at small N); such means are shown as triangles and the fraction of queries with infinite KL "
        "is plotted separately instead of clipping. Markers with error bars: estimators run on a subset of episodes "
        "or context lengths.", 70), va="top", fontsize=9, transform=axes[1, 1].transAxes)
    fig.tight_layout(rect=(0, 0.07, 1, 0.92))
    fig_legend(fig, axes, ncol=5)
    _save(pdf, fig)


def per_node_pages(pdf, ctx: Ctx, max_nodes: int = 48, per_page: int = 16) -> None:
    nodes = [n for n in dict.fromkeys(ctx.comb.loc[ctx.comb["metric"] == "cond_tv", "node"]) if n != "all"]
    if not nodes:
        message_page(pdf, f"{ctx.graph}: error per node", "no per-node results")
        return
    shown = nodes[:max_nodes]
    for start in range(0, len(shown), per_page):
        chunk = shown[start : start + per_page]
        cols = 4 if len(chunk) > 9 else 3 if len(chunk) > 4 else 2
        rows = -(-len(chunk) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=PAGE, squeeze=False, sharex=True)
        note = f" (nodes {start + 1}-{start + len(chunk)} of {len(nodes)}" + (
            f"; first {max_nodes} shown)" if len(nodes) > max_nodes else ")")
        _header(fig, f"{ctx.graph}: conditional TV per node" + note,
                "each panel: one node's conditional TV (0 to 1) against N, log-log; " + ctx.band_note())
        for ax, node in zip(axes.flat, chunk):
            line_panel(ax, ctx.comb, "cond_tv", ctx.estimators, ctx.styles, node=node, ylog=True)
            set_xscale(ax, ctx.lens)
            ax.set_title(node, fontsize=10)
            ax.set_xlabel("N" if ax in axes[-1] else "")
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(chunk):]:
            ax.axis("off")
        fig.tight_layout(rect=(0, 0.07, 1, 0.92))
        fig_legend(fig, axes, ncol=5)
        _save(pdf, fig)


def excess_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: excess error over the reference"
    if ctx.reference is None or not ctx.has("cond_tv_excess"):
        message_page(pdf, title, "No reference estimator in this study (set reference=<estimator name>).")
        return
    ests = [e for e in ctx.estimators if e != ctx.reference]
    fidelity = "joint_tv_excess" if ctx.has("joint_tv_excess") else "mc_pair_tv_excess"
    panels = [("cond_tv_excess", "excess conditional TV"), ("cond_kl_excess", "excess conditional KL (nats)"),
              (fidelity, "excess " + ("joint TV" if fidelity.startswith("joint") else "pairwise-marginal TV"))]
    fig, axes = plt.subplots(1, 3, figsize=PAGE)
    ref_label = ctx.styles.label(ctx.reference)
    _header(fig, title, f"estimator error minus the error of '{ref_label}' on the same episodes (paired); "
            f"below 0 = better than the reference. Bands: ±{Z} SE of the paired difference. On synthetic graphs with "
            "a Dirichlet prior the reference is the Bayes-optimal predictor, so every estimator is >= 0 in expectation. "
            "y axis: linear inside the grey band (typical noise level), logarithmic outside.")
    for ax, (metric, ylabel) in zip(axes, panels):
        if line_panel(ax, ctx.comb, metric, ests, ctx.styles):
            set_xscale(ax, ctx.lens)
            # linear inside the typical noise band (|y| < median 1.96 SE), log outside it
            sem = ctx.comb.loc[(ctx.comb["metric"] == metric) & (ctx.comb["node"] == "all"), "sem"]
            sem = sem[np.isfinite(sem) & (sem > 0)]
            lin = float(max(Z * sem.median(), 1e-6)) if len(sem) else 1e-4
            ax.set_yscale("symlog", linthresh=lin)
            ax.axhspan(-lin, lin, color="0.9", zorder=0)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, lin=lin: "0" if v == 0 else
                                                       (f"{v:g}" if abs(v) >= lin * 0.999 else "")))
            ax.axhline(0, color="black", lw=0.8)
            ax.set_ylabel(ylabel + " (symlog)")
        else:
            no_data(ax, f"no {metric}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.88))
    fig_legend(fig, axes, ncol=5)
    _save(pdf, fig)


def fidelity_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: sample fidelity against context length"
    if ctx.has("joint_tv"):
        panels = [("joint_tv", "joint TV (0 to 1)", True), ("joint_kl", "joint KL(true ‖ implied) (nats)", True)]
        sub = ("exact distance between the true joint distribution and the one implied by each estimator's "
               "conditionals on every prefix (the network its generated samples come from), over all joint states; ")
    elif ctx.has("mc_pair_tv"):
        panels = [("mc_pair_tv", "pairwise-marginal TV (0 to 1)", True),
                  ("mc_loglik_gap", "true log-lik gap (nats per sample)", False),
                  ("mc_impossible_frac", "share of impossible generated samples", False)]
        sub = ("Monte Carlo (too many joint states for exact sums): samples generated by each estimator vs fresh true "
               "samples of the same size; TV of pairwise marginals averaged over node pairs (includes a sampling-noise "
               "floor); mean true log-likelihood of true minus generated samples (0 = as typical as real data), over the "
               "generated samples the truth can produce; and the share it cannot (zero CPT entries of real networks); ")
    else:
        message_page(pdf, title, "No sample-fidelity metrics (fidelity.episodes=0?).")
        return
    fig, axes = plt.subplots(1, len(panels), figsize=PAGE)
    _header(fig, title, sub + ctx.band_note())
    for ax, (metric, ylabel, ylog) in zip(axes, panels):
        if line_panel(ax, ctx.comb, metric, ctx.estimators, ctx.styles, ylog=ylog):
            set_xscale(ax, ctx.lens)
            ax.set_ylabel(ylabel)
            if not ylog:
                ax.axhline(0, color="black", lw=0.8)
            if metric.endswith("_frac"):
                ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))
        else:
            no_data(ax, f"no {metric}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.88))
    fig_legend(fig, axes, ncol=5)
    _save(pdf, fig)


def unseen_page(pdf, ctx: Ctx) -> None:
    d = ctx.comb[ctx.comb["metric"] == "unseen_frac"]
    full = [e for e in ctx.estimators if e not in ctx.styles.subset]
    source = ctx.reference if ctx.reference in full else (full[0] if full else None)
    if d.empty or source is None:
        message_page(pdf, f"{ctx.graph}: unseen parent configurations", "no unseen_frac values")
        return
    d = d[d["estimator"] == source]
    fig, ax = plt.subplots(figsize=PAGE)
    _header(fig, f"{ctx.graph}: unseen parent configurations",
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
    ax.fill_between(x["context_len"], x["mean"] - Z * x["sem"].fillna(0), x["mean"] + Z * x["sem"].fillna(0),
                    color="black", alpha=0.15, lw=0)
    set_xscale(ax, ctx.lens)
    ax.set_ylabel("fraction of queries (0 to 1)")
    ax.set_ylim(bottom=0)
    ax.legend(ncol=2, fontsize=8, title="node (nodes never unseen omitted)")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    _save(pdf, fig)


# ----- the trained transformer -------------------------------------------------------------

def training_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: training curve of the trained transformer"
    runs = ctx.data.runs_of(ctx.graph)
    hist = {name: h for name, h in runs[0].histories.items() if name in ctx.estimators}
    if not hist:
        message_page(pdf, title, "No trained estimator in this study (or its training history was not recorded).")
        return
    for name, h in hist.items():
        fig, axes = plt.subplots(1, 2, figsize=PAGE)
        secs = h["train_seconds"].dropna().iloc[-1] if "train_seconds" in h else float("nan")
        _header(fig, title + f" ({ctx.styles.label(name)})",
                f"{len(h)} steps in {secs:.0f} s (seed {runs[0].seed}); loss = cross-entropy of each query target "
                "against the training target, in nats per target, on the training batches. The Bayes-optimal "
                "predictor (posterior mean) on the same batches is the floor a perfect learner reaches.")
        ax = axes[0]
        win = max(1, len(h) // 50)
        ax.plot(h["step"], h["loss"], color="C0", alpha=0.25, lw=0.6)
        ax.plot(h["step"], h["loss"].rolling(win, min_periods=1).mean(), color="C0", lw=1.8,
                label=f"transformer (running mean over {win} steps)")
        if "bayes_loss" in h and h["bayes_loss"].notna().any():
            ax.plot(h["step"], h["bayes_loss"].rolling(win, min_periods=1).mean(), color="black", ls="--", lw=1.5,
                    label="Bayes-optimal on the same batches")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (nats per target)")
        smooth = [h["loss"].rolling(win, min_periods=1).mean()]
        if "bayes_loss" in h and h["bayes_loss"].notna().any():
            smooth.append(h["bayes_loss"].rolling(win, min_periods=1).mean())
        both = pd.concat(smooth)
        lo, hi = np.nanpercentile(both, 0.5), np.nanpercentile(both, 99.5)
        ax.set_ylim(max(0, lo - 0.1 * (hi - lo)), hi + 0.1 * (hi - lo))
        ax.legend(fontsize=9)
        ax = axes[1]
        ev = h.dropna(subset=["eval_tv"]) if "eval_tv" in h else pd.DataFrame()
        if ev.empty:
            no_data(ax, "no held-out evaluation during training\n(transformer.train.eval_every = 0)")
        else:
            ax.plot(ev["step"], ev["eval_tv"], "o-", color="C0", label="transformer")
            if "eval_bayes_tv" in ev:
                ax.plot(ev["step"], ev["eval_bayes_tv"], "--", color="black", label="Bayes-optimal")
            if "eval_mle_tv" in ev:
                ax.plot(ev["step"], ev["eval_mle_tv"], ":", color="C3", label="MLE")
            ax.set_xlabel("training step")
            ax.set_ylabel("held-out conditional TV (0 to 1)")
            ax.set_title("held-out tasks (own seed stream), mean over the training's eval lengths", fontsize=9)
            ax.legend(fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.87))
        _save(pdf, fig)


def attention_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: where do transformer queries attend?"
    d = ctx.comb[ctx.comb["metric"].str.startswith("attn_")]
    ests = [e for e in ctx.estimators if e in set(d["estimator"])]
    if not ests:
        message_page(pdf, title, "No transformer estimator with an attention diagnostic in this study.")
        return
    fig, axes = plt.subplots(2, len(ests), figsize=PAGE, squeeze=False)
    _header(fig, title, "every layer (L<layer> H<head>), queries of non-root nodes, rows matched on the TRUE parents (a structure-"
            "agnostic model is never told them). Top: share of each head's attention on context rows "
            "whose parent values equal the query's (the rows the counting solution averages); dashed: the share "
            "those rows would get under uniform attention. Bottom: where the best head's attention goes.")
    for j, e in enumerate(ests):
        de = d[d["estimator"] == e]
        ax = axes[0, j]
        heads = sorted(set(de["node"]))
        for i, head in enumerate(heads):
            x = de[(de["node"] == head) & (de["metric"] == "attn_match")].sort_values("context_len")
            ax.errorbar(x["context_len"], x["mean"], yerr=Z * x["sem"].fillna(0), marker="o", ms=3, lw=1.2,
                        capsize=2, label=head.replace(".", " "))
        ch = de[de["metric"] == "attn_chance"].groupby("context_len")["mean"].mean()
        ax.plot(ch.index, ch.values, "k--", lw=1.2, label="uniform attention")
        set_xscale(ax, sorted(de["context_len"].unique()))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("attention share on matching rows")
        ax.set_title(ctx.styles.label(e), fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        # the head with most attention on matches, broken down
        match = de[de["metric"] == "attn_match"].groupby("node")["mean"].mean()
        best = match.idxmax()
        ax = axes[1, j]
        parts = ["match", "other", "sink", "self", "null"]
        colors = ["#2b8a3e", "#adb5bd", "#f08c00", "#1971c2", "#862e9c"]
        piv = de[de["node"] == best].pivot_table(index="context_len", columns="metric", values="mean")
        bottom = np.zeros(len(piv))
        xs = np.arange(len(piv))
        for p, c in zip(parts, colors):
            col = f"attn_{p}"
            if col in piv:
                ax.bar(xs, piv[col].to_numpy(), bottom=bottom, color=c, label=p)
                bottom += piv[col].to_numpy()
        ax.set_xticks(xs)
        ax.set_xticklabels([str(n) for n in piv.index], fontsize=8)
        ax.set_xlabel("context length N (rows)")
        ax.set_ylabel(f"share of attention, head {best.replace('.', ' ')}")
        ax.set_ylim(0, 1.16)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.legend(fontsize=7, ncol=5, loc="upper center", frameon=False, handlelength=1, columnspacing=0.8)
    fig.tight_layout(rect=(0, 0, 1, 0.89))
    _save(pdf, fig)


# ----- cost and summary ------------------------------------------------------------------

def cost_page(pdf, ctx: Ctx) -> None:
    fig = plt.figure(figsize=PAGE)
    _header(fig, f"{ctx.graph}: cost", "wall-clock seconds per context (fit + predict of every node for all queries "
            f"of an episode), measured in the study's vectorized batches on {ctx.data.runs_of(ctx.graph)[0].meta.get('device', '?')}")
    ax = fig.add_axes([0.07, 0.51, 0.6, 0.37])
    if line_panel(ax, ctx.comb, "seconds_per_context", ctx.estimators, ctx.styles, ylog=True, band=False):
        set_xscale(ax, ctx.lens)
        ax.set_ylabel("seconds per context (log)")
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    prep = {}
    for r in ctx.data.runs_of(ctx.graph):
        for inv in r.meta.get("runs", []):
            for k, v in inv.get("prepare_seconds", {}).items():
                prep[k] = max(prep.get(k, 0.0), v)
    rows = []
    for e in ctx.estimators:
        ran = sorted(ctx.comb.loc[(ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "seconds_per_context"),
                                  "context_len"])
        row = [ctx.styles.label(e), f"{prep[e]:.2f}" if e in prep else "–"]
        for n in (ran[:1] + ran[-1:]) if ran else []:
            row += [str(n), _ms(_value(ctx.comb, e, n, "fit_seconds_per_context")),
                    _ms(_value(ctx.comb, e, n, "predict_seconds_per_context"))]
        rows.append(row + ["–"] * (8 - len(row)))
    ax = fig.add_axes([0.03, 0.02, 0.94, 0.38])
    table(ax, rows, ["estimator", "prepare (s, once)", "smallest N", "fit (ms/context)", "predict (ms/context)",
                     "largest N", "fit (ms/context)", "predict (ms/context)"], fontsize=8,
          col_widths=[0.2, 0.11, 0.09, 0.12, 0.13, 0.09, 0.12, 0.13])
    fig.text(0.03, 0.415, "prepare = training or loading the cached model (trained transformer), 0 for the others. "
             "Fit and predict times at the smallest and largest N each estimator ran at", fontsize=8, color="0.3")
    _save(pdf, fig)


def _value(comb, e, n, metric, node="all", what="mean"):
    v = comb[(comb["estimator"] == e) & (comb["context_len"] == n) & (comb["metric"] == metric) & (comb["node"] == node)]
    return float(v[what].iloc[0]) if len(v) else float("nan")


def _ms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def summary_page(pdf, ctx: Ctx) -> None:
    lens = ctx.lens if len(ctx.lens) <= 5 else [ctx.lens[i] for i in np.linspace(0, len(ctx.lens) - 1, 5).round().astype(int)]
    fid = "joint_tv" if ctx.has("joint_tv") else "mc_pair_tv"
    fig = plt.figure(figsize=PAGE)
    _header(fig, f"{ctx.graph}: summary", f"mean ± SE ({'across seeds' if len(ctx.seeds) > 1 else 'over episodes'}) "
            "at selected context lengths; '–': not run there; bold: lowest mean in the column among estimators run on every "
            "episode; †: run on a subset of episodes or context lengths (not comparable to the bold value)")
    for k, (metric, name) in enumerate([("cond_tv", "conditional TV"),
                                        (fid, "joint TV" if fid == "joint_tv" else "pairwise-marginal TV")]):
        rows, best = [], {}
        for n in lens:
            vals = [(_value(ctx.comb, e, n, metric), e) for e in ctx.estimators if e not in ctx.styles.subset]
            vals = [v for v in vals if np.isfinite(v[0])]
            best[n] = min(vals)[1] if vals else None
        for e in ctx.estimators:
            rows.append([fmt(_value(ctx.comb, e, n, metric), _value(ctx.comb, e, n, metric, what="sem")) for n in lens])
        ax = fig.add_axes([0.2, 0.5 - k * 0.46, 0.78, 0.38])
        labels = [ctx.styles.label(e) + (" †" if e in ctx.styles.subset else "") for e in ctx.estimators]
        table(ax, rows, [f"N = {n}" for n in lens], rows=labels, fontsize=8, title=name)
        t = ax.tables[0]
        for j, n in enumerate(lens):
            if best[n] is not None:
                t[(ctx.estimators.index(best[n]) + 1, j)].set_text_props(fontweight="bold")
    _save(pdf, fig)


def agnostic_page(pdf, ctx: Ctx) -> None:
    """Only in studies with a structure-agnostic transformer: what it is, and its error next to the baselines."""
    agn = [e for e in ctx.estimators if ctx.data.entry(ctx.graph, e).get("kind") == "transformer_agnostic"]
    if not agn:
        return
    e0 = ctx.data.entry(ctx.graph, agn[0])
    p = e0.get("params") or {}
    fig = plt.figure(figsize=PAGE)
    _header(fig, f"{ctx.graph}: the structure-agnostic transformer",
            "never told the parents: trained on a fresh Erdos-Renyi DAG (edge probability ~ U[{}, {}], at most {} "
            "parents) and fresh Dirichlet CPTs per task, on {} nodes with this graph's cardinalities; one cached model "
            "serves every graph of that layout. It must find the parents in context: the attention page shows the share "
            "of attention on rows matching the query on the TRUE parents (layer 0 is where a trained model selects them). "
            "Baselines: naive = prefix MLE (no graph); MLE and Bayes posterior mean use the true graph; the structure-"
            "aware trained TF is trained on this graph only.".format(p.get("p_low"), p.get("p_high"),
                                                                    p.get("max_parents"), "the same number of"))
    rows = [[fmt(_value(ctx.comb, e, n, "cond_tv"), _value(ctx.comb, e, n, "cond_tv", what="sem")) for n in ctx.lens]
            for e in ctx.estimators]
    ax = fig.add_axes([0.3, 0.46, 0.68, 0.3])
    table(ax, rows, [f"N = {n}" for n in ctx.lens], rows=[ctx.styles.label(e) for e in ctx.estimators], fontsize=8,
          title="conditional TV at the query's true parent values (mean ± SE)")
    # Does it find the parents? The head with most attention on true-parent-matching rows, vs uniform attention.
    att = ctx.comb[ctx.comb["metric"] == "attn_match"]
    rows, labels = [], []
    for e in [x for x in ctx.estimators if x in set(att["estimator"])]:
        best = att[att["estimator"] == e].groupby("node")["mean"].mean().idxmax()
        rows.append([fmt(_value(ctx.comb, e, n, "attn_match", best), _value(ctx.comb, e, n, "attn_match", best, "sem"))
                     for n in ctx.lens])
        labels.append(f"{ctx.styles.label(e)}, head {best.replace('.', ' ')}")
    if rows:
        chance = ctx.comb[ctx.comb["metric"] == "attn_chance"].groupby("context_len")["mean"].mean()
        rows.append([fmt(chance.get(n, float("nan"))) for n in ctx.lens])
        labels.append("uniform attention (chance)")
        ax = fig.add_axes([0.3, 0.06, 0.68, 0.28])
        table(ax, rows, [f"N = {n}" for n in ctx.lens], rows=labels, fontsize=8,
              title="attention share on context rows matching the query on its TRUE parents (best head)")
    _save(pdf, fig)


def agreement_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: library baselines and constructed transformers vs the estimators they mirror"
    pairs = [(e, ctx.data.entry(ctx.graph, e).get("mirrors")) for e in ctx.estimators]
    pairs = [(e, m) for e, m in pairs if m and ctx.has("agree_tv") and
             ((ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_tv")).any()]
    if not pairs:
        message_page(pdf, title, "No estimator in this study declares a 'mirrors' estimator.")
        return
    fig = plt.figure(figsize=PAGE)
    _header(fig, title, "each is run on the same episodes as the fast estimator it mirrors (slow ones on a subset); "
            "agreement = TV between the two predicted conditionals, per query, and the largest absolute difference of "
            "any predicted probability. Exact mirrors agree to rounding; MCMC/VI to their Monte Carlo/optimization error.")
    rows = []
    for e, m in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["node"] == "all")]
        tvs = d[d["metric"] == "agree_tv"]
        mx = d[d["metric"] == "agree_max_abs"]
        entry = ctx.data.entry(ctx.graph, e)
        n_eps = int(tvs["n"].max()) if len(tvs) else 0
        rows.append([ctx.styles.label(e), ctx.styles.label(m), f"{n_eps}" + (" (subset)" if entry.get("subset") else ""),
                     ", ".join(str(n) for n in sorted(tvs["context_len"])),
                     f"{float(tvs['mean'].mean()):.2g}", f"{float(mx['mean'].max()):.2g}"])
    ax = fig.add_axes([0.02, 0.55, 0.96, 0.33])
    table(ax, rows, ["estimator", "mirrors", "episodes per N", "context lengths N", "mean agreement TV",
                     "max |Δp| (worst N)"], fontsize=8,
          col_widths=[0.17, 0.17, 0.11, 0.2, 0.13, 0.22])
    ax = fig.add_axes([0.08, 0.07, 0.4, 0.42])
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
        ax.set_xlabel("conditional TV of the mirrored estimator (per episode)")
        ax.set_ylabel("conditional TV of the baseline (same episode)")
        ax.legend(fontsize=7)
    ax = fig.add_axes([0.57, 0.07, 0.4, 0.42])
    for e, m in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_tv") & (ctx.comb["node"] == "all")]
        d = d.sort_values("context_len")
        ax.plot(d["context_len"], d["mean"].clip(lower=1e-17), "o-", ms=3, color=ctx.styles.style[e]["color"],
                label=ctx.styles.label(e))
    ax.set_yscale("log")
    set_xscale(ax, ctx.lens)
    ax.set_ylabel("mean agreement TV (log; 1e-17 = identical)")
    ax.legend(fontsize=7)
    _save(pdf, fig)


def overview_page(pdf, data: ReportData) -> None:
    """All graphs at a glance (merged reports): conditional TV against N, one panel per graph."""
    graphs = data.graphs
    cols = min(3, len(graphs))
    rows = -(-len(graphs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=PAGE, squeeze=False)
    _header(fig, "All graphs: conditional TV against context length",
            f"one panel per graph; bands ±{Z} SE (across seeds when there are several)")
    for ax, g in zip(axes.flat, graphs):
        ctx = make_ctx(data, g)
        line_panel(ax, ctx.comb, "cond_tv", ctx.estimators, ctx.styles, ylog=True)
        set_xscale(ax, ctx.lens)
        ax.set_title(f"{g} ({len(ctx.seeds)} seed{'s' if len(ctx.seeds) > 1 else ''})", fontsize=10)
        ax.set_ylabel("conditional TV")
    for ax in list(axes.flat)[len(graphs):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.07, 1, 0.92))
    fig_legend(fig, axes, ncol=5)
    _save(pdf, fig)
