"""Plot helpers shared by the report pages: one style per estimator, error-band lines, tables."""
from __future__ import annotations

import logging
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

PAGE = (11.69, 8.27)  # A4 landscape, inches
MAX_TICKS = 12  # labelled context lengths on an axis, at most
Z = 1.96  # one seed: bands are mean +- 1.96 standard errors (95% normal intervals)


def setup_style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.15)
    plt.rcParams.update({"figure.dpi": 100, "axes.titleweight": "bold", "legend.frameon": True})
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # Hydra's INFO root logger would print its subsetting


class Styles:
    """A fixed color / line style per estimator, the same on every page."""

    def __init__(self, estimators: list[str], reference: str | None, subset: set[str], labels: dict[str, str],
                 dotted: set[str] = frozenset()):
        extra = ["#1f1f7a", "#8c6d1f", "#7a1f5c", "#4d7a1f", "#1f6f7a", "#b35900", "#555555"]  # apart from tab10
        palette = sns.color_palette("tab10", 10) + [matplotlib.colors.to_rgb(c) for c in extra]
        self.labels, self.subset, self.reference = labels, subset, reference
        self.style = {}
        i = 0
        for e in estimators:
            if e == reference:
                self.style[e] = dict(color="black", ls="--", lw=2.0, marker=None)
            else:
                ls = ":" if e in dotted else "-"
                marker = "o" if e in subset else None
                self.style[e] = dict(color=palette[i % len(palette)], ls=ls, lw=1.6, marker=marker)
                i += 1

    def label(self, e: str) -> str:
        return self.labels.get(e, e)


def set_xscale(ax, lens) -> None:
    lens = list(lens)
    if min(lens) <= 0:
        ax.set_xscale("symlog", linthresh=1)
    else:
        ax.set_xscale("log")
    if len(lens) > MAX_TICKS:  # e.g. every prefix length of an autoregressive study: label a log-spaced few
        picks = np.unique(np.geomspace(max(min(lens), 1), max(lens), MAX_TICKS).round().astype(int))
        lens = sorted({min(lens, key=lambda n: abs(n - p)) for p in picks})
    ax.set_xticks(lens)
    ax.set_xticklabels([str(n) for n in lens], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("context length N (rows)")


def line_panel(ax, comb: pd.DataFrame, metric: str, estimators: list[str], styles: Styles, node: str = "all",
               ylog: bool = False, band: bool = True) -> bool:
    """mean and its 95% interval against N for each estimator; infinite means as triangles on the top edge.

    The interval is ``half95`` when the frame has it (t over seeds in a multi-seed merge), else 1.96 SE.

    Returns True when anything was drawn.
    """
    sub = comb[(comb["metric"] == metric) & (comb["node"] == node)]
    drawn, has_inf, n_inf = False, False, 0
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for e in estimators:
        d = sub[sub["estimator"] == e].sort_values("context_len")
        if d.empty:
            continue
        st = styles.style.get(e, {})
        x, y, s = d["context_len"].to_numpy(), d["mean"].to_numpy(float), half_width(d)
        fin = np.isfinite(y)
        if ylog:
            fin &= y > 0
        if fin.any():
            subset = e in styles.subset
            if subset:
                ax.errorbar(x[fin], y[fin], yerr=np.where(np.isfinite(s[fin]), s[fin], 0), color=st.get("color"),
                            ls=st.get("ls", "-"), lw=1.0, marker="o", ms=4, capsize=2, label=styles.label(e))
            else:
                ax.plot(x[fin], y[fin], color=st.get("color"), ls=st.get("ls", "-"), lw=st.get("lw", 1.5),
                        label=styles.label(e))
                ok = fin & np.isfinite(s)
                if band and ok.any():
                    lo, hi = y[ok] - s[ok], y[ok] + s[ok]
                    if ylog:
                        lo = np.maximum(lo, y[ok] * 0.05)
                    ax.fill_between(x[ok], lo, hi, color=st.get("color"), alpha=0.15, lw=0)
            drawn = True
        inf = np.isposinf(y)
        if inf.any():
            n_inf += 1
            ax.plot(x[inf], np.full(inf.sum(), 0.985 - 0.035 * (n_inf - 1)), transform=top, ls="none", marker="^", ms=6,
                    color=st.get("color"), clip_on=False, label=None if fin.any() else styles.label(e))
            has_inf = drawn = True
    if ylog and drawn:
        ax.set_yscale("log")
        log_ticks(ax)
    if has_inf:
        ax.text(0.01, 0.02, "▲ near the top edge: mean is infinite", transform=ax.transAxes, fontsize=7, color="0.3")
    return drawn


def half_width(rows: pd.DataFrame) -> np.ndarray:
    """Half-width of each row's 95% interval: ``half95`` when combined with it, else 1.96 SE."""
    if "half95" in rows.columns:
        return rows["half95"].to_numpy(float)
    return Z * rows["sem"].to_numpy(float)


def log_ticks(ax) -> None:
    """Label 1, 2, 5 x 10^k on a log y axis (a narrow range otherwise shows a single label)."""
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def no_data(ax, message: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="0.35", wrap=True)


def message_page(pdf, title: str, message: str) -> None:
    fig = plt.figure(figsize=PAGE)
    fig.suptitle(title, fontsize=16, fontweight="bold")
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.3", wrap=True)
    pdf.savefig(fig)
    plt.close(fig)


def table(ax, cells: list[list[str]], columns: list[str], rows: list[str] | None = None, fontsize: float = 8,
          title: str | None = None, col_widths=None) -> None:
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    if not cells:
        no_data(ax, "no data")
        return
    t = ax.table(cellText=cells, colLabels=columns, rowLabels=rows, loc="upper center", cellLoc="center",
                 colWidths=col_widths)
    t.auto_set_font_size(False)
    t.set_fontsize(fontsize)
    t.scale(1, 1.25)
    for (r, c), cell in t.get_celld().items():
        cell.set_edgecolor("0.8")
        if r == 0 or c == -1:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#eef2f7")


def fmt(mean: float, sem: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if math.isinf(mean):
        return "inf"
    text = f"{mean:.{digits}g}" if abs(mean) < 1e-3 and mean != 0 else f"{mean:.{digits}f}"
    if sem is not None and np.isfinite(sem):
        text += f" ± {sem:.1g}" if sem < 1e-3 else f" ± {sem:.{digits}f}"
    return text


def fig_legend(fig, axes, ncol: int = 4, y: float = 0.005) -> None:
    labels = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_") and lab not in labels:
                labels[lab] = h
    if labels:
        fig.legend(list(labels.values()), list(labels.keys()), loc="lower center", ncol=ncol, fontsize=8,
                   bbox_to_anchor=(0.5, y), frameon=False)
