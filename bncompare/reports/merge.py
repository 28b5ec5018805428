"""Merge the results of several studies (e.g. a multirun sweep) into one results.csv and one report.

    python -m bncompare.reports.merge reports/multirun/2026-11-21_10-00-00 --out reports/merged
    python -m bncompare.reports.merge reports/tree-7/default-seed0 reports/chain-7/default-seed0 --out reports/both

Every folder below the given paths that holds a results.csv is one run. Seeds of
the same graph are combined in the report (mean of per-seed means, standard
error across seeds, 95% t interval with seeds - 1 degrees of freedom); each
graph gets its own pages. Written to ``--out``: ``results.csv`` (every run's
rows, one per seed), ``results_combined.csv`` (one row per graph, estimator,
context length, node and metric: mean, sem, half95, ci_low, ci_high, seeds, n,
interval), ``runs.txt`` and ``report.pdf``.
"""
from __future__ import annotations

from pathlib import Path

from bncompare.errors import ArgumentParser, BNError, exit_with, on_ctrl_c

COMBINED, RUNS = "results_combined.csv", "runs.txt"  # beside the merged results.csv and report.pdf
COMBINED_COLUMNS = ["graph", "estimator", "context_len", "node", "metric", "mean", "sem", "half95", "ci_low",
                    "ci_high", "seeds", "n", "interval"]


def combined_table(data):
    """The seed-combined rows of every graph (what the report draws), with their 95% intervals: a DataFrame."""
    import pandas as pd

    parts = [data.combined(g).assign(graph=g) for g in data.graphs]
    return pd.concat(parts, ignore_index=True)[COMBINED_COLUMNS]


def _not_an_input(out: Path, inputs) -> None:
    """Refuse an output folder that is an input, or inside or around one: the merge would overwrite what it reads."""
    where = out.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if where == path or where.is_relative_to(path) or path.is_relative_to(where):
            raise BNError(f"--out {str(out)!r} is (or is inside or around) the input {str(given)!r}; the merge would "
                          "overwrite it: choose another folder")


def merge(paths, out) -> Path:
    """Merge the runs at or below ``paths`` into the folder ``out``; returns the path of its report."""
    from bncompare import rundir
    from bncompare.files import atomic_write_text
    from bncompare.reports.data import load
    from bncompare.reports.report import render

    data = load(list(paths))
    out = Path(out)
    _not_an_input(out, list(paths) + [r.dir for r in data.runs])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BNError(f"cannot write to {str(out)!r}: {e.strerror or e}") from None
    rundir.write_table(out / rundir.RESULTS, data.results)
    rundir.write_table(out / COMBINED, combined_table(data))
    atomic_write_text(out / RUNS, "".join(f"{r.graph}\tseed {r.seed}\t{r.dir}\n" for r in data.runs))
    return render(data, out / rundir.REPORT)


@on_ctrl_c("interrupted; rerun the same command to merge again")
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m bncompare.reports.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="study output folders, or folders that contain them")
    parser.add_argument("--out", required=True, help="folder for the merged results.csv and report.pdf")
    args = parser.parse_args(argv)
    try:
        pdf = merge(args.dirs, args.out)
    except BNError as e:
        exit_with(str(e))
    print(f"merged {pdf.parent / 'results.csv'}\ncombined {pdf.parent / 'results_combined.csv'} "
          f"(seeds combined, 95% intervals)\nreport {pdf}")


if __name__ == "__main__":
    main()
