"""The report, compare and merge commands on damaged run folders and bad arguments: one line on stderr, exit 2."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bncompare.reports import compare, merge, report
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["graph=chain-5", "estimators=counting", "episodes=32", "context_lens=[2]", "queries=2", "progress=false",
         "report=false"]
COMMANDS = {"report": report.main, "compare": compare.main, "merge": merge.main}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return run_study(compose(SMALL), tmp_path_factory.mktemp("cli") / "chain-seed0")


def _cell(path, row: int, col: str, value: str) -> None:
    """Set one cell of the CSV table ``path`` (row 0 is the first data row) as raw text."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(col)] = value
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _json_edit(path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


DAMAGE = {  # what is done to the folder, and what the line must say
    "seed not a number": (lambda d: _cell(d / "results.csv", 0, "seed", "abc"), "column 'seed'"),
    "context_len not a number": (lambda d: _cell(d / "results.csv", 3, "context_len", "two"), "column 'context_len'"),
    "mean not a number": (lambda d: _cell(d / "results.csv", 0, "mean", "xyz"), "column 'mean'"),
    "sem not a number": (lambda d: _cell(d / "results.csv", 5, "sem", "--"), "column 'sem'"),
    "n not whole": (lambda d: _cell(d / "results.csv", 2, "n", "3.5"), "column 'n'"),
    "config a list": (lambda d: (d / "config.yaml").write_text("- a\n- b\n"), "not a mapping"),
    "config with a python tag": (lambda d: (d / "config.yaml").write_text("x: !!python/object:os.system {}\n"),
                                 "config.yaml is damaged"),
    "config graph not a mapping": (lambda d: (d / "config.yaml").write_text(
        (d / "config.yaml").read_text().replace("\ngraph:", "\ngraph: 5\nold_graph:")), "graph is int"),
    "graph.json without cards": (lambda d: _json_edit(d / "graph.json", lambda g: g.pop("cards")), "graph.json"),
    "estimators.json entry a list": (lambda d: _json_edit(d / "estimators.json", lambda e: e.update(bayes=[1])),
                                     "the entry of 'bayes'"),
    "meta runs not a list of mappings": (lambda d: _json_edit(d / "meta.json", lambda m: m.update(runs=[3])),
                                         "runs holds an item"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_run_folder_is_one_line_exit_2(kind, command, run_dir, tmp_path, refused_in_one_line):
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    damage, expect = DAMAGE[kind]
    damage(work)
    argv = [work, "--out", tmp_path / "merged"] if command == "merge" else [work]
    err = refused_in_one_line(COMMANDS[command], *argv)
    assert expect in err and str(work) in err, err
    assert not (tmp_path / "merged" / "results.csv").exists()


@pytest.mark.parametrize("command", ["report", "merge"])
def test_out_into_proc_is_one_line(command, run_dir, refused_in_one_line):
    err = refused_in_one_line(COMMANDS[command], run_dir, "--out", "/proc/x/y")
    assert "cannot write to '/proc/x" in err, err


def _env():
    import os

    return dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.mark.parametrize("module, argv", [
    ("bncompare.reports.report", []), ("bncompare.reports.compare", ["--bogus"]),
    ("bncompare.reports.merge", ["somewhere"]), ("bncompare.studies.train", ["--checkpoint-every", "x"]),
    ("bncompare.networks", ["--only", "nope"])])
def test_a_bad_argument_is_one_line_exit_2(module, argv):
    run = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, env=_env(),
                         timeout=120)
    err = run.stderr.strip()
    assert run.returncode == 2 and "\n" not in err and err.startswith("error: ") and "--help" in err, err


def test_ctrl_c_during_a_report_is_one_line_exit_130(run_dir, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    child = subprocess.Popen([sys.executable, "-m", "bncompare.reports.report", str(work)], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True, env=_env())
    deadline = time.monotonic() + 120
    while not [p for p in work.iterdir() if p.name.startswith(("report.pdf.", ".report.pdf."))]:  # pages begun
        assert child.poll() is None and time.monotonic() < deadline, "the report ended before it was interrupted"
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    err = child.communicate(timeout=60)[1].strip()
    assert child.returncode == 130 and err == "error: interrupted; no report written", err
    assert not (work / "report.pdf").exists()


def test_two_reports_of_one_folder_at_once_both_finish(run_dir, tmp_path):
    # Both write report.pdf: each through a temporary file of its own, so neither finds its file renamed away.
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    argv = [sys.executable, "-m", "bncompare.reports.report", str(work)]
    children = [subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
                for _ in range(2)]
    errors = [c.communicate(timeout=300)[1].strip() for c in children]
    assert [c.returncode for c in children] == [0, 0], errors
    assert (work / "report.pdf").read_bytes().startswith(b"%PDF")
    assert [p.name for p in work.iterdir() if "report.pdf" in p.name] == ["report.pdf"]  # no temporary file left
