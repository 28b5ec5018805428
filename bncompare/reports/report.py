"""Write report.pdf for one study directory, or for several (a multirun) at once.

    from bncompare.reports.report import write_report
    write_report("reports/tree-7/default-seed0")                 # -> .../report.pdf
    write_report(["run1", "run2"], out="reports/merged/report.pdf")
"""
from __future__ import annotations

import warnings
from pathlib import Path

from bncompare.reports import pages
from bncompare.reports.data import ReportData, load
from bncompare.reports.plots import setup_style

GRAPH_PAGES = (pages.dag_page, pages.error_page, pages.per_node_pages, pages.excess_page, pages.fidelity_page,
               pages.unseen_page, pages.training_page, pages.attention_page, pages.cost_page, pages.summary_page,
               pages.agnostic_page, pages.agreement_page)


def write_report(paths, out=None) -> Path:
    """Render the report of the study directories ``paths``; returns the PDF's path."""
    data = load(paths)
    if out is None:
        out = data.runs[0].dir / "report.pdf"
    return render(data, Path(out))


def render(data: ReportData, out: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    setup_style()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout notes about table axes
        with PdfPages(tmp) as pdf:
            pages.title_page(pdf, data)
            pages.config_page(pdf, data)
            if len(data.graphs) > 1:
                pages.overview_page(pdf, data)
            for graph in data.graphs:
                ctx = pages.make_ctx(data, graph)
                for page in GRAPH_PAGES:
                    page(pdf, ctx)
            info = pdf.infodict()
            info["Title"] = f"bncompare report: {', '.join(data.graphs)}"
    plt.close("all")
    tmp.replace(out)
    return out
