"""The pages that judge estimators as in-context learners are judged: proper scores and calibration, cost
against accuracy, and a shift away from the training prior.

Each page reads only the run directory's results (see :mod:`bncompare.reports.data`).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.transforms import blended_transform_factory

from bncompare.reports.context import Ctx, header, save
from bncompare.reports.data import truth_prior
from bncompare.reports.panels import summary_lens
from bncompare.reports.plots import PAGE, Z, fig_legend, line_panel, message_page, no_data, set_xscale


def _prior_text(prior: dict) -> str:
    params = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                       for k, v in (prior.get("params") or {}).items())
    return f"{prior.get('kind')}({params})"


def _lines(ax, ctx: Ctx, metric: str, ylabel: str, ests: list[str], ylog: bool = False) -> None:
    if not line_panel(ax, ctx.comb, metric, ests, ctx.styles, ylog=ylog):
        no_data(ax, f"no {metric} values")
        return
    set_xscale(ax, ctx.lens)
    ax.set_ylabel(ylabel)


# ----- proper scores and calibration ------------------------------------------------------------

def reliability(ax, ctx: Ctx, n: int, ests: list[str]) -> bool:
    """Mean forecast against observed frequency per bin, pooled over the cell's episodes, queries and nodes."""
    c = ctx.comb[(ctx.comb["context_len"] == n) & (ctx.comb["node"] == "all")]
    drawn = False
    for e in ests:
        d = c[c["estimator"] == e]
        pred, freq, count = (_bins(d, f"calib_{what}@") for what in ("pred", "freq", "count"))
        if pred.empty:
            continue
        x = pred.to_numpy(float)
        y, k = freq.reindex(pred.index).to_numpy(float), count.reindex(pred.index).to_numpy(float)
        order = np.argsort(x)
        st = ctx.styles.style.get(e, {})
        ax.plot(x[order], y[order], color=st.get("color"), ls=st.get("ls", "-"), lw=1.2, marker="o",
                ms=3, label=ctx.styles.label(e))
        # 95% binomial interval of the observed frequency, for the bins with few forecasts
        half = Z * np.sqrt(np.clip(y * (1 - y), 0, None) / np.maximum(k, 1))
        ax.fill_between(x[order], (y - half)[order], (y + half)[order], color=st.get("color"), alpha=0.08, lw=0)
        drawn = True
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"N = {n}", fontsize=10)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed frequency")
    return drawn


def _bins(d, prefix: str):
    """The rows ``<prefix><bin>`` of one cell as a series indexed by bin."""
    rows = d[d["metric"].str.startswith(prefix)]
    return rows.set_index(rows["metric"].str[len(prefix):].astype(int))["mean"]


def calibration_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: proper scores and calibration"
    if not ctx.has("ece"):
        message_page(pdf, title, "no calibration results in this run (it was made by a bncompare before 0.x "
                     "recorded query_nll, brier and ece): rerun the study")
        return
    ests = ctx.full(ctx.estimators)
    fig = plt.figure(figsize=PAGE)
    header(fig, title, "scores of each node's predicted distribution against the value the query row HAS "
           "(no true CPT needed): held-out log-loss −log q(x) in nats per query value (infinite when the estimator "
           "ruled the value out, drawn as ▲), multi-class Brier score Σ_k (q_k − [x=k])², both proper: minimized in "
           "expectation by the true conditional, and under the truth's prior by its posterior mean. Calibration: every "
           f"predicted probability q_k is a forecast of x = k, binned in tenths; ECE = Σ_b (n_b/n)|mean forecast − "
           f"frequency| over the pooled episodes of a cell (bands: ±{Z} bootstrap SE over episodes). "
           + ctx.band_note() + ".")
    top = [fig.add_axes([0.06 + 0.32 * i, 0.53, 0.25, 0.31]) for i in range(3)]
    _lines(top[0], ctx, "query_nll", "held-out log-loss (nats per value)", ests)
    _lines(top[1], ctx, "brier", "Brier score", ests)
    _lines(top[2], ctx, "ece", "expected calibration error", ests)
    shown = summary_lens(ctx.lens, 3)  # small, middle, large
    bottom = [fig.add_axes([0.06 + 0.32 * i, 0.1, 0.25, 0.33]) for i in range(len(shown))]
    for ax, n in zip(bottom, shown):
        if not reliability(ax, ctx, n, ests):
            no_data(ax, f"no reliability bins at N = {n}")
    for ax in top:
        ax.set_xlabel("")
    fig_legend(fig, np.array(top), ncol=6)
    save(pdf, fig)


# ----- cost against accuracy ---------------------------------------------------------------------

def _cost_lengths(ctx: Ctx, k: int = 2) -> list[int]:
    """The context lengths where the most estimators ran (the budget variants run at a few only)."""
    d = ctx.comb[(ctx.comb["metric"] == "seconds_per_context") & (ctx.comb["node"] == "all")]
    counts = d.groupby("context_len")["estimator"].nunique()
    if counts.empty:
        return []
    best = counts[counts == counts.max()].index.tolist()
    return sorted(best[len(best) // 2 :][:k] if len(best) > k else best)


def _frontier(ax, ctx: Ctx, n: int, metric: str, ylabel: str) -> bool:
    """Each estimator at N = n: paired excess error over the reference (on its own episodes) against its seconds
    per context, ±95% intervals on both; estimators of one kind (budgets, checkpoints) joined by a line."""
    excess = f"{metric}_excess"
    points, infinite = [], []
    for e in ctx.estimators + ctx.budgets:
        # s, sx: half-widths of the 95% intervals (1.96 SE over episodes; a t interval over seeds when merged)
        y, s = ctx.value(e, n, excess), ctx.value(e, n, excess, what="half95")
        x, sx = ctx.value(e, n, "seconds_per_context"), ctx.value(e, n, "seconds_per_context", what="half95")
        if e == ctx.reference_of(metric):
            y, s = 0.0, 0.0
        if np.isfinite(x) and x > 0 and np.isfinite(y):
            points.append((e, x, y, sx, s))
        elif np.isfinite(x) and x > 0 and np.isposinf(y):
            infinite.append((e, x))
    if not points:
        return False
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for e, x in infinite:  # e.g. MLE's log-loss while it rules values out: a marker on the top edge
        ax.plot([x], [0.97], transform=top, ls="none", marker="^", ms=6, clip_on=False,
                color=ctx.styles.style.get(e, {}).get("color"), label=ctx.styles.label(e))
    if infinite:
        ax.text(0.01, 0.9, "▲ on the top edge: infinite excess", transform=ax.transAxes, fontsize=7, color="0.3")
    for e, x, y, sx, s in points:
        st = ctx.styles.style.get(e, {})
        ax.errorbar([x], [y], xerr=[sx] if np.isfinite(sx) else None, yerr=[s] if np.isfinite(s) else None,
                    color=st.get("color"), marker="s" if e in ctx.partial else "o", ms=5, capsize=2, ls="none",
                    label=ctx.styles.label(e))
    series: dict[str, list] = {}  # an estimator and its declared other budgets (``budget_of``)
    for e, x, y, _, _ in points:
        series.setdefault(ctx.data.entry(ctx.graph, e).get("budget_of") or e, []).append((x, y, e))
    for members in series.values():
        if len(members) > 1:
            members.sort()
            ax.plot([m[0] for m in members], [m[1] for m in members], color="0.6", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ys = np.array([p[2] for p in points])
    lin = max(float(np.median([p[4] for p in points if np.isfinite(p[4]) and p[4] > 0] or [1e-4])), 1e-6)
    if (np.abs(ys) > 10 * lin).any():
        ax.set_yscale("symlog", linthresh=lin)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title(f"N = {n}", fontsize=10)
    ax.set_xlabel("seconds per context (fit + predict, log)")
    ax.set_ylabel(ylabel)
    return True


ACCURACY = (("query_nll", "log-loss", "excess log-loss (nats per value)"),
            ("cond_tv", "conditional TV", "excess conditional TV"))  # (metric, name, axis label) per row


def cost_accuracy_page(pdf, ctx: Ctx, accuracy=ACCURACY) -> None:
    """Error against cost, one row of panels per ``accuracy`` entry (the discrete study: log-loss and TV)."""
    title = f"{ctx.graph}: cost against accuracy"
    lens = _cost_lengths(ctx)
    if not lens or not ctx.has(f"{accuracy[0][0]}_excess"):
        message_page(pdf, title, "no paired excess errors or timings in this run: no cost-accuracy frontier")
        return
    against = ", ".join(f"{name} over '{ctx.styles.label(ctx.reference_of(metric) or '') or 'the reference'}'"
                        for metric, name, _ in accuracy)
    train = _training_seconds(ctx)
    fig, axes = plt.subplots(len(accuracy), len(lens), figsize=PAGE, squeeze=False)
    header(fig, title, "each estimator's error against its wall-clock seconds per context at the context lengths "
           f"where the most estimators ran. Error: paired excess over the reference on the estimator's own episodes "
           f"({against}; 0 = the reference; squares: run on a subset "
           f"of episodes), so points over different episodes compare fairly. Error bars: 95% intervals; "
           + ctx.band_note() + ". "
           "Grey lines join an estimator to its other budgets (declared budget_of): Pyro with more or fewer "
           "draws or steps, a trained transformer at checkpoints along its training (same cost per context; its label "
           "says what it computes rather than learns)."
           + (f" Training the transformer took {train}, paid once per study, not per context." if train else ""))
    for j, n in enumerate(lens):
        for i, (metric, _, label) in enumerate(accuracy):
            if not _frontier(axes[i, j], ctx, n, metric, label):
                no_data(axes[i, j], f"no {metric}_excess at N = {n}")
    fig.tight_layout(rect=(0, 0.1, 1, 0.86))
    fig_legend(fig, axes, ncol=5)
    save(pdf, fig)


def _training_seconds(ctx: Ctx) -> str:
    prep = ctx.prepare_seconds()
    trained = [(e, prep[e]) for e in ctx.tagged("has_history") if prep.get(e, 0) > 5]
    return ", ".join(f"{s:.0f} s ({ctx.styles.label(e)})" for e, s in trained)


# ----- off the training prior --------------------------------------------------------------------

def prior_shift_page(pdf, ctx: Ctx) -> None:
    """Drawn only when the truth's prior (eval_prior) is not the training prior."""
    cfg = ctx.data.config_of(ctx.graph)
    if not cfg.get("eval_prior"):
        return
    ests = ctx.full(ctx.estimators)
    truth, train = _prior_text(truth_prior(cfg)), _prior_text(cfg.get("prior") or {})
    fig, axes = plt.subplots(1, 3, figsize=PAGE, squeeze=False)
    ref = ctx.styles.label(ctx.reference) if ctx.reference else "none"
    header(fig, f"{ctx.graph}: off the training prior",
           "the trained transformers (each label says what it computes rather than learns) and the "
           f"Dirichlet({cfg.get('prior', {}).get('bayes_alpha', '?')}) estimators "
           f"assume the TRAINING prior {train}; the truth of every episode is drawn from {truth}. The reference "
           f"'{ref}' is the Bayes answer of the TRUE prior: the gap between the training prior's posterior mean and "
           "it is the price of the wrong prior, the gap between the transformer and that posterior mean is the "
           "transformer's own. " + ctx.band_note() + ".")
    _lines(axes[0, 0], ctx, "cond_tv", "conditional TV", ests, ylog=True)
    _lines(axes[0, 1], ctx, "query_nll", "held-out log-loss (nats per value)", ests)
    tv_ref = ctx.styles.label(ctx.reference_of("cond_tv") or "")
    _lines(axes[0, 2], ctx, "cond_tv_excess", f"excess conditional TV over '{tv_ref}'", ests)
    axes[0, 2].axhline(0, color="black", lw=0.8)
    fig.tight_layout(rect=(0, 0.08, 1, 0.86))
    fig_legend(fig, axes, ncol=5)
    save(pdf, fig)
