"""graph.options.truth=bundled|prior, for bundled real networks and the user's own file (graph=file)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bncompare.networks.families import load_network
from bncompare.reports.data import read_results
from bncompare.studies.protocol import Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import build_problem

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["estimators=counting", "episodes=32", "context_lens=[0,20]", "queries=2", "fidelity.mc_samples=30",
         "progress=false", "report=false"]
BIF = """network rain { }
variable Rain { type discrete [ 2 ] { no, yes }; }
variable Sprinkler { type discrete [ 2 ] { off, on }; }
variable Wet { type discrete [ 3 ] { dry, damp, wet }; }
probability ( Rain ) { table 0.8, 0.2; }
probability ( Sprinkler | Rain ) { (no) 0.6, 0.4; (yes) 0.99, 0.01; }
probability ( Wet | Rain, Sprinkler ) { (no, off) 0.9, 0.05, 0.05; (no, on) 0.1, 0.3, 0.6;
  (yes, off) 0.2, 0.3, 0.5; (yes, on) 0.01, 0.09, 0.9; }
"""
SPEC = """nodes:
  Rain: {states: [no, yes], cpt: [[0.8, 0.2]]}
  Wet: {parents: [Rain], states: [dry, wet], cpt: [[0.9, 0.1], [0.2, 0.8]]}
  Slip: {parents: [Wet], cpt: [[0.99, 0.01], [0.7, 0.3]]}
"""


def test_sachs_with_prior_truth(tmp_path):
    cfg = compose(["graph=sachs", "graph.options.truth=prior", *SMALL])
    graph, truth, _ = build_problem(study_spec(cfg))
    bundled = load_network("sachs").cpts
    cpts = Episodes(graph, truth, study_spec(cfg)).block(20, 0)[0]
    for m, c in enumerate(cpts):
        assert not np.allclose(c[0].numpy(), bundled[m])  # not the bundled CPTs
        assert not torch.allclose(c[0], c[1])  # a fresh set per episode
    out = run_study(cfg, tmp_path / "sachs")
    record = json.loads((out / "truth.json").read_text())
    assert record["truth"] == "prior" and "its own CPTs are not used" in record["description"]
    assert "mc_pair_tv" in set(read_results(out / "results.csv")["metric"])
    bundled_run = json.loads((run_study(compose(["graph=sachs", *SMALL]), tmp_path / "b") / "truth.json").read_text())
    assert bundled_run["truth"] == "bundled"


@pytest.mark.parametrize("name, truth", [("rain.bif", "bundled"), ("rain.bif", "prior"), ("rain.yaml", "bundled"),
                                         ("rain.json", "prior")])
def test_study_on_a_user_file(tmp_path, name, truth):
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps({"nodes": {"Rain": {"cpt": [[0.8, 0.2]]},
                                              "Wet": {"parents": ["Rain"], "cpt": [[0.9, 0.1], [0.2, 0.8]]}}}))
    else:
        path.write_text(BIF if name.endswith(".bif") else SPEC)
    cfg = compose(["graph=file", f"graph.options.path={path}", f"graph.options.truth={truth}", *SMALL])
    graph, source, _ = build_problem(study_spec(cfg))
    first = Episodes(graph, source, study_spec(cfg)).block(20, 0)[0]
    net = load_network_file(path)
    same = all(np.allclose(c[0].numpy(), net.cpts[m]) for m, c in enumerate(first))
    assert same == (truth == "bundled")
    out = run_study(cfg, tmp_path / "out")
    results = read_results(out / "results.csv")
    assert set(results["graph"]) == {"file-rain"}
    assert json.loads((out / "truth.json").read_text())["truth"] == truth
    assert len(results.groupby(["estimator", "context_len"])) > 1


def load_network_file(path):
    from bncompare.studies.truth import load_file_network

    return load_file_network(path, "bundled")


def test_structure_only_spec_needs_prior_truth(tmp_path):
    path = tmp_path / "shape.yaml"
    path.write_text("nodes:\n  A: {card: 3}\n  B: {parents: [A]}\n")
    from bncompare.errors import BNError

    with pytest.raises(BNError, match="have no cpt; give every CPT or use graph.options.truth=prior"):
        build_problem(study_spec(compose(["graph=file", f"graph.options.path={path}", *SMALL])))
    cfg = compose(["graph=file", f"graph.options.path={path}", "graph.options.truth=prior", *SMALL])
    assert build_problem(study_spec(cfg))[0].cards == (3, 2)


@pytest.mark.parametrize("args, expect", [
    (["graph=sachs", "graph.options.truth=fresh"], "graph.options.truth must be one of bundled, prior; got 'fresh'"),
    (["graph=file", "graph.options.path=nosuch.bif"], "BIF file not found: nosuch.bif"),
])
def test_bad_truth_or_file_is_one_line(tmp_path, args, expect):
    env = dict(os.environ, PYTHONPATH=str(ROOT), BNCOMPARE_CACHE=str(tmp_path / "cache"))
    env.pop("HYDRA_FULL_ERROR", None)
    run = subprocess.run([sys.executable, "-m", "bncompare.studies.run", *args, *SMALL], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    err = run.stderr.strip()
    assert run.returncode == 2 and "\n" not in err and expect in err, err[-2000:]
