"""The reference table shipped in the package and the command that compares a run with it."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bncompare.reports.compare import TABLE_COLUMNS, available, main, verdicts
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["graph=chain-5", "estimators=counting", "episodes=32", "context_lens=[2,10]", "queries=2", "progress=false",
         "report=false"]
ROW = ("bayes", 10, "cond_tv")  # the row the tests move


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return run_study(compose(SMALL), tmp_path_factory.mktemp("compare") / "chain-seed0")


@pytest.fixture(scope="module")
def refs(run_dir, tmp_path_factory):
    """A folder holding one reference written from the run itself, through the CLI."""
    folder = tmp_path_factory.mktemp("refs")
    main([str(run_dir), "--write-reference", "--out", str(folder)])
    return folder


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return stop.value.code or 0, out.out, out.err.strip()


def moved(run_dir, tmp_path, by_se: float) -> Path:
    """A copy of the run whose bayes / N = 10 / cond_tv mean is moved by ``by_se`` of its SE."""
    work = tmp_path / "moved"
    shutil.copytree(run_dir, work)
    text = (work / "results.csv").read_text().splitlines(keepends=True)
    est, n, metric = ROW
    for i, line in enumerate(text):
        cells = line.rstrip("\n").split(",")
        if cells[2:6] == [est, str(n), "all", metric]:
            mean, sem = float(cells[6]), float(cells[7])
            cells[6] = repr(mean + by_se * sem)
            text[i] = ",".join(cells) + "\n"
            break
    else:
        raise AssertionError("row not found")
    (work / "results.csv").write_text("".join(text))
    return work


def test_reference_written_from_the_run_itself_is_identical(run_dir, refs, capsys):
    written = pd.read_csv(refs / "chain-5_default_seed0.csv", keep_default_na=False, na_values=[""])
    assert list(written.columns) == TABLE_COLUMNS and set(written["graph"]) == {"chain-5"}
    metrics = set(written["metric"])
    assert {"cond_tv", "cond_kl", "cond_kl_inf_frac", "cond_tv_excess", "cond_kl_excess"} <= metrics
    assert not any("seconds" in m for m in metrics)
    prov = json.loads((refs / "chain-5_default_seed0.json").read_text())
    assert prov["command"].startswith("python -m bncompare.studies.run")
    assert prov["reproduce"] == "python -m bncompare.studies.run graph=chain-5 study=default seed=0"
    assert prov["versions"]["bncompare"] and prov["code_version"]["source"] and prov["config"]["episodes"] == 32
    code, out, _ = cli(capsys, run_dir, "--references", refs)
    assert code == 0, out
    assert f"identical     {len(written):6d}" in out and "differ             0" in out
    assert out.strip().splitlines()[-1].startswith("verdict: reproduced exactly")


def test_a_mean_moved_by_ten_se_differs_and_is_named(run_dir, refs, tmp_path, capsys):
    code, out, _ = cli(capsys, moved(run_dir, tmp_path, 10.0), "--references", refs)
    assert code == 1, out
    lines = out.strip().splitlines()
    assert "differ             1" in out and lines[-1].startswith("verdict: NOT reproduced: 1 of")
    row = lines[lines.index(next(x for x in lines if x.startswith("rows that differ"))) + 2].split()
    assert row[:3] == ["bayes", "10", "cond_tv"] and float(row[-1]) == pytest.approx(10 / np.sqrt(2), abs=0.05)


def test_a_mean_moved_by_half_an_se_is_within_noise(run_dir, refs, tmp_path, capsys):
    code, out, _ = cli(capsys, moved(run_dir, tmp_path, 0.5), "--references", refs)
    assert code == 0, out
    assert "within noise       1" in out and "differ             0" in out
    assert out.strip().splitlines()[-1].startswith("verdict: reproduced within noise")


def test_verdicts_by_hand():
    inf, nan = float("inf"), float("nan")
    z, v = verdicts([1.0, inf, inf, 0.5, 0.5, 0.5, 0.5, 2.0 + 1e-12],
                    [1.0, inf, 0.3, 0.4, 0.2, 0.4, 0.4, 2.0],
                    [0.1, nan, nan, 0.05, 0.05, 0.0, nan, 0.1],
                    [0.1, nan, 0.1, 0.05, 0.05, 0.0, 0.1, 0.1])
    assert list(v) == ["identical", "identical", "differs", "within noise", "differs", "differs", "differs",
                       "identical"]
    assert z[3] == pytest.approx(0.1 / np.sqrt(0.005)) and z[4] == pytest.approx(0.3 / np.sqrt(0.005))
    assert np.isnan(z[2]) and np.isnan(z[5]) and np.isnan(z[6])


def damage(kind, run_dir, refs, tmp_path):
    """(argv, expected text) for one kind of bad input."""
    if kind == "no results":
        (tmp_path / "empty").mkdir()
        return [tmp_path / "empty", "--references", refs], "no results.csv"
    if kind == "damaged results":
        work = tmp_path / "run"
        shutil.copytree(run_dir, work)
        (work / "results.csv").write_text("a,b\n1,2\n")
        return [work, "--references", refs], "has columns ['a', 'b']"
    if kind == "unknown name":
        return [run_dir, "--references", refs, "--reference", "nope"], \
            "unknown reference 'nope'; available: chain-5_default_seed0"
    if kind == "another graph":
        return [run_dir, "--reference", "tree-7_smoke_seed0"], \
            "the run is graph chain-5 but reference 'tree-7_smoke_seed0' is graph tree-7; references of chain-5: none"
    if kind == "no match for the default":
        shipped = sorted(p.stem for p in (ROOT / "bncompare" / "data" / "reference").glob("*.csv"))
        return [run_dir], f"no reference for graph chain-5 study default; available: {', '.join(shipped)}"
    folder = tmp_path / "refs"
    shutil.copytree(refs, folder)
    table = folder / "chain-5_default_seed0.csv"
    if kind == "no common rows":
        frame = pd.read_csv(table)
        table.write_text(frame.assign(context_len=frame["context_len"] + 1000).to_csv(index=False))
        return [run_dir, "--references", folder], "have no (estimator, context_len, metric) row in common"
    table.write_text("graph,estimator\ntree,\x00\x01broken")
    return [run_dir, "--references", folder], "(chain-5_default_seed0.csv) has columns ['graph', 'estimator']"


@pytest.mark.parametrize("kind", ["no results", "damaged results", "unknown name", "another graph",
                                  "no match for the default", "no common rows", "damaged reference"])
def test_bad_input_is_one_line_exit_2(kind, run_dir, refs, tmp_path, capsys):
    argv, expect = damage(kind, run_dir, refs, tmp_path)
    code, out, err = cli(capsys, *argv)
    assert code == 2 and "\n" not in err and err.startswith("error: ") and not out, (out, err)
    assert expect in err, err


def test_write_reference_into_a_read_only_folder_is_one_line(run_dir, read_only_dir, capsys):
    code, _, err = cli(capsys, run_dir, "--write-reference", "mine", "--out", read_only_dir)
    assert code == 2 and "\n" not in err and "cannot write to" in err, err
    assert not list(read_only_dir.iterdir())


def test_shipped_reference_loads_from_an_installed_wheel(tmp_path):
    # Build the wheel from a copy of the sources and install it into a folder of its own: the reference table,
    # its provenance and the README travel with the package and load through importlib.resources.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "bncompare", src / "bncompare", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("bncompare-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = available()
    assert "tree-7_smoke_seed0" in shipped
    for name in shipped:
        assert {f"bncompare/data/reference/{name}.csv", f"bncompare/data/reference/{name}.json"} <= names
    assert "bncompare/data/reference/README.md" in names
    site = tmp_path / "site"
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    code = ("import bncompare, sys; from bncompare.reports.compare import available, load_reference; "
            "assert bncompare.__file__.startswith(sys.argv[1]), bncompare.__file__; "
            "ref = load_reference('tree-7_smoke_seed0'); "
            "print(len(ref.table), ref.provenance['graph'], ref.provenance['study'], ' '.join(available()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows, graph, study, *names_there = run.stdout.split()
    assert int(rows) > 100 and (graph, study) == ("tree-7", "smoke") and names_there == shipped


def test_reference_tables_are_not_part_of_the_code_version(tmp_path):
    # A rewritten reference table must not change the code version it records (nor every cell key);
    # any other data file does.
    from bncompare.codeversion import source_files

    shutil.copytree(ROOT / "bncompare" / "data", tmp_path / "data", ignore=shutil.ignore_patterns("__pycache__"))
    before = source_files(("data",), tmp_path)
    (tmp_path / "data" / "reference" / "new_table.csv").write_text("graph\n")
    assert source_files(("data",), tmp_path) == before
    (tmp_path / "data" / "sachs" / "new_table.csv").write_text("graph\n")
    assert len(source_files(("data",), tmp_path)) == len(before) + 1
