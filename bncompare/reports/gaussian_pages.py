"""The pages of a linear-Gaussian study (``variables=gaussian``), in the order of :data:`PAGES`.

The same kinds of page as a discrete study, on the measures that fit real values
(:mod:`bncompare.studies.evaluate_gaussian`): conditional KL and held-out log-loss against N,
excess over the exact posterior predictive, calibration by the PIT, the joint KL of the fitted
network, cost, the training curves, a summary table, and the library mirrors. Each page reads
only the run directory.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bncompare.reports import evaluation_pages, study_pages, transformer_pages
from bncompare.reports.context import Ctx, header, save
from bncompare.reports.dag import draw_dag
from bncompare.reports.panels import Panel, PanelPage, panel_page, summary_lens, table_spread
from bncompare.reports.plots import PAGE, Z, fig_legend, line_panel, message_page, no_data, set_xscale, table


def dag_page(pdf, ctx: Ctx) -> None:
    run = ctx.data.runs_of(ctx.graph)[0]
    graph = run.dag
    if graph is None:
        message_page(pdf, f"{ctx.graph}: structure", "graph.json is missing from the run directory: no DAG to draw")
        return
    fig = plt.figure(figsize=PAGE)
    edges = sum(len(p) for p in graph.parents)
    header(fig, f"{ctx.graph}: the DAG", f"{graph.n_nodes} linear-Gaussian nodes, {edges} edges: each node is its "
           "intercept plus a weighted sum of its parents plus Normal noise; layers by topological depth")
    small = graph.n_nodes <= 24
    ax = fig.add_axes([0.02, 0.04, 0.62, 0.86] if small else [0.01, 0.02, 0.76, 0.88])
    draw_dag(ax, graph)
    if small:
        side = fig.add_axes([0.66, 0.3, 0.33, 0.6])
        rows = [[graph.names[m], ", ".join(graph.names[p] for p in graph.parents[m]) or "–",
                 str(len(graph.parents[m]) + 2)] for m in range(graph.n_nodes)]
        table(side, rows, ["node", "parents", "parameters"], fontsize=8, col_widths=[0.25, 0.55, 0.2])
    else:
        fig.text(0.78, 0.88, f"{graph.n_nodes} nodes, up to {max(len(p) for p in graph.parents)} parents,\n"
                 f"{sum(len(p) + 2 for p in graph.parents)} parameters in total", va="top", fontsize=9)
    fig.text(0.66 if small else 0.78, 0.06, run.truth.get("description", ""), fontsize=8.5, va="bottom", wrap=True)
    save(pdf, fig)


def _error_note(ctx: Ctx) -> str:
    text = ("KL(true ‖ est.) is exact: closed form against a Normal prediction, 1-D quadrature against a Student-t. "
            "It is infinite where an estimator answers a point mass (least squares with zero residuals, at N up to "
            "the number of parents + 1: its declared sigma floor counts as 0); such means are triangles. "
            "param_err: relative error of the fitted weights (estimators with a fitted network only).")
    partial = ctx.partial & set(ctx.estimators)
    if partial:
        text += (f" Not drawn here: {', '.join(ctx.styles.label(e) for e in sorted(partial))} (run on a subset of "
                 "the episodes); see their paired differences on the excess and agreement pages.")
    return text


ERROR = PanelPage(
    title="{graph}: estimation error against context length",
    subtitle=lambda ctx: "error of each node's predicted conditional at the query's parent values, averaged over "
    "nodes and queries; " + ctx.band_note() + ". Estimators run on a subset of episodes are left out.",
    panels=(Panel("cond_kl", "conditional KL(true ‖ est.) (nats)", ylog=True),
            Panel("query_nll", "held-out log-loss (nats per value)", zero_line=False),
            Panel("crps", "CRPS (units of the variables)", ylog=True),
            Panel("param_err", "relative error of the weights", ylog=True),
            Panel("cond_kl_inf_frac", "fraction of queries with infinite KL")),
    note=_error_note, grid=(2, 3), full_only=True,
)


def _node_panels(ctx: Ctx) -> list[Panel]:
    nodes = [n for n in dict.fromkeys(ctx.comb.loc[ctx.comb["metric"] == "cond_kl", "node"]) if n != "all"]
    return [Panel("cond_kl", ylog=True, node=n, title=n) for n in nodes]


PER_NODE = PanelPage(
    title="{graph}: conditional KL per node",
    subtitle=lambda ctx: "each panel: one node's conditional KL (nats) against N, log-log; " + ctx.band_note(),
    panels=_node_panels, missing="no per-node results", per_page=16, max_panels=48, full_only=True,
)

def _excess_subtitle(ctx: Ctx) -> str:
    ref = ctx.reference
    what = ctx.optimal_for(ref)
    text = (f"estimator error minus the reference's error on the same episodes (paired); below 0 = better than the "
            f"reference '{ctx.styles.label(ref) if ref else '?'}'"
            + (f", which minimizes expected {what}. " if what else ", not optimal under this study's truth. "))
    if not ctx.truth_from_prior:
        text += ("Here the truth is not drawn from the study prior, so the reference is a baseline, not the optimum: "
                 "any estimator may beat it. ")
    bands = f"95% t intervals across {len(ctx.seeds)} seeds" if len(ctx.seeds) > 1 else f"±{Z} SE"
    return text + (f"Bands: {bands} of the paired difference; markers with error bars: estimators run on a subset "
                   "of episodes. y axis: linear inside the grey band (typical noise level), logarithmic outside.")


EXCESS = PanelPage(
    title="{graph}: excess error over the reference",
    subtitle=_excess_subtitle,
    panels=(Panel("cond_kl_excess", "excess conditional KL (nats)", kind="excess"),
            Panel("query_nll_excess", "excess log-loss (nats per value)", kind="excess"),
            Panel("joint_kl_excess", "excess joint KL (nats)", kind="excess")),
    requires="cond_kl_excess", missing="No reference estimator in this study (set reference=<estimator name>).",
    rect=(0, 0.08, 1, 0.88),
)

FIDELITY = PanelPage(
    title="{graph}: sample fidelity against context length",
    subtitle=lambda ctx: "KL between the true joint Normal and the joint Normal of the network each estimator "
    "fitted (the distribution its generated samples come from), in closed form; estimators that fit no network "
    "(predictive densities only) are not drawn; " + ctx.band_note(),
    panels=(Panel("joint_kl", "joint KL(true ‖ fitted) (nats)", ylog=True),),
    requires="joint_kl", missing="No sample-fidelity metrics (fidelity.episodes=0, or no estimator fits a network).",
    rect=(0, 0.08, 1, 0.88), full_only=True,
)

SUMMARY = PanelPage(
    title="{graph}: summary",
    subtitle=lambda ctx: f"{table_spread(ctx)[1]} at selected context lengths; '–': not run there; bold: lowest "
    "mean in the column among estimators run on every episode; †: run on a subset of episodes, shown as its paired "
    "difference Δ to the estimator it mirrors; ‡: run at some context lengths only",
    panels=(Panel("cond_kl", "conditional KL (nats)", kind="table"),
            Panel("query_nll", "held-out log-loss (nats per value)", kind="table")),
    grid=(2, 1),
)


def _pit_histogram(ax, ctx: Ctx, n: int, ests: list[str]) -> bool:
    d = ctx.comb[(ctx.comb["context_len"] == n) & ctx.comb["metric"].str.startswith("pit_share@")]
    drawn = False
    for e in ests:
        x = d[d["estimator"] == e]
        if x.empty:
            continue
        bins = x["metric"].str.split("@").str[1].astype(int)
        order = np.argsort(bins.to_numpy())
        share = x["mean"].to_numpy()[order]
        edges = np.linspace(0, 1, len(share) + 1)
        ax.stairs(share * len(share), edges, color=ctx.styles.style.get(e, {}).get("color"),
                  label=ctx.styles.label(e), lw=1.2)
        drawn = True
    if drawn:
        ax.axhline(1, color="black", lw=0.8)
        ax.set_xlabel("PIT value F(x) of the query's value")
        ax.set_ylabel("density of PIT values (1 = calibrated)")
        ax.set_title(f"N = {n}", fontsize=10)
    return drawn


def calibration_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: proper scores and calibration"
    if not ctx.has("cover90"):
        message_page(pdf, title, "no calibration results in this run")
        return
    ests = ctx.full(ctx.estimators)
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "scores of each node's predictive distribution against the value the query row HAS: "
           "held-out log-loss −log q(x) (nats per value) and CRPS, both proper. Calibration by the probability "
           "integral transform (PIT) F(x) of each query value under its prediction: uniform when calibrated. Top "
           "right: the share of values inside the central 50% and 90% intervals (dotted: the nominal level); bottom: "
           "the PIT histogram pooled over a cell (peaked = overconfident, U-shaped... = too wide/narrow). "
           + ctx.band_note() + ".")
    top = [fig.add_axes([0.06 + 0.32 * i, 0.53, 0.25, 0.31]) for i in range(3)]
    for ax, (metric, label) in zip(top, (("query_nll", "held-out log-loss (nats per value)"),
                                         ("cover50", "share inside the central 50% interval"),
                                         ("cover90", "share inside the central 90% interval"))):
        if line_panel(ax, ctx.comb, metric, ests, ctx.styles):
            set_xscale(ax, ctx.lens)
            ax.set_ylabel(label)
        else:
            no_data(ax, f"no {metric} values")
    top[1].axhline(0.5, color="black", ls=":", lw=1)
    top[2].axhline(0.9, color="black", ls=":", lw=1)
    shown = summary_lens(ctx.lens, 3)
    bottom = [fig.add_axes([0.06 + 0.32 * i, 0.1, 0.25, 0.33]) for i in range(len(shown))]
    for ax, n in zip(bottom, shown):
        if not _pit_histogram(ax, ctx, n, ests):
            no_data(ax, f"no PIT histogram at N = {n}")
    fig_legend(fig, np.array(top), ncol=6)
    save(pdf, fig)


def agreement_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: library baselines vs the estimators they mirror"
    pairs = [(e, ctx.data.entry(ctx.graph, e).get("mirrors")) for e in ctx.estimators]
    pairs = [(e, m) for e, m in pairs
             if m and ((ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_loc")).any()]
    if not pairs:
        message_page(pdf, title, "No estimator in this study declares a 'mirrors' estimator.")
        return
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "each is run on the same episodes as the estimator it mirrors (slow ones on a subset): "
           "agreement = mean |difference of the predicted locations| per query, and the largest absolute difference "
           "of any predicted location or scale; right: conditional KL minus the mirror's on the same episodes "
           f"(±{Z} SE). Exact mirrors agree to rounding; MCMC/VI to their Monte Carlo/optimization error.")
    rows = []
    for e, m in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["node"] == "all")]
        loc, mx = d[d["metric"] == "agree_loc"], d[d["metric"] == "agree_max_abs"]
        rows.append([ctx.styles.label(e), ctx.styles.label(m), f"{int(loc['n'].max()) if len(loc) else 0}",
                     ", ".join(str(n) for n in sorted(loc["context_len"])), f"{float(loc['mean'].mean()):.2g}",
                     f"{float(mx['mean'].max()):.2g}"])
    ax = fig.add_axes([0.02, 0.55, 0.96, 0.33])
    table(ax, rows, ["estimator", "mirrors", "episodes per N", "context lengths N", "mean |Δ loc|",
                     "max |Δ| (worst N)"], fontsize=8, col_widths=[0.17, 0.17, 0.11, 0.2, 0.13, 0.22])
    ax = fig.add_axes([0.07, 0.07, 0.38, 0.4])
    for e, _ in pairs:
        d = ctx.comb[(ctx.comb["estimator"] == e) & (ctx.comb["metric"] == "agree_loc") & (ctx.comb["node"] == "all")]
        d = d.sort_values("context_len")
        ax.plot(d["context_len"], d["mean"].clip(lower=1e-17), "o-", ms=3, color=ctx.styles.style[e]["color"],
                label=ctx.styles.label(e))
    ax.set_yscale("log")
    set_xscale(ax, ctx.lens)
    ax.set_ylabel("mean |Δ loc| (log; 1e-17 = identical)", fontsize=8)
    ax.legend(fontsize=6)
    ax = fig.add_axes([0.57, 0.07, 0.38, 0.4])
    study_pages.paired_panel(ax, ctx, pairs, "cond_kl", "cond. KL")
    save(pdf, fig)


def training_page(pdf, ctx: Ctx) -> None:
    transformer_pages.training_page(pdf, ctx, transformer_pages.GAUSSIAN)


def learning_page(pdf, ctx: Ctx) -> None:
    transformer_pages.learning_page(pdf, ctx, transformer_pages.GAUSSIAN)


def cost_accuracy_page(pdf, ctx: Ctx) -> None:
    evaluation_pages.cost_accuracy_page(pdf, ctx, (("query_nll", "log-loss", "excess log-loss (nats per value)"),
                                                   ("cond_kl", "conditional KL", "excess conditional KL (nats)")))


PAGES = (
    dag_page,
    panel_page(ERROR),
    panel_page(PER_NODE),
    panel_page(EXCESS),
    calibration_page,
    panel_page(FIDELITY),
    training_page,
    learning_page,
    study_pages.cost_page,
    cost_accuracy_page,
    panel_page(SUMMARY),
    agreement_page,
)
