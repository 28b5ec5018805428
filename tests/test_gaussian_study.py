"""Linear-Gaussian studies through the real runner: the smoke preset end to end, and bad input as one line.

The smoke study runs every estimator of ``estimators=gaussian`` (tiny settings for the slow ones) on
gaussian-tree and writes the Gaussian report. The refusals stop in the command line's preflight (in
process, like tests/test_cli_guard.py), so they cost ~0.2 s each.
"""
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bncompare.reports.data import read_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_cli_guard import cli, main_in_process, one_line_error  # noqa: E402


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


CYCLE = """variables: gaussian
nodes:
  A: {parents: [C], weights: [1.0], intercept: 0, sigma: 1}
  B: {parents: [A], weights: [1.0], intercept: 0, sigma: 1}
  C: {parents: [B], weights: [1.0], intercept: 0, sigma: 1}
"""
ZERO_SIGMA = """variables: gaussian
nodes:
  A: {intercept: 0, sigma: 0}
  B: {parents: [A], weights: [2.0], intercept: 0, sigma: 1}
"""
NAN_WEIGHT = ('{"variables": "gaussian", "nodes": {"A": {"intercept": 0, "sigma": 1}, '
              '"B": {"parents": ["A"], "weights": [NaN], "intercept": 0, "sigma": 1}}}')
GOOD = """variables: gaussian
nodes:
  A: {intercept: 0.5, sigma: 1.0}
  B: {parents: [A], weights: [2.0], intercept: 0.0, sigma: 0.5}
"""


@pytest.mark.parametrize("name, text, expect", [
    ("cycle.yaml", CYCLE, "graph has a cycle: "),
    ("sigma.yaml", ZERO_SIGMA, "node 'A': sigma must be > 0"),
    ("nan.json", NAN_WEIGHT, "node 'B': weight of A must be finite"),
])
def test_bad_gaussian_network_file_is_one_line(tmp_path, capsys, monkeypatch, name, text, expect):
    path = write(tmp_path, name, text)
    run = main_in_process(capsys, monkeypatch, tmp_path, "graph=file", f"graph.options.path={path}",
                          "variables=gaussian", "prior=nig", f"out_dir={tmp_path / 'out'}")
    one_line_error(run, expect)


@pytest.mark.parametrize("overrides, expect", [
    # a discrete estimator on a Gaussian graph, and the reverse
    (["graph=gaussian-tree", "+estimators.counts.kind=mle"], "estimators ['counts'] fit discrete networks"),
    (["graph=tree", "estimators=counting", "+estimators.ls.kind=gaussian_mle"],
     "estimators ['ls'] fit gaussian networks"),
    # the prior and the variables disagree
    (["graph=gaussian-tree", "prior=dirichlet"], "prior dirichlet draws parameters of discrete networks"),
    (["graph=tree", "prior=nig"], "prior nig draws parameters of gaussian networks"),
    # a Gaussian network file without saying so
    (["graph=file", "graph.options.path={good}"], "holds gaussian variables, but the study's are discrete"),
])
def test_mixed_variables_are_one_line(tmp_path, capsys, monkeypatch, overrides, expect):
    good = write(tmp_path, "good.yaml", GOOD)
    args = [o.format(good=good) for o in overrides] + ["study=smoke", f"out_dir={tmp_path / 'out'}"]
    run = main_in_process(capsys, monkeypatch, tmp_path, *args)
    one_line_error(run, expect)


def test_cyclic_gaussian_file_end_to_end(tmp_path):
    path = write(tmp_path, "cycle.yaml", CYCLE)
    run = cli(tmp_path, "graph=file", f"graph.options.path={path}", "variables=gaussian", "prior=nig")
    one_line_error(run, "graph has a cycle")


@pytest.fixture(scope="module")
def gaussian_smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gsmoke")
    out = tmp / "out"
    run = cli(tmp, "graph=gaussian-tree", "study=smoke", f"out_dir={out}", "progress=false")
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_gaussian_smoke_study_end_to_end(gaussian_smoke):
    """Every estimator of the Gaussian set gives every Gaussian measure; the references and mirrors behave."""
    results = read_results(gaussian_smoke / "results.csv")
    every = results[results["node"] == "all"]
    names = set(every["estimator"])
    assert {"bayes", "mle", "ridge", "naive", "constructed_gd", "trained", "pgmpy_mle", "pyro_nuts",
            "pyro_svi"} <= names
    for metric in ("cond_kl", "query_nll", "crps", "cover50", "cover90"):
        assert names == set(every.loc[every["metric"] == metric, "estimator"]), metric

    def value(est, n, metric):
        row = every[(every["estimator"] == est) & (every["context_len"] == n) & (every["metric"] == metric)]
        return float(row["mean"].iloc[0])

    # least squares at N = 2 on nodes with a parent: zero residuals, a point mass, infinite KL (as MLE's zeros)
    assert value("mle", 2, "cond_kl_inf_frac") > 0.5 and np.isinf(value("mle", 2, "cond_kl"))
    assert np.isfinite(value("bayes", 2, "cond_kl")) and value("bayes", 20, "cond_kl") < value("mle", 20, "cond_kl")
    assert value("pgmpy_mle", 20, "agree_max_abs") < 1e-9  # pgmpy's fit is least squares
    assert value("mle", 20, "cond_kl_excess") > 0  # paired against bayes, the reference
    assert 0.6 < value("bayes", 20, "cover90") <= 1
    shares = every[(every["estimator"] == "bayes") & (every["context_len"] == 20)
                   & every["metric"].str.startswith("pit_share@")]["mean"]
    assert len(shares) == 10 and abs(shares.sum() - 1) < 1e-9
    assert value("mle", 20, "joint_kl") > 0 and value("mle", 20, "param_err") > 0
    graph = json.loads((gaussian_smoke / "graph.json").read_text())
    assert graph["variables"] == "gaussian"
    history = pd.read_csv(gaussian_smoke / "extras" / "history_trained.csv")
    assert {"loss", "eval_kl@2", "eval_bayes_kl@2"} <= set(history.columns)
    assert (gaussian_smoke / "report.pdf").stat().st_size > 20_000


def test_gaussian_rerun_reuses_every_cell(gaussian_smoke, tmp_path):
    """The same command again finds every cell (nothing recomputed, the numbers unchanged)."""
    before = (gaussian_smoke / "results.csv").read_text()
    run = cli(tmp_path, "graph=gaussian-tree", "study=smoke", f"out_dir={gaussian_smoke}", "progress=false",
              "report=false")
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"(\d+) cells, \1 already done", run.stdout + run.stderr), run.stdout[-2000:]
    after = pd.read_csv(gaussian_smoke / "results.csv")
    keep = ~after["metric"].str.contains("seconds")
    old = pd.read_csv(io.StringIO(before))
    pd.testing.assert_frame_equal(old[~old["metric"].str.contains("seconds")].reset_index(drop=True),
                                  after[keep].reset_index(drop=True))
