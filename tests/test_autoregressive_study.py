"""Autoregressive studies (``study=autoregressive``) through the real command line and runner.

Bad input is refused in one line with exit code 2 (in process, before Hydra starts, as in
tests/test_cli_guard.py); the smoke preset runs every estimator of ``estimators=autoregressive`` end
to end, writes the report, and a rerun computes nothing.
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


@pytest.mark.parametrize("override, expect", [
    ("process.d=0", "process.d (the state dimension) must be an integer >= 1, got 0"),
    ("process.T=1", "process.T (the longest prefix) must be an integer >= 2, got 1"),
    ("process.sigma=-0.5", "process.sigma (the noise sd) must be a finite number >= 0, got -0.5"),
    ("process.law=unitary", "process.law must be one of orthogonal, commuting, gaussian, got 'unitary'"),
    ("process.start=zero", "process.start must be one of fixed, gaussian, got 'zero'"),
    ("process=unitary", "unknown process 'unitary'; valid choices: commuting, gaussian, orthogonal"),
    ("process.spectral_radius=1", "process.spectral_radius applies to law=gaussian only"),
])
def test_bad_process_is_one_line(tmp_path, capsys, monkeypatch, override, expect):
    run = main_in_process(capsys, monkeypatch, tmp_path, "study=autoregressive", override, "report=false",
                          f"out_dir={tmp_path / 'out'}")
    one_line_error(run, expect)


SMOKE = ["graph=autoregressive", "study=smoke", "process=commuting", "progress=false"]


@pytest.fixture(scope="module")
def ar_smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arsmoke")
    out = tmp / "out"
    run = cli(tmp, *SMOKE, f"out_dir={out}")
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_autoregressive_smoke_study_end_to_end(ar_smoke):
    """Every estimator of the autoregressive set, its measures, the mirrors and the report's inputs."""
    results = read_results(ar_smoke / "results.csv")
    every = results[results["node"] == "all"]
    names = {"bayes", "mle", "procrustes", "gd", "constructed", "trained_linear", "trained"}
    assert names == set(every["estimator"]) == set(every.loc[every["metric"] == "next_err", "estimator"])
    assert set(every.loc[every["metric"] == "W_err", "estimator"]) == names - {"trained"}  # it fits no W
    assert not (every["metric"] == "query_nll").any()  # sigma = 0: the next state is a point

    def value(est, n, metric):
        row = every[(every["estimator"] == est) & (every["context_len"] == n) & (every["metric"] == metric)]
        return float(row["mean"].iloc[0])

    # with sigma = 0 and t > d pairs, least squares and Procrustes recover W exactly
    for est in ("mle", "procrustes", "bayes"):
        assert value(est, 20, "next_err") < 1e-20 and value(est, 20, "W_err") < 1e-9, est
    assert value("gd", 20, "next_err") > 0.05  # one GD step does not
    assert value("constructed", 20, "agree_max_abs") < 1e-9  # the constructed layer is the GD step
    assert np.isfinite(value("trained_linear", 20, "next_err_vs_mirror"))
    graph = json.loads((ar_smoke / "graph.json").read_text())
    assert graph["variables"] == "autoregressive" and graph["names"] == ["s1", "s2", "s3", "s4", "s5"]
    history = pd.read_csv(ar_smoke / "extras" / "history_trained.csv")
    assert {"loss", "eval_err", "eval_gd_err", "eval_ls_err"} <= set(history.columns)
    art = json.loads((ar_smoke / "extras" / "artifacts_trained_linear.json").read_text())
    assert np.asarray(art["W_KQ"]).shape == (15, 15) and np.isfinite(art["map_distance"])
    assert (ar_smoke / "report.pdf").stat().st_size > 20_000


def test_autoregressive_rerun_reuses_every_cell(ar_smoke, tmp_path):
    """The same command again finds every cell (nothing recomputed, the numbers unchanged)."""
    before = (ar_smoke / "results.csv").read_text()
    run = cli(tmp_path, *SMOKE, f"out_dir={ar_smoke}", "report=false")
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"(\d+) cells, \1 already done", run.stdout + run.stderr), run.stdout[-2000:]
    after = pd.read_csv(ar_smoke / "results.csv")
    old = pd.read_csv(io.StringIO(before))
    keep = lambda f: f[~f["metric"].str.contains("seconds")].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(old), keep(after))
