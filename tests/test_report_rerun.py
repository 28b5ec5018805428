"""A rerun with nothing changed keeps report.pdf as it is; a changed run directory renders it again."""
from bncompare.studies.run import compose, write_report
from bncompare.studies.runner import run_study


def test_unchanged_run_keeps_the_report_and_a_changed_one_renders_it(tmp_path):
    cfg = compose(["graph=asia", "estimators=counting", "~estimators.bdeu", "episodes=4", "context_lens=[5]",
                   "queries=2", "progress=false", "report=false"])
    out = run_study(cfg, tmp_path / "asia")
    write_report(out)
    pdf = out / "report.pdf"
    first = pdf.stat()
    out = run_study(cfg, tmp_path / "asia")  # the rerun: finds every cell done
    write_report(out)
    again = pdf.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)

    results = out / "results.csv"
    results.write_text(results.read_text().replace(",5,", ",5,", 1) + "\n")  # the run directory changed
    write_report(out)
    assert pdf.stat().st_mtime_ns != first.st_mtime_ns
