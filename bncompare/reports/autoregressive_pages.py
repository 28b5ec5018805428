"""The pages of an autoregressive study (``variables=autoregressive``), in the order of :data:`PAGES`.

Against the prefix length t: the error of the predicted next state, of the fitted transition and (with
noise) the log-loss; the trained linear transformer's weights next to the one-step-GD solution; the
training curves; cost; a summary table. Each page reads only the run directory
(:mod:`bncompare.studies.evaluate_autoregressive` says what each metric is).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bncompare.reports import study_pages
from bncompare.reports.context import Ctx, header, save
from bncompare.reports.panels import Panel, PanelPage, panel_page
from bncompare.reports.plots import PAGE, Z, fig_legend, line_panel, message_page, no_data, table

AXIS_TICKS = 8  # at most this many labelled prefix lengths on an axis


def t_axis(ax, lens) -> None:
    """A linear axis of prefix lengths with a few labelled ticks."""
    lens = sorted(lens)
    step = max(1, -(-len(lens) // AXIS_TICKS))
    ax.set_xticks(lens[::step] if lens[-1] in lens[::step] else lens[::step] + [lens[-1]])
    ax.set_xlabel("prefix length t (states seen)")


def _process(ctx: Ctx) -> dict:
    return ctx.data.runs_of(ctx.graph)[0].config.get("process") or {}


def process_page(pdf, ctx: Ctx) -> None:
    run = ctx.data.runs_of(ctx.graph)[0]
    p = _process(ctx)
    fig = plt.figure(figsize=PAGE)
    header(fig, f"{ctx.graph}: the process", "each episode is one sequence s_(t+1) = W s_t + sigma eps with its own "
           "W; an estimator sees the prefix s_1..s_t and predicts s_(t+1). A linear-Gaussian dynamic Bayesian network: "
           "a chain of d-dimensional nodes sharing one transition W.")
    rows = [[k, str(p.get(k, "?"))] for k in ("d", "T", "sigma", "law", "start", "spectral_radius")]
    table(fig.add_axes([0.05, 0.45, 0.4, 0.4]), rows, ["process setting", "value"], fontsize=10)
    fig.text(0.52, 0.85, run.truth.get("description", ""), fontsize=10, va="top", wrap=True)
    fig.text(0.52, 0.55, "Estimators (every one on the same sequences):\n" + "\n".join(
        f"  {ctx.styles.label(e)}" + (" (reference)" if e == ctx.reference else "") for e in ctx.estimators),
        fontsize=10, va="top")
    save(pdf, fig)


def _lines(fig, ctx: Ctx, spots, panels, ests) -> list:
    axes = []
    for rect, (metric, label, ylog) in zip(spots, panels):
        ax = fig.add_axes(rect)
        axes.append(ax)
        if line_panel(ax, ctx.comb, metric, ests, ctx.styles, ylog=ylog):
            t_axis(ax, ctx.lens)
            ax.set_ylabel(label)
        else:
            no_data(ax, f"no {metric} values in this run")
    return axes


GRID = ([0.07, 0.55, 0.39, 0.3], [0.57, 0.55, 0.39, 0.3], [0.07, 0.14, 0.39, 0.3], [0.57, 0.14, 0.39, 0.3])


def next_state_page(pdf, ctx: Ctx) -> None:
    ests = ctx.full(ctx.estimators)
    fig = plt.figure(figsize=PAGE)
    header(fig, f"{ctx.graph}: error of the predicted next state against t",
           "E||ŝ_(t+1) − s_(t+1)||² (summed over the d coordinates), the same over ||s_(t+1)||², and ||Ŵ − W||_F for "
           "estimators that fit a transition; " + ctx.band_note() + ". With sigma = 0, least squares and Procrustes "
           "are exact once t > d (values near 1e-20 are rounding).")
    axes = _lines(fig, ctx, GRID, (("next_err", "E||ŝ − s||² (log)", True),
                                   ("next_rel_err", "E[||ŝ − s||² / ||s||²] (log)", True),
                                   ("W_err", "||Ŵ − W||_F (log)", True),
                                   ("next_err_excess", f"next-state error − {ctx.styles.label(ctx.reference)}'s",
                                    False)), ests)
    fig_legend(fig, np.array(axes), ncol=4)
    save(pdf, fig)


def density_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: log-loss of the predictive distributions"
    if not ctx.has("query_nll"):
        message_page(pdf, title, "No log-loss here: the process has no noise (sigma = 0), so the next state is a "
                     "point, or no estimator predicts a distribution (point forecasts are scored on their error only).")
        return
    ests = ctx.full(ctx.estimators)
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "held-out log-loss −log q(s_(t+1)) (nats per coordinate) and KL(N(W s_t, sigma²) ‖ q) of "
           "each estimator that predicts a distribution (point forecasters are not drawn); " + ctx.band_note() + ".")
    axes = _lines(fig, ctx, GRID[:2] + GRID[2:3], (("query_nll", "log-loss (nats per coordinate)", False),
                                                    ("cond_kl", "KL(true ‖ predicted) (nats, log)", True),
                                                    ("query_nll_excess", "log-loss − the reference's", False)), ests)
    fig_legend(fig, np.array(axes), ncol=4)
    save(pdf, fig)


def _heat(ax, matrix, title: str) -> None:
    m = np.asarray(matrix, dtype=float)
    lim = float(np.abs(m).max()) or 1.0
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


def linear_weights_page(pdf, ctx: Ctx) -> None:
    """The trained one-layer linear transformer next to one GD step (Sander et al.'s claim), measured."""
    title = f"{ctx.graph}: what the trained linear transformer learned"
    runs = ctx.data.runs_of(ctx.graph)
    found = {e: a for e, a in runs[0].artifacts.items() if "map_learned" in a and e in ctx.estimators}
    if not found:
        message_page(pdf, title, "No trained linear transformer in this study (or its weights were not recorded).")
        return
    for e, art in found.items():
        fig = plt.figure(figsize=PAGE)
        dist, step = float(art.get("map_distance", float("nan"))), float(art.get("step", float("nan")))
        header(fig, f"{title} ({ctx.styles.label(e)})",
               f"top: its key-query and projection-value matrices (tokens e_t = (0, s_t, s_(t-1)), 3d wide) and those "
               f"of one gradient step from W = 0 with the optimal step eta* = {step:.4g}; "
               f"bottom left: the d x d map that plays eta* I in the GD solution. Relative Frobenius distance of the "
               f"learned prediction map to the GD step's: {dist:.3g}. Bottom right: its held-out next-state error "
               "over the one-GD-step optimum's on the same sequences (1 = the optimum).")
        for i, (key, name) in enumerate((("W_KQ", "learned W_KQ"), ("W_KQ_gd", "GD step W_KQ"),
                                         ("W_PV", "learned W_PV"), ("W_PV_gd", "GD step W_PV"))):
            if key in art:
                _heat(fig.add_axes([0.03 + 0.245 * i, 0.5, 0.2, 0.33]), art[key], name)
        _heat(fig.add_axes([0.03, 0.07, 0.2, 0.33]), art["map_learned"], "learned map (d x d)")
        if "map_gd" in art:
            _heat(fig.add_axes([0.275, 0.07, 0.2, 0.33]), art["map_gd"], "GD step: eta* I")
        ax = fig.add_axes([0.57, 0.08, 0.4, 0.33])
        _ratio_to_mirror(ax, ctx, e)
        save(pdf, fig)


def _ratio_to_mirror(ax, ctx: Ctx, e: str) -> None:
    """Mean next-state error of ``e`` over its mirror's at each t, with the paired difference's interval."""
    mirror = ctx.data.entry(ctx.graph, e).get("mirrors")
    c = ctx.comb[(ctx.comb["node"] == "all")]
    mine = c[(c["estimator"] == e) & (c["metric"] == "next_err")].set_index("context_len")["mean"]
    theirs = c[(c["estimator"] == mirror) & (c["metric"] == "next_err")].set_index("context_len")["mean"]
    diff = c[(c["estimator"] == e) & (c["metric"] == "next_err_vs_mirror")].set_index("context_len")
    t = sorted(set(mine.index) & set(theirs.index))
    if not t or mirror is None:
        no_data(ax, "no paired results against the one-GD-step estimator")
        return
    ratio = mine[t].to_numpy() / theirs[t].to_numpy()
    ax.plot(t, ratio, "o-", ms=3, color=ctx.styles.style.get(e, {}).get("color"), label=ctx.styles.label(e))
    if not diff.empty:
        half = (Z * diff["sem"].reindex(t)).to_numpy() / theirs[t].to_numpy()
        ax.fill_between(t, ratio - half, ratio + half, alpha=0.2, color=ctx.styles.style.get(e, {}).get("color"))
    ax.axhline(1, color="black", lw=1)
    for level in (0.98, 1.02):
        ax.axhline(level, color="0.5", ls=":", lw=1)
    ax.set_ylabel(f"next-state error / {ctx.styles.label(mirror)}'s")
    t_axis(ax, t)
    ax.text(0.02, 0.95, f"dotted: ±2%; band: ±{Z} SE of the paired difference", transform=ax.transAxes,
            fontsize=8, va="top")


def learning_page(pdf, ctx: Ctx) -> None:
    """Each trained transformer's training loss and held-out error against one GD step and least squares."""
    title = f"{ctx.graph}: training of the trained transformers"
    hist = {e: h for e, h in ctx.data.runs_of(ctx.graph)[0].histories.items() if e in ctx.estimators}
    if not hist:
        message_page(pdf, title, "No trained transformer in this study (or its training history was not recorded).")
        return
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "left: training loss (squared error of the forecast, running mean); right: held-out next-state "
           "error on sequences of their own seed stream, mean over the training's eval lengths, next to the "
           "optimal one-GD-step forecast and least squares on the same sequences.")
    left, right = fig.add_axes([0.07, 0.12, 0.39, 0.7]), fig.add_axes([0.57, 0.12, 0.39, 0.7])
    for i, (e, h) in enumerate(hist.items()):
        color = ctx.styles.style.get(e, {}).get("color", f"C{i}")
        win = max(1, len(h) // 50)
        left.plot(h["step"], h["loss"].rolling(win, min_periods=1).mean(), color=color, label=ctx.styles.label(e))
        if "eval_err" in h:
            ev = h.dropna(subset=["eval_err"])
            right.plot(ev["step"], ev["eval_err"], "o-", ms=3, color=color, label=ctx.styles.label(e))
            for key, ls, name in (("eval_gd_err", "--", "one GD step"), ("eval_ls_err", ":", "least squares")):
                if key in ev:
                    right.plot(ev["step"], ev[key].clip(lower=1e-30), ls, color=color, lw=1,
                               label=f"{name} (its eval sequences)")
    for ax, label in ((left, "training loss"), (right, "held-out E||ŝ − s||²")):
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    save(pdf, fig)


SUMMARY = PanelPage(
    title="{graph}: summary",
    subtitle=lambda ctx: "next-state error and ||Ŵ − W||_F at selected prefix lengths; '–': not run there; bold: "
    "lowest mean in the column; †: run on a subset of episodes, shown as its paired difference Δ to the estimator "
    "it mirrors",
    panels=(Panel("next_err", "next-state error E||ŝ − s||²", kind="table"),
            Panel("W_err", "||Ŵ − W||_F", kind="table")),
    grid=(2, 1),
)


PAGES = (
    process_page,
    next_state_page,
    density_page,
    linear_weights_page,
    learning_page,
    study_pages.cost_page,
    panel_page(SUMMARY),
)
