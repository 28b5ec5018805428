"""Merge: duplicate runs, folders without runs and damaged results.csv are one line, exit 2."""
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


def test_a_folder_without_runs_is_named(run_dir, tmp_path, refused_in_one_line):
    (tmp_path / "empty").mkdir()
    err = refused_in_one_line(main, run_dir, tmp_path / "empty", "--out", tmp_path / "merged")
    assert "holds no study run" in err and "empty" in err


@pytest.mark.parametrize("text, expect", [("", "is not a results table"), ("a,b\n1,2\n", "has columns ['a', 'b']")])
def test_damaged_results_csv_is_one_line(run_dir, tmp_path, refused_in_one_line, text, expect):
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    (work / "results.csv").write_text(text)
    assert expect in refused_in_one_line(main, work, "--out", tmp_path / "merged")


def test_two_seeds_merge_into_mean_of_means_with_se_across_seeds(tmp_path):
    # Two seeds of one graph: the merged results.csv keeps both, and the report's combined numbers are
    # the mean of the per-seed means, the SE across seeds and the total n, recomputed here with numpy.
    import numpy as np
    import pandas as pd

    from bncompare.reports.data import load
    from bncompare.reports.merge import merge

    runs = [run_study(compose(SMALL + [f"seed={s}", "context_lens=[2,10]"]), tmp_path / f"seed{s}") for s in (0, 1)]
    pdf = merge(runs, tmp_path / "merged")
    assert pdf.is_file() and pdf.stat().st_size > 10_000
    per_seed = [pd.read_csv(r / "results.csv", keep_default_na=False, na_values=[""]) for r in runs]
    merged = pd.read_csv(tmp_path / "merged" / "results.csv", keep_default_na=False, na_values=[""])
    assert len(merged) == sum(len(p) for p in per_seed) and set(merged["seed"]) == {0, 1}

    comb = load(runs).combined("chain-5")
    keys = ["estimator", "context_len", "node", "metric"]
    a, b = (p.set_index(keys) for p in per_seed)
    checked = 0
    for key, row in comb.set_index(keys).iterrows():
        m0, m1 = a.loc[key, "mean"], b.loc[key, "mean"]
        if not (np.isfinite(m0) and np.isfinite(m1)):
            continue
        assert row["mean"] == pytest.approx((m0 + m1) / 2, rel=1e-12, abs=1e-15)
        assert row["sem"] == pytest.approx(abs(m0 - m1) / 2, rel=1e-9, abs=1e-15)  # std of two / sqrt(2)
        assert row["n"] == a.loc[key, "n"] + b.loc[key, "n"] and row["seeds"] == 2
        checked += 1
    assert checked > 100
    assert a.loc[("bayes", 2, "all", "cond_tv"), "mean"] != b.loc[("bayes", 2, "all", "cond_tv"), "mean"]  # other draws

    # results_combined.csv: the same combined rows with their 95% t interval (1 degree of freedom: 12.706)
    table = pd.read_csv(tmp_path / "merged" / "results_combined.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == ["graph", "estimator", "context_len", "node", "metric", "mean", "sem", "half95",
                                   "ci_low", "ci_high", "seeds", "n", "interval"]
    assert len(table) == len(comb) and set(table["graph"]) == {"chain-5"}
    checked = 0
    for _, row in table.iterrows():
        key = (row["estimator"], row["context_len"], row["node"], row["metric"])
        m0, m1 = a.loc[key, "mean"], b.loc[key, "mean"]
        if not (np.isfinite(m0) and np.isfinite(m1)):
            continue
        half = 12.706 * abs(m0 - m1) / 2
        assert row["half95"] == pytest.approx(half, rel=1e-4, abs=1e-15)
        assert row["ci_low"] == pytest.approx((m0 + m1) / 2 - half, abs=1e-4 * half + 1e-15)  # 12.706: 5 digits
        assert row["ci_high"] == pytest.approx((m0 + m1) / 2 + half, abs=1e-4 * half + 1e-15)
        assert row["seeds"] == 2 and row["interval"] == "t over seeds"
        checked += 1
    assert checked > 100


def test_combine_seeds_t_interval_by_hand():
    # Three seeds of one row: the mean of the per-seed means, their SD / sqrt(3), and the 95% t quantile with
    # 2 degrees of freedom (4.303, from a printed table); one seed of another row keeps 1.96 SE over episodes.
    import numpy as np
    import pandas as pd

    from bncompare.metrics.summary import combine_seeds

    means = [0.10, 0.16, 0.13]
    rows = [dict(graph="g", seed=s, estimator="mle", context_len=10, node="all", metric="cond_tv", mean=m,
                 sem=0.01, n=100) for s, m in enumerate(means)]
    rows.append(dict(graph="g", seed=0, estimator="bayes", context_len=10, node="all", metric="cond_tv", mean=0.2,
                     sem=0.02, n=100))
    comb = combine_seeds(pd.DataFrame(rows)).set_index("estimator")
    mean = sum(means) / 3
    sd = (sum((m - mean) ** 2 for m in means) / 2) ** 0.5
    three = comb.loc["mle"]
    assert three["mean"] == pytest.approx(0.13) and three["sem"] == pytest.approx(sd / 3 ** 0.5)
    assert three["half95"] == pytest.approx(4.303 * sd / 3 ** 0.5, rel=1e-4)
    assert three["ci_low"] == pytest.approx(0.13 - 4.303 * 0.03 / 3 ** 0.5, abs=1e-5)  # 4.303: 4 digits
    assert (three["seeds"], three["n"], three["interval"]) == (3, 300, "t over seeds")
    one = comb.loc["bayes"]
    assert one["half95"] == pytest.approx(1.96 * 0.02) and one["interval"] == "normal over episodes"
    assert one["ci_high"] == pytest.approx(0.2 + 1.96 * 0.02) and np.isclose(one["sem"], 0.02)


@pytest.mark.parametrize("where", ["the input", "inside the input", "around the input"])
def test_an_input_as_the_output_is_refused(run_dir, tmp_path, refused_in_one_line, where):
    work = tmp_path / "sweep" / "a"
    shutil.copytree(run_dir, work)
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    out = {"the input": work, "inside the input": work / "merged", "around the input": tmp_path / "sweep"}[where]
    err = refused_in_one_line(main, work, "--out", out)
    assert "would overwrite it" in err and str(work) in err, err
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before
    assert not (work / "merged").exists()


FORMULAS = ('nodes:\n  "=A": {card: 2}\n  "+B": {parents: ["=A"]}\n  "-C": {parents: ["+B"]}\n'
            '  "@D": {parents: ["-C"]}\n  "\'E": {parents: ["@D"]}\n')


def _cells_starting_with_a_formula(path) -> list[str]:
    import csv
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    bad = []
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@") and not _number(cell):
                bad.append(cell)
    return bad


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_names_a_spreadsheet_would_run_are_escaped_and_read_back(tmp_path, capsys):
    from bncompare.reports.compare import main as compare_main
    from bncompare.rundir import read_results

    (tmp_path / "net.yaml").write_text(FORMULAS)
    run = run_study(compose(SMALL[1:] + ["graph=file", f"graph.options.path={tmp_path / 'net.yaml'}",
                                         "graph.options.truth=prior"]), tmp_path / "runs" / "formulas")
    names = {"=A", "+B", "-C", "@D", "'E"}
    written = [run / "results.csv", run / "episodes.csv.gz", *sorted((run / "cells").glob("*.csv.gz"))]
    merged = tmp_path / "merged"
    main([str(run), "--out", str(merged)])
    written += [merged / "results.csv", merged / "results_combined.csv"]
    compare_main([str(run), "--write-reference", "mine", "--out", str(tmp_path / "refs")])
    written.append(tmp_path / "refs" / "mine.csv")
    for path in written:
        assert not _cells_starting_with_a_formula(path), (path, _cells_starting_with_a_formula(path)[:5])
    results = read_results(run / "results.csv")
    assert names <= set(results["node"]) and results["mean"].dtype.kind == "f"
    assert (results["mean"] < 0).any()  # negative numbers (paired differences) stay numbers
    assert set(read_results(merged / "results.csv")["node"]) == set(results["node"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        compare_main([str(run), "--reference", "mine", "--references", str(tmp_path / "refs")])
    assert stop.value.code == 0 and "reproduced exactly" in capsys.readouterr().out
