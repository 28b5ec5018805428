"""Panel pages, declared as data: one builder draws the error, excess, fidelity, per-node and summary pages.

A :class:`PanelPage` says what goes on a page (a title, a subtitle, which
panels, what the page needs); :func:`draw_panel_page` lays the panels out on a
grid and draws each one: a line panel (mean and 95% interval against N for
every estimator), an excess panel (the same on a symlog axis around 0) or a
table panel (mean ± SE at a few context lengths, ± the 95% half-width across
seeds in a multi-seed merge; the best in bold).
"""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from bncompare.reports.context import Ctx, header, save
from bncompare.reports.plots import PAGE, Z, fig_legend, fmt, line_panel, message_page, no_data, set_xscale, table


@dataclass(frozen=True)
class Panel:
    metric: str
    ylabel: str = ""
    ylog: bool = False
    kind: str = "line"  # line | excess | table
    node: str = "all"
    title: str | None = None
    zero_line: bool = True  # a line at 0 on a linear axis (off for scores far from 0, e.g. the log-loss)


@dataclass(frozen=True)
class PanelPage:
    title: str  # "{graph}" is replaced by the graph's name
    subtitle: str | Callable[[Ctx], str]
    panels: tuple[Panel, ...] | Callable[[Ctx], list[Panel]]
    requires: str | None = None  # a metric the page needs; without it the page is ``missing``
    missing: str = ""
    note: str | Callable[[Ctx], str] | None = None  # text in the last cell of the grid
    grid: tuple[int, int] | None = None  # rows, cols; default one row
    full_only: bool = False  # raw means: leave out estimators run on a subset of episodes (shown in pairs elsewhere)
    per_page: int | None = None  # split long panel lists over several pages
    max_panels: int | None = None
    rect: tuple[float, float, float, float] = (0, 0.07, 1, 0.92)


def draw_panel_page(pdf, ctx: Ctx, page: PanelPage) -> None:
    title = page.title.format(graph=ctx.graph)
    if page.requires is not None and not ctx.has(page.requires):
        message_page(pdf, title, page.missing)
        return
    panels = list(page.panels(ctx) if callable(page.panels) else page.panels)
    if not panels:
        message_page(pdf, title, page.missing)
        return
    subtitle = page.subtitle(ctx) if callable(page.subtitle) else page.subtitle
    shown = panels[: page.max_panels] if page.max_panels else panels
    chunk = page.per_page or len(shown)
    for start in range(0, len(shown), chunk):
        part = shown[start : start + chunk]
        suffix = ""
        if len(shown) > chunk or len(panels) > len(shown):
            suffix = f" (nodes {start + 1}-{start + len(part)} of {len(panels)}" + (
                f"; first {page.max_panels} shown)" if len(panels) > len(shown) else ")")
        _draw(pdf, ctx, page, part, title + suffix, subtitle)


def _draw(pdf, ctx: Ctx, page: PanelPage, panels: list[Panel], title: str, subtitle: str) -> None:
    cells = len(panels) + (page.note is not None)
    if page.grid:
        rows, cols = page.grid
        rows = max(rows, -(-cells // cols))  # more panels than the grid holds: more rows
    elif page.per_page:
        cols = 4 if cells > 9 else 3 if cells > 4 else 2
        rows = -(-cells // cols)
    else:
        rows, cols = 1, cells
    tables = all(p.kind == "table" for p in panels)
    fig, axes = plt.subplots(rows, cols, figsize=PAGE, squeeze=False, sharex=bool(page.per_page))
    header(fig, title, subtitle)
    ests = ctx.full(ctx.estimators) if page.full_only else list(ctx.estimators)
    flat = list(axes.flat)
    for ax, panel in zip(flat, panels):
        DRAW[panel.kind](ax, ctx, panel, ests)
        if page.per_page:
            ax.set_xlabel("N" if ax in axes[-1] else "")
            ax.tick_params(labelsize=7)
    if page.note is not None:
        ax = flat[len(panels)]
        ax.axis("off")
        note = page.note(ctx) if callable(page.note) else page.note
        ax.text(0.0, 0.95, textwrap.fill(note, 70), va="top", fontsize=9, transform=ax.transAxes)
    for ax in flat[cells:]:
        ax.axis("off")
    if tables:
        fig.subplots_adjust(left=0.24, right=0.98, top=0.86, bottom=0.04, hspace=0.25)
    else:
        fig.tight_layout(rect=page.rect)
        fig_legend(fig, axes, ncol=5)
    save(pdf, fig)


# ----- the panel kinds ---------------------------------------------------------------------

def _line(ax, ctx: Ctx, panel: Panel, ests: list[str]) -> None:
    if not line_panel(ax, ctx.comb, panel.metric, ests, ctx.styles, node=panel.node, ylog=panel.ylog):
        no_data(ax, f"no {panel.metric} values")
        return
    set_xscale(ax, ctx.lens)
    ax.set_ylabel(panel.ylabel)
    if panel.title:
        ax.set_title(panel.title, fontsize=10)
    if not panel.ylog and panel.zero_line:
        ax.axhline(0, color="black", lw=0.8)
    if panel.metric.endswith("_frac"):
        ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))


def _excess(ax, ctx: Ctx, panel: Panel, ests: list[str]) -> None:
    """Linear inside the typical noise band (|y| < median 1.96 SE), logarithmic outside it."""
    if not line_panel(ax, ctx.comb, panel.metric, ests, ctx.styles):
        no_data(ax, f"no {panel.metric}")
        return
    set_xscale(ax, ctx.lens)
    sem = ctx.comb.loc[(ctx.comb["metric"] == panel.metric) & (ctx.comb["node"] == "all"), "sem"]
    sem = sem[np.isfinite(sem) & (sem > 0)]
    lin = float(max(Z * sem.median(), 1e-6)) if len(sem) else 1e-4
    ax.set_yscale("symlog", linthresh=lin)
    ax.axhspan(-lin, lin, color="0.9", zorder=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, lin=lin: "0" if v == 0 else
                                               (f"{v:g}" if abs(v) >= lin * 0.999 else "")))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(panel.ylabel + " (symlog)")


def summary_lens(lens: list[int], k: int = 5) -> list[int]:
    return lens if len(lens) <= k else [lens[i] for i in np.linspace(0, len(lens) - 1, k).round().astype(int)]


def table_spread(ctx: Ctx) -> tuple[str, str]:
    """What follows ± in a summary table cell (a column of ``ctx.comb``), and how the page says it."""
    if len(ctx.seeds) > 1:
        s = len(ctx.seeds)
        return "half95", (f"mean ± half-width of the 95% t interval across {s} seeds (Student t, {s - 1} "
                          f"degree{'s' if s > 2 else ''} of freedom, × SE of the per-seed means)")
    return "sem", "mean ± SE over episodes"


def _table(ax, ctx: Ctx, panel: Panel, ests: list[str]) -> None:
    """mean ± spread per estimator at a few context lengths; bold: the lowest among estimators run on every episode.

    The spread is the SE over episodes for one seed, the half-width of the 95% t interval across seeds for several.

    An estimator run on a subset of episodes shows its paired difference to the estimator it mirrors on the
    same episodes ("Δ"), never a raw mean next to full-episode means.
    """
    lens = summary_lens(ctx.lens)
    spread = table_spread(ctx)[0]
    rows, labels = [], []
    for e in ests:
        mirror = ctx.data.entry(ctx.graph, e).get("mirrors")
        if e in ctx.partial and mirror:
            metric = f"{panel.metric}_vs_mirror"
            rows.append(["Δ " + fmt(ctx.value(e, n, metric), ctx.value(e, n, metric, what=spread))
                         if np.isfinite(ctx.value(e, n, metric)) else "–" for n in lens])
            labels.append(f"{ctx.styles.label(e)} − its mirror †")
        elif e in ctx.partial:
            continue  # nothing to pair it with here: its excess over the reference is on the excess page
        else:
            rows.append([fmt(ctx.value(e, n, panel.metric), ctx.value(e, n, panel.metric, what=spread))
                         for n in lens])
            labels.append(ctx.styles.label(e) + (" ‡" if e in ctx.styles.subset else ""))
    table(ax, rows, [f"N = {n}" for n in lens], rows=labels, fontsize=8, title=panel.ylabel)
    if not ax.tables:
        return
    shown = [e for e in ests if e not in ctx.partial or ctx.data.entry(ctx.graph, e).get("mirrors")]
    for j, n in enumerate(lens):
        vals = [(ctx.value(e, n, panel.metric), e) for e in shown if e not in ctx.partial]
        vals = [v for v in vals if np.isfinite(v[0])]
        if vals:
            ax.tables[0][(shown.index(min(vals)[1]) + 1, j)].set_text_props(fontweight="bold")


DRAW = {"line": _line, "excess": _excess, "table": _table}


# ----- the pages ---------------------------------------------------------------------------

def _error_note(ctx: Ctx) -> str:
    text = ("KL is infinite when an estimator gives probability 0 to a value the true CPT allows (MLE and the naive "
            "prefix MLE do at small N); such means are shown as triangles and the fraction of queries with infinite "
            "KL is plotted separately instead of clipping.")
    floored = [ctx.styles.label(e) for e in ctx.tagged("floors_are_zeros")]
    if floored:
        text += (f" {', '.join(floored)}: computed in floating point, they answer ~1e-12 where the rule they compute "
                 "has an exact 0 (MLE has such zeros, the Dirichlet mean none); probabilities below the error bound "
                 "count as 0 here (MLE's convention), so the KL is the rule's, not a finite value set by the floor.")
    partial = ctx.partial & set(ctx.estimators)
    if partial:
        text += (f" Not drawn here: {', '.join(ctx.styles.label(e) for e in sorted(partial))} (run on a subset of "
                 "the episodes); see their paired differences on the excess and agreement pages.")
    return text


def _error_panels(ctx: Ctx) -> list[Panel]:
    """Distances to the true conditionals; led by the held-out log-loss where the truth declares it the headline
    (real data: the 'true' CPTs are only a refit on held-out rows)."""
    panels = [Panel("cond_tv", "conditional TV (0 to 1)", ylog=True),
              Panel("cond_kl", "conditional KL(true ‖ est.) (nats)", ylog=True),
              Panel("cond_kl_inf_frac", "fraction of queries with infinite KL")]
    if ctx.headline == "query_nll":
        panels = [Panel("query_nll", "held-out log-loss (nats per query value)", zero_line=False)] + panels[:2]
    return panels


def _error_subtitle(ctx: Ctx) -> str:
    lead = ("HEADLINE: held-out log-loss, −log q(x) of each query row's own value (real held-out rows; the proper "
            "score, needing no true CPT). Then the distance to CPTs refitted on the held-out rows (they carry the "
            "refit's own error). " if ctx.headline == "query_nll" else "")
    return (lead + "error of each node's predicted conditional at the query's parent values, averaged over nodes "
            "and queries; " + ctx.band_note() + ". Estimators run on a subset of episodes are left out (their means "
            "are over other episodes).")


ERROR = PanelPage(
    title="{graph}: estimation error against context length",
    subtitle=_error_subtitle,
    panels=_error_panels,
    note=_error_note,
    grid=(2, 2),
    full_only=True,
)


def _node_panels(ctx: Ctx) -> list[Panel]:
    nodes = [n for n in dict.fromkeys(ctx.comb.loc[ctx.comb["metric"] == "cond_tv", "node"]) if n != "all"]
    return [Panel("cond_tv", ylog=True, node=n, title=n) for n in nodes]


PER_NODE = PanelPage(
    title="{graph}: conditional TV per node",
    subtitle=lambda ctx: "each panel: one node's conditional TV (0 to 1) against N, log-log; " + ctx.band_note(),
    panels=_node_panels, missing="no per-node results", per_page=16, max_panels=48, full_only=True,
)

def excess_subtitle(ctx: Ctx) -> str:
    """Which reference each excess is measured against, and what (if anything) it is optimal for."""
    def says(e):
        what = ctx.optimal_for(e)
        return f"'{ctx.styles.label(e)}'" + (f" (minimizes expected {what})" if what
                                             else " (not optimal under this study's prior)")

    tv_ref, kl_ref = ctx.reference_of("cond_tv"), ctx.reference
    text = (f"estimator error minus the reference's error on the same episodes (paired); below 0 = better than the "
            f"reference. Conditional TV against {says(tv_ref)}; KL and the joint measures against {says(kl_ref)}. ")
    if not ctx.truth_from_prior:
        text += ("Here the truth is not drawn from the study prior, so neither reference is optimal: they are "
                 "baselines, and any estimator may beat them. ")
    else:
        text += ("Each reference is optimal in expectation only for its own loss when the truth is drawn from its "
                 "prior; an excess of any other measure can be negative")
        if tv_ref == kl_ref:
            text += " (conditional TV included: its reference is the KL-optimal estimator)"
        elif "binary" in ctx.optimal_for(tv_ref):
            text += " (conditional TV too on nodes with more than 2 states, where the TV reference answers the mean)"
        text += ". "
    bands = f"95% t intervals across {len(ctx.seeds)} seeds" if len(ctx.seeds) > 1 else f"±{Z} SE"
    return text + (f"Bands: {bands} of the paired difference; markers with error bars: estimators run on a subset "
                   "of episodes. y axis: linear inside the grey band (typical noise level), logarithmic outside.")


EXCESS = PanelPage(
    title="{graph}: excess error over the reference",
    subtitle=excess_subtitle,
    panels=lambda ctx: [
        Panel("cond_tv_excess", "excess conditional TV", kind="excess"),
        Panel("cond_kl_excess", "excess conditional KL (nats)", kind="excess"),
        Panel("joint_tv_excess", "excess joint TV", kind="excess") if ctx.has("joint_tv_excess")
        else Panel("mc_pair_tv_excess", "excess pairwise-marginal TV", kind="excess")],
    requires="cond_tv_excess", missing="No reference estimator in this study (set reference=<estimator name>).",
    rect=(0, 0.08, 1, 0.88),
)


FIDELITY_EXACT = PanelPage(
    title="{graph}: sample fidelity against context length",
    subtitle=lambda ctx: "exact distance between the true joint distribution and the one implied by each estimator's "
    "conditionals on every prefix (the network its generated samples come from), over all joint states; "
    + ctx.band_note(),
    panels=(Panel("joint_tv", "joint TV (0 to 1)", ylog=True),
            Panel("joint_kl", "joint KL(true ‖ implied) (nats)", ylog=True)),
    requires="joint_tv", rect=(0, 0.08, 1, 0.88), full_only=True,
)

FIDELITY_MC = PanelPage(
    title="{graph}: sample fidelity against context length",
    subtitle=lambda ctx: "Monte Carlo (too many joint states for exact sums): samples generated by each estimator vs "
    "fresh true samples of the same size; TV of pairwise marginals averaged over node pairs (includes a sampling-noise "
    "floor); mean true log-likelihood of true minus generated samples (0 = as typical as real data), over the "
    "generated samples the truth can produce; and the share it cannot (zero CPT entries of real networks); "
    + ctx.band_note(),
    panels=(Panel("mc_pair_tv", "pairwise-marginal TV (0 to 1)", ylog=True),
            Panel("mc_loglik_gap", "true log-lik gap (nats per sample)"),
            Panel("mc_impossible_frac", "share of impossible generated samples")),
    requires="mc_pair_tv", missing="No sample-fidelity metrics (fidelity.episodes=0?).", rect=(0, 0.08, 1, 0.88),
    full_only=True,
)

SUMMARY = PanelPage(
    title="{graph}: summary",
    subtitle=lambda ctx: f"{table_spread(ctx)[1]} at selected context lengths; '–': not run there; bold: lowest "
    "mean in the column among estimators run on every episode; "
    "†: run on a subset of episodes, shown as its paired difference Δ to the estimator it mirrors (agreement page) "
    "on the same episodes; ‡: run at some context lengths only",
    panels=lambda ctx: [Panel("query_nll", "held-out log-loss (nats per query value)", kind="table")]
    * (ctx.headline == "query_nll") + [Panel("cond_tv", "conditional TV", kind="table"),
                        Panel("joint_tv", "joint TV", kind="table") if ctx.has("joint_tv")
                        else Panel("mc_pair_tv", "pairwise-marginal TV", kind="table")],
    grid=(2, 1),
)


def panel_page(page: PanelPage) -> Callable:
    """A page function (pdf, ctx) for ``page``."""
    def draw(pdf, ctx: Ctx) -> None:
        draw_panel_page(pdf, ctx, page)

    draw.__name__ = f"panel_page_{page.title}"
    return draw


def first_of(*pages: PanelPage) -> Callable:
    """The first page whose required metric the study has (e.g. exact joint fidelity, else Monte Carlo)."""
    def draw(pdf, ctx: Ctx) -> None:
        page = next((p for p in pages if p.requires is None or ctx.has(p.requires)), pages[-1])
        draw_panel_page(pdf, ctx, page)

    return draw
