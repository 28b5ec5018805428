"""A rerun with nothing changed keeps report.pdf as it is, and rewrites neither results.csv nor episodes.csv.gz;
a changed run directory renders the report again and a changed or damaged file is noticed."""
import gzip

import pytest

from bncompare.files import HOLDER_NAME
from bncompare.studies.run import compose, gzip_body, write_report
from bncompare.studies.runner import run_study

SMALL = ["graph=asia", "estimators=counting", "~estimators.bdeu", "episodes=4", "context_lens=[5,10]", "queries=2",
         "progress=false", "report=false"]


def stamp(path):
    s = path.stat()
    return s.st_ino, s.st_mtime_ns


def test_unchanged_run_keeps_the_report_and_a_changed_one_renders_it(tmp_path):
    cfg = compose(SMALL)
    out = run_study(cfg, tmp_path / "asia")
    write_report(out)
    pdf = out / "report.pdf"
    first = stamp(pdf)
    out = run_study(cfg, tmp_path / "asia")  # the rerun: finds every cell done
    (out / HOLDER_NAME).write_text("pid 12345 on host since now (another command line)\n")  # every CLI run's own
    write_report(out)
    assert stamp(pdf) == first

    results = out / "results.csv"
    results.write_text(results.read_text().replace(",5,", ",5,", 1) + "\n")  # the run directory changed
    write_report(out)
    assert stamp(pdf) != first


def test_rerun_with_nothing_changed_rewrites_no_table(tmp_path):
    cfg = compose(SMALL)
    out = run_study(cfg, tmp_path / "asia")
    tables = {name: stamp(out / name) for name in ("results.csv", "episodes.csv.gz")}
    results = (out / "results.csv").read_bytes()
    run_study(cfg, out)
    assert {name: stamp(out / name) for name in tables} == tables

    (out / "results.csv").write_text("damaged")  # a table touched since: written again, from the cells
    run_study(cfg, out)
    assert (out / "results.csv").read_bytes() == results


def test_a_cell_changed_since_the_record_is_read_again(tmp_path, caplog):
    cfg = compose(SMALL)
    out = run_study(cfg, tmp_path / "asia")
    cell = sorted((out / "cells").glob("*.csv.gz"))[0]
    cell.write_bytes(gzip.compress(b"not,a\ncell,file\n"))  # whole gzip, wrong content: the hash differs
    tables = stamp(out / "results.csv")
    run_study(cfg, out)
    assert "damaged cell file" in caplog.text
    assert stamp(out / "results.csv") != tables  # the recomputed cell's tables are written again


@pytest.mark.parametrize("content", [b"", b"x" * 100, b"a,b\n1,2\n" * 50])
def test_gzip_body_ignores_the_header_only(content):
    a = gzip.compress(content, mtime=1)
    b = gzip.compress(content, mtime=2)
    assert a != b and gzip_body(a) == gzip_body(b)
    assert gzip_body(gzip.compress(content + b"!", mtime=1)) != gzip_body(a)
    assert gzip_body(b"plain text, not gzip") == b"plain text, not gzip"
