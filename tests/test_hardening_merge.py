"""Issue 13, merge: duplicate runs, folders without runs and damaged results.csv are one line, exit 2."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bncompare.reports.merge import main
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["graph=chain-5", "estimators=counting", "episodes=32", "context_lens=[2]", "queries=2", "progress=false",
         "report=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return run_study(compose(SMALL), tmp_path_factory.mktemp("merge") / "chain-seed0")


def merge_in_process(capsys, *argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and err.startswith("error: "), err
    return err


def test_two_runs_of_the_same_graph_and_seed_are_refused(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "sweep" / "a")
    shutil.copytree(run_dir, tmp_path / "sweep" / "b")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "bncompare.reports.merge", str(tmp_path / "sweep"), "--out",
                          str(tmp_path / "merged")], capture_output=True, text=True, env=env, timeout=300)
    err = run.stderr.strip()
    assert run.returncode == 2 and "\n" not in err, err[-2000:]
    assert "both graph chain-5 seed 0" in err and str(tmp_path / "sweep" / "a") in err
    assert not (tmp_path / "merged" / "results.csv").exists()


def test_a_folder_without_runs_is_named(run_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = merge_in_process(capsys, run_dir, tmp_path / "empty", "--out", tmp_path / "merged")
    assert "holds no study run" in err and "empty" in err


@pytest.mark.parametrize("text, expect", [("", "is not a results table"), ("a,b\n1,2\n", "has columns ['a', 'b']")])
def test_damaged_results_csv_is_one_line(run_dir, tmp_path, capsys, text, expect):
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    (work / "results.csv").write_text(text)
    assert expect in merge_in_process(capsys, work, "--out", tmp_path / "merged")
