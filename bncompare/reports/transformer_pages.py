"""The pages about transformer estimators: training curve, learning by context length, attention, structure-agnostic."""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from bncompare.reports.context import Ctx, header, save
from bncompare.reports.plots import PAGE, fmt, half_width, message_page, no_data, set_xscale, table


@dataclass(frozen=True)
class Measure:
    """What a training history measures, by the kind of network: its columns (``eval_<key>@N``) and words."""

    key: str  # tv | kl: the columns eval_<key>, eval_bayes_<key>, eval_mle_<key>, and @N per context length
    name: str  # "conditional TV"
    loss: str  # what the training loss is
    bayes: str  # the Bayes answer the curves are compared with
    bayes_note: str  # why that answer is the floor


DISCRETE = Measure("tv", "conditional TV", "cross-entropy of each query target against the training target, in "
                   "nats per target", "Dirichlet posterior mean",
                   "which minimizes this loss in expectation when the training prior is Dirichlet (the floor a "
                   "perfect learner reaches there)")
GAUSSIAN = Measure("kl", "conditional KL", "KL(true conditional || prediction) of each query target, in nats per "
                   "target", "exact NIG posterior predictive",
                   "which minimizes this loss in expectation under the training prior (the floor a perfect learner "
                   "reaches)")


def hard_wired(entry: dict) -> str:
    """What a trained model's declaration (estimators.json) says it computes rather than learns, as a sentence;
    '' for an estimator that is not trained or a run directory too old to record it."""
    tags = entry.get("tags") or {}
    computed = tags.get("computed")
    if tags.get("family") != "trained" or computed is None:
        return ""
    if not computed:
        return "Computed rather than learned: nothing (learned end to end)."
    return "Computed rather than learned: " + "; ".join(f"({i}) {p}" for i, p in enumerate(computed, 1)) + "."


def _target_note(entry: dict) -> str:
    """For a model trained to imitate the context's MLE (``loss=mle``, the paper's public code's target): what its
    training loss measures then."""
    train_cfg = (entry.get("params") or {}).get("train_cfg") or {}
    if not isinstance(train_cfg, dict) or train_cfg.get("loss") != "mle":
        return ""
    return ("This model is trained to imitate the context's MLE (loss = mle), not the true CPT: its loss is against "
            "the MLE row, whose minimizer is MLE itself, so the dashed line is not its floor. ")


def training_page(pdf, ctx: Ctx, measure: Measure = DISCRETE) -> None:
    title = f"{ctx.graph}: training curves of the trained models"
    runs = ctx.data.runs_of(ctx.graph)
    hist = {name: h for name, h in runs[0].histories.items() if name in ctx.tagged("has_history")}
    if not hist:
        message_page(pdf, title, "No trained estimator in this study (or its training history was not recorded).")
        return
    for name, h in hist.items():
        fig, axes = plt.subplots(1, 2, figsize=PAGE)
        secs = h["train_seconds"].dropna().iloc[-1] if "train_seconds" in h else float("nan")
        header(fig, f"{ctx.graph}: training curve of {ctx.styles.label(name)}",
                f"{len(h)} steps in {secs:.0f} s (seed {runs[0].seed}); loss = {measure.loss}, on the training "
                f"batches. Dashed: the {measure.bayes} on the same batches, {measure.bayes_note}. "
                + _target_note(ctx.data.entry(ctx.graph, name)) + hard_wired(ctx.data.entry(ctx.graph, name)))
        ax = axes[0]
        win = max(1, len(h) // 50)
        ax.plot(h["step"], h["loss"], color="C0", alpha=0.25, lw=0.6)
        ax.plot(h["step"], h["loss"].rolling(win, min_periods=1).mean(), color="C0", lw=1.8,
                label=f"transformer (running mean over {win} steps)")
        if "bayes_loss" in h and h["bayes_loss"].notna().any():
            ax.plot(h["step"], h["bayes_loss"].rolling(win, min_periods=1).mean(), color="black", ls="--", lw=1.5,
                    label=f"{measure.bayes} on the same batches")
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
        k = measure.key
        ev = h.dropna(subset=[f"eval_{k}"]) if f"eval_{k}" in h else pd.DataFrame()
        if ev.empty:
            no_data(ax, "no held-out evaluation during training\n(transformer.train.eval_every = 0)")
        else:
            ax.plot(ev["step"], ev[f"eval_{k}"], "o-", color="C0", label="transformer")
            if f"eval_bayes_{k}" in ev:
                ax.plot(ev["step"], ev[f"eval_bayes_{k}"], "--", color="black", label=measure.bayes)
            if f"eval_mle_{k}" in ev and ev[f"eval_mle_{k}"].abs().max() < 1e6:  # MLE's floored KL can explode
                ax.plot(ev["step"], ev[f"eval_mle_{k}"], ":", color="C3", label="MLE")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"held-out {measure.name}")
            ax.set_title("held-out tasks (own seed stream), mean over the training's eval lengths", fontsize=9)
            ax.legend(fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.87))
        save(pdf, fig)


def eval_lengths(history: pd.DataFrame, key: str = "tv") -> list[int]:
    """Context lengths N with a held-out record and its Bayes reference (``eval_tv@N``, ``eval_bayes_tv@N``)."""
    pattern = re.compile(rf"^eval_{key}@(\d+)$")
    found = [int(m.group(1)) for c in history.columns if (m := pattern.match(c))]
    return sorted(n for n in found if f"eval_bayes_{key}@{n}" in history)


def learning_page(pdf, ctx: Ctx, measure: Measure = DISCRETE) -> None:
    """Held-out error ratio to Bayes per context length, against training step and wall-clock seconds."""
    k = measure.key
    title = f"{ctx.graph}: learning, by context length"
    runs = ctx.data.runs_of(ctx.graph)
    hist = {name: h for name, h in runs[0].histories.items()
            if name in ctx.tagged("has_history") and eval_lengths(h, k)}
    if not hist:
        message_page(pdf, title, "No per-context-length held-out evaluation in the training history "
                     f"(eval_{k}@N and eval_bayes_{k}@N columns): nothing to draw.")
        return
    agnostic = set(ctx.tagged("graph_agnostic"))
    for name, h in hist.items():
        lens = eval_lengths(h, k)
        fig, axes = plt.subplots(1, 2, figsize=PAGE, squeeze=False)
        reference = ("1 = as good as the posterior mean, the optimum for log loss; it is not the TV optimum, "
                     "so a ratio slightly below 1 is possible") if k == "tv" else (
                     f"1 = as good as the {measure.bayes}, the optimum for this loss under the training prior")
        if name in agnostic:  # its training tasks draw their own DAG and are written on the complete graph
            reference = ("here the posterior mean given EVERY earlier node: each training task draws its own DAG, "
                         "so that reference is not the optimum, and a ratio below 1 shows sparser parent sets found")
        header(fig, f"{title} ({ctx.styles.label(name)})",
               f"held-out {measure.name} of the transformer divided by that of the {measure.bayes} on the same "
               f"held-out tasks ({reference}), one line per context length N. "
               "Dashed: MLE / Bayes on the same tasks, where recorded. " + hard_wired(ctx.data.entry(ctx.graph, name)))
        colors = plt.get_cmap("viridis")
        for ax, x, xlabel in ((axes[0, 0], "step", "training step"), (axes[0, 1], "seconds", "wall-clock seconds")):
            if x not in h:
                no_data(ax, f"no '{x}' column in the history")
                continue
            for i, n in enumerate(lens):
                ev = h.dropna(subset=[f"eval_{k}@{n}", f"eval_bayes_{k}@{n}", x])
                color = colors(i / max(1, len(lens) - 1))
                ax.plot(ev[x], ev[f"eval_{k}@{n}"] / ev[f"eval_bayes_{k}@{n}"], "o-", ms=3, color=color,
                        label=f"N = {n}")
                if f"eval_mle_{k}@{n}" in ev and ev[f"eval_mle_{k}@{n}"].abs().max() < 1e6:  # a floored KL explodes
                    ax.plot(ev[x], ev[f"eval_mle_{k}@{n}"] / ev[f"eval_bayes_{k}@{n}"], "--", lw=0.8, color=color)
            ax.axhline(1, color="black", lw=1)
            ax.set_yscale("log")  # the untrained start sits 10x above the reference; the end within a few percent
            ax.yaxis.set_major_locator(FixedLocator([0.5, 0.7, 0.8, 0.9, 1, 1.1, 1.5, 2, 5, 10, 20]))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"held-out {k.upper()} / Bayes {k.upper()} (log scale)")
            ax.legend(fontsize=8, ncol=2)
        fig.tight_layout(rect=(0, 0, 1, 0.88))
        save(pdf, fig)


def attention_page(pdf, ctx: Ctx) -> None:
    title = f"{ctx.graph}: where do transformer queries attend?"
    d = ctx.comb[ctx.comb["metric"].str.startswith("attn_")]
    ests = [e for e in ctx.estimators if e in set(d["estimator"])]
    if not ests:
        message_page(pdf, title, "No transformer estimator with an attention diagnostic in this study.")
        return
    fig, axes = plt.subplots(2, len(ests), figsize=PAGE, squeeze=False)
    header(fig, title, "every layer (L<layer> H<head>), queries of non-root nodes, rows matched on the TRUE parents "
           "(a structure-"
            "agnostic model is never told them). Top: share of each head's attention on context rows "
            "whose parent values equal the query's (the rows the counting solution averages); dashed: the share "
            "those rows would get under uniform attention. Bottom: where the best head's attention goes. "
           + " ".join(f"{ctx.styles.label(e)}: {hard_wired(ctx.data.entry(ctx.graph, e))}" for e in ests
                      if hard_wired(ctx.data.entry(ctx.graph, e))))
    for j, e in enumerate(ests):
        de = d[d["estimator"] == e]
        ax = axes[0, j]
        heads = sorted(set(de["node"]))
        for head in heads:
            x = de[(de["node"] == head) & (de["metric"] == "attn_match")].sort_values("context_len")
            ax.errorbar(x["context_len"], x["mean"], yerr=np.nan_to_num(half_width(x)), marker="o", ms=3, lw=1.2,
                        capsize=2, label=head.replace(".", " "))
        ch = de[de["metric"] == "attn_chance"].groupby("context_len")["mean"].mean()
        ax.plot(ch.index, ch.values, "k--", lw=1.2, label="uniform attention")
        set_xscale(ax, sorted(de["context_len"].unique()))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("attention share on matching rows")
        ax.set_title(textwrap.fill(ctx.styles.label(e), 45), fontsize=9)
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
    save(pdf, fig)


def agnostic_page(pdf, ctx: Ctx) -> None:
    """Only in studies with a structure-agnostic transformer: what it is, and its error next to the baselines."""
    agn = [e for e in ctx.tagged("graph_agnostic") if ctx.data.tag(ctx.graph, e, "family") == "trained"]
    if not agn:
        return
    e0 = ctx.data.entry(ctx.graph, agn[0])
    p = e0.get("params") or {}
    fig = plt.figure(figsize=PAGE)
    header(fig, f"{ctx.graph}: the structure-agnostic transformer",
            "never told the parents: trained on a fresh Erdos-Renyi DAG (edge probability ~ U[{}, {}], at most {} "
            "parents) and fresh Dirichlet CPTs per task, on {} nodes with this graph's cardinalities; one cached model "
            "serves every graph of that layout. It must find the parents in context: the attention page shows the "
            "share of attention on rows matching the query on the TRUE parents. "
            "Baselines: naive = prefix MLE (no graph); MLE and Bayes posterior mean use the true graph ({}); "
            "Bayes over DAGs, when present, is the limit of an estimator not told the graph (the posterior "
            "predictive averaged over every DAG of the agnostic model's training prior); a "
            "structure-aware trained TF, when present, is trained on this graph only (each label says what the model "
            "computes rather than learns).".format(
                p.get("p_low"), p.get("p_high"), p.get("max_parents"), "the same number of",
                "each episode's own DAG" if ctx.data.runs_of(ctx.graph)[0].truth.get("per_episode_dags")
                else "the study's graph"))
    full = ctx.full(ctx.estimators)  # raw means side by side: estimators run on every episode only
    rows = [[fmt(ctx.value(e, n, "cond_tv"), ctx.value(e, n, "cond_tv", what="sem")) for n in ctx.lens] for e in full]
    ax = fig.add_axes([0.3, 0.46, 0.68, 0.3])
    table(ax, rows, [f"N = {n}" for n in ctx.lens], rows=[ctx.styles.label(e) for e in full], fontsize=8,
          title="conditional TV at the query's true parent values (mean ± SE)")
    # Does it find the parents? The head with most attention on true-parent-matching rows, vs uniform attention.
    att = ctx.comb[ctx.comb["metric"] == "attn_match"]
    rows, labels = [], []
    for e in [x for x in ctx.estimators if x in set(att["estimator"])]:
        best = att[att["estimator"] == e].groupby("node")["mean"].mean().idxmax()
        rows.append([fmt(ctx.value(e, n, "attn_match", best), ctx.value(e, n, "attn_match", best, "sem"))
                     for n in ctx.lens])
        labels.append(f"{ctx.styles.label(e)}, head {best.replace('.', ' ')}")
    if rows:
        chance = ctx.comb[ctx.comb["metric"] == "attn_chance"].groupby("context_len")["mean"].mean()
        rows.append([fmt(chance.get(n, float("nan"))) for n in ctx.lens])
        labels.append("uniform attention (chance)")
        ax = fig.add_axes([0.3, 0.06, 0.68, 0.28])
        table(ax, rows, [f"N = {n}" for n in ctx.lens], rows=labels, fontsize=8,
              title="attention share on context rows matching the query on its TRUE parents (best head)")
    save(pdf, fig)
