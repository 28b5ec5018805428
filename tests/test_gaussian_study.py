"""Linear-Gaussian studies through the real runner: the smoke preset end to end, and bad input as one line.

The smoke study runs every estimator of ``estimators=gaussian`` (tiny settings for the slow ones) on
gaussian-tree and writes the Gaussian report. The refusals stop in the command line's preflight (in
process, like tests/test_cli_guard.py), so they cost ~0.2 s each.
"""
import sys
from pathlib import Path

import pytest

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
