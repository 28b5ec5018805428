"""What every page of one graph needs (:class:`Ctx`), and the few helpers all pages share."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd

from bncompare.metrics.summary import interval_half_width
from bncompare.reports.data import ReportData, optimal_here
from bncompare.reports.plots import Styles, Z


@dataclass
class Ctx:
    data: ReportData
    graph: str
    comb: pd.DataFrame  # results with seeds combined
    estimators: list[str]
    styles: Styles
    lens: list[int]
    reference: str | None
    seeds: list[int]
    partial: set[str]  # run on a subset of the episodes: compared only in pairs (with their mirror, the reference)
    tv_reference: str | None = None
    budgets: list[str] = field(default_factory=list)  # other budgets of an estimator (budget_of): cost page only

    @property
    def n_episodes(self) -> int:
        return int(self.data.config_of(self.graph).get("episodes", 0))

    def band_note(self) -> str:
        if len(self.seeds) > 1:
            s = len(self.seeds)
            return (f"lines: mean over {s} seeds; bands: 95% t intervals across seeds (±{t_quantile(s):.3g} SE of "
                    f"the {s} per-seed means: Student t with {s - 1} degree{'s' if s > 2 else ''} of freedom)")
        return f"lines: mean over {self.n_episodes} episodes per point; bands: ±{Z} SE over episodes"

    def has(self, metric: str) -> bool:
        return bool((self.comb["metric"] == metric).any())

    def reference_of(self, metric: str) -> str | None:
        """The estimator ``<metric>_excess`` is measured against (the TV reference for conditional TV)."""
        return self.tv_reference if metric == "cond_tv" and self.tv_reference else self.reference

    def optimal_for(self, e: str | None) -> str:
        """What the estimator declares it minimizes (``reference_for``) under the prior of THIS study's truth, or ''."""
        if not e:
            return ""
        return optimal_here(self.data.entry(self.graph, e), self.data.config_of(self.graph))

    @property
    def variables(self) -> str:
        """What the graph's nodes hold (graph.json): discrete or gaussian; it chooses the report's pages."""
        dag = self.data.runs_of(self.graph)[0].dag
        return dag.variables if dag is not None else "discrete"

    @property
    def headline(self) -> str:
        """The metric the pages lead with, as the truth declares it (held-out log-loss on real data)."""
        truth = self.data.runs_of(self.graph)[0].truth
        return (truth or {}).get("headline") or "cond_tv"

    @property
    def truth_from_prior(self) -> bool:
        """Whether the episodes' truth is drawn from the study prior (only then are the references optimal)."""
        truth = self.data.runs_of(self.graph)[0].truth
        return not truth or truth.get("truth", "prior") == "prior"

    def full(self, estimators: list[str]) -> list[str]:
        """Those run on every episode: raw means that can stand side by side."""
        return [e for e in estimators if e not in self.partial]

    def tagged(self, tag: str) -> list[str]:
        """Estimators of this graph whose declaration has ``tag`` set."""
        return [e for e in self.estimators if self.data.tag(self.graph, e, tag)]

    def prepare_seconds(self) -> dict[str, float]:
        """Seconds each estimator spent in prepare (training, for a trained one): the most over runs and
        invocations, as meta.json records them."""
        out: dict[str, float] = {}
        for r in self.data.runs_of(self.graph):
            for inv in r.meta.get("runs", []):
                for k, v in inv.get("prepare_seconds", {}).items():
                    out[k] = max(out.get(k, 0.0), v)
        return out

    def value(self, e: str, n: int, metric: str, node: str = "all", what: str = "mean") -> float:
        c = self.comb
        v = c[(c["estimator"] == e) & (c["context_len"] == n) & (c["metric"] == metric) & (c["node"] == node)]
        return float(v[what].iloc[0]) if len(v) else float("nan")


def t_quantile(seeds: int) -> float:
    """The factor that multiplies the SE across ``seeds`` seeds in a 95% interval."""
    return float(interval_half_width(1.0, seeds))


def make_ctx(data: ReportData, graph: str) -> Ctx:
    comb = data.combined(graph)
    ests = data.estimators_of(graph)
    budgets = [e for e in ests if data.entry(graph, e).get("budget_of")]
    subset = {e for e in ests if data.entry(graph, e).get("subset") or data.entry(graph, e).get("context_lens")}
    dotted = {e for e in ests if data.tag(graph, e, "family") == "constructed"}  # exact mirrors of a counting line
    styles = Styles(ests, data.reference(graph), subset, {e: data.label(graph, e) for e in ests}, dotted)
    lens = sorted(comb["context_len"].unique().tolist())
    seeds = sorted({r.seed for r in data.runs_of(graph)})
    partial = {e for e in ests if data.entry(graph, e).get("subset")}
    tv_ref = data.config_of(graph).get("tv_reference")
    return Ctx(data, graph, comb, [e for e in ests if e not in budgets], styles, lens, data.reference(graph), seeds,
               partial, tv_ref if tv_ref in ests else None, budgets)


def save(pdf, fig) -> None:
    pdf.savefig(fig)
    plt.close(fig)


def header(fig, title: str, subtitle: str = "") -> None:
    fig.suptitle(title, fontsize=15, fontweight="bold", x=0.02, ha="left", y=0.985)
    if subtitle:
        fig.text(0.02, 0.94, textwrap.fill(subtitle, 165), fontsize=9, color="0.3", ha="left", va="top")
