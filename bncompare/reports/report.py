"""Write report.pdf from one finished run directory, or from several (a multirun) at once.

    python -m bncompare.reports.report reports/tree-7/default-seed0      # -> .../report.pdf

    from bncompare.reports.report import write_report
    write_report(["run1", "run2"], out="reports/merged/report.pdf")

The report reads only the run directories (see :mod:`bncompare.reports.data`):
it renders the same on a machine that never ran the study. The pages come in
the order of :data:`GRAPH_PAGES` (:data:`PAGES` for linear-Gaussian
networks), each one a function ``(pdf, ctx)``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from bncompare import rundir
from bncompare.errors import ArgumentParser, BNError, exit_with, on_ctrl_c
from bncompare.files import atomic_write
from bncompare.reports import (
    autoregressive_pages,
    evaluation_pages,
    gaussian_pages,
    panels,
    study_pages,
    transformer_pages,
)
from bncompare.reports.context import make_ctx
from bncompare.reports.data import ReportData, load
from bncompare.reports.plots import setup_style

GRAPH_PAGES = (
    study_pages.dag_page,
    panels.panel_page(panels.ERROR),
    panels.panel_page(panels.PER_NODE),
    panels.panel_page(panels.EXCESS),
    evaluation_pages.prior_shift_page,
    evaluation_pages.calibration_page,
    panels.first_of(panels.FIDELITY_EXACT, panels.FIDELITY_MC),
    study_pages.unseen_page,
    transformer_pages.training_page,
    transformer_pages.learning_page,
    transformer_pages.attention_page,
    study_pages.cost_page,
    evaluation_pages.cost_accuracy_page,
    panels.panel_page(panels.SUMMARY),
    transformer_pages.agnostic_page,
    study_pages.agreement_page,
)


PAGES = {"discrete": GRAPH_PAGES, "gaussian": gaussian_pages.PAGES,  # by the kind of the graph's variables
         "autoregressive": autoregressive_pages.PAGES}


def write_report(paths, out=None) -> Path:
    """Render the report of the run directories ``paths``; returns the PDF's path."""
    data = load(paths)
    if out is None:
        out = data.runs[0].dir / rundir.REPORT
    return render(data, Path(out))


def render(data: ReportData, out: Path) -> Path:
    """Write the report of ``data`` to ``out`` through a unique temporary file: two reports of one folder never
    share one, and a reader sees the old PDF or the new one."""
    import matplotlib.pyplot as plt

    setup_style()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: _pages(data, tmp))
    except OSError as e:
        raise BNError(f"cannot write to {str(out)!r}: {e.strerror or e}") from None
    finally:
        plt.close("all")
    return out


def _pages(data: ReportData, path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout notes about table axes
        with PdfPages(path) as pdf:
            study_pages.title_page(pdf, data)
            study_pages.config_page(pdf, data)
            if len(data.graphs) > 1:
                study_pages.overview_page(pdf, data)
            for graph in data.graphs:
                ctx = make_ctx(data, graph)
                for page in PAGES[ctx.variables]:
                    page(pdf, ctx)
            info = pdf.infodict()
            info["Title"] = f"bncompare report: {', '.join(data.graphs)}"


@on_ctrl_c("interrupted; no report written")
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m bncompare.reports.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished run directory (holding results.csv)")
    parser.add_argument("--out", help="where to write the PDF (default: <run_dir>/report.pdf)")
    args = parser.parse_args(argv)
    try:
        pdf = write_report(args.run_dir, args.out)
    except BNError as e:
        exit_with(str(e))
    print(f"report: {pdf}")


if __name__ == "__main__":
    main()
