"""The study runner end to end: the smoke preset through the real CLI, resume after a kill, merge, CLI errors."""
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bncompare.metrics.summary import RESULT_COLUMNS
from bncompare.reports.data import read_results
from bncompare.studies.protocol import BLOCK, Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import build_problem

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("fit_seconds_per_context", "predict_seconds_per_context", "seconds_per_context")


def env(tmp: Path) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["BNCOMPARE_CACHE"] = str(tmp / "cache")  # never touch the user's model cache
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def cli(tmp: Path, *args, module="bncompare.studies.run", **kw):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, env=env(tmp), capture_output=True,
                          text=True, timeout=300, **kw)


def n_pages(pdf: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))


def numbers(results: pd.DataFrame) -> pd.DataFrame:
    keep = ~results["metric"].isin(TIMING)
    return results[keep].sort_values(["estimator", "context_len", "node", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    out = tmp / "out"
    t0 = time.perf_counter()
    run = cli(tmp, "study=smoke", f"out_dir={out}", "progress=false", umask=0o022)  # a shared cluster's umask
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"smoke study: {time.perf_counter() - t0:.1f} s")
    return tmp, out


def test_smoke_writes_every_output(smoke):
    _, out = smoke
    for name in ("results.csv", "episodes.csv.gz", "config.yaml", "report.pdf", "meta.json"):
        assert (out / name).is_file(), name
    results = read_results(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert not results.duplicated(["estimator", "context_len", "node", "metric"]).any()
    cfg = compose(["study=smoke"])
    assert set(results["estimator"]) == {k for k, v in cfg["estimators"].items() if v is not None}  # every one ran
    for metric in ("cond_tv", "cond_kl", "joint_tv", "joint_kl", "unseen_frac", "seconds_per_context",
                   "cond_tv_excess", "agree_tv", "attn_match"):
        assert metric in set(results["metric"]), metric
    assert set(results["node"]) >= {"A", "G", "all"}
    slow = results[(results["estimator"] == "pyro_nuts") & (results["metric"] == "cond_tv")]
    assert set(slow["context_len"]) == {20} and (slow["n"] == 8).all()  # subset and context_lens honoured
    assert (out / "extras" / "history_trained.csv").is_file()
    assert n_pages(out / "report.pdf") >= 13
    with gzip.open(out / "episodes.csv.gz", "rt") as f:
        assert f.readline().strip() == "graph,seed,estimator,context_len,episode,node,metric,value"


def test_smoke_reproduces_the_shipped_reference(smoke):
    # the install check of the README: a fresh smoke run against the shipped table (a change of the
    # numbers must regenerate it: python -m bncompare.reports.compare <run> --write-reference)
    tmp, out = smoke
    run = cli(tmp, str(out), "--reference", "tree-7_smoke_seed0", module="bncompare.reports.compare")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "verdict: reproduced" in run.stdout


def test_run_files_and_model_cache_follow_the_umask(smoke):
    # colleagues on a shared file system read a run directory and a shared model cache (umask 022)
    tmp, out = smoke
    private = [p for root in (out, tmp / "cache") for p in root.rglob("*")
               if p.is_file() and p.stat().st_mode & 0o044 != 0o044]
    assert not private, [f"{p.relative_to(tmp)} {oct(p.stat().st_mode & 0o777)}" for p in private[:5]]


def test_smoke_numbers_are_paired_and_sane(smoke):
    _, out = smoke
    eps = pd.read_csv(out / "episodes.csv.gz", keep_default_na=False, na_values=[""], dtype={"node": str})
    tv = eps[(eps["metric"] == "cond_tv")].pivot_table(index=["context_len", "episode", "node"],
                                                      columns="estimator", values="value")
    # the constructed transformer counts exactly: same TV as MLE on every episode and node
    assert np.allclose(tv["constructed_mle"], tv["mle"], atol=1e-9)
    assert np.allclose(tv["constructed_bayes"], tv["bayes"], atol=1e-9)
    sub = tv.dropna(subset=["pgmpy_mle"])
    assert len(sub) and np.allclose(sub["pgmpy_mle"], sub["mle"], atol=1e-12)  # pgmpy on the same episodes
    results = read_results(out / "results.csv").set_index(["estimator", "context_len", "node", "metric"])
    assert results.loc[("mle", 2, "all", "cond_tv_excess"), "mean"] > 0  # Bayes beats MLE at N = 2
    assert results.loc[("pgmpy_mle", 2, "all", "agree_tv"), "mean"] < 1e-12
    assert np.isinf(results.loc[("mle", 2, "all", "cond_kl"), "mean"])  # reported, not clipped
    assert 0 < results.loc[("mle", 2, "all", "cond_kl_inf_frac"), "mean"] < 1


def test_resume_recomputes_only_missing_cells(smoke, tmp_path):
    _, out = smoke
    work = tmp_path / "out"
    shutil.copytree(out, work)
    before = read_results(work / "results.csv")
    cells = sorted((work / "cells").glob("*.csv.gz"))
    lost = [cells[0], cells[5]]
    for p in lost:
        p.unlink()
    (work / "cells" / "trained__N20__deadbeef.csv.gz.tmp").write_text("half a cell")  # killed mid-write
    kept = {p: p.stat().st_mtime_ns for p in cells if p not in lost}
    run = cli(tmp_path, "study=smoke", f"out_dir={work}", "progress=false", "report=false")
    assert run.returncode == 0, run.stderr[-3000:]
    last = json.loads((work / "meta.json").read_text())["runs"][-1]
    assert (last["cells_computed"], last["cells_reused"]) == (2, len(cells) - 2)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list((work / "cells").glob("*.tmp"))
    after = read_results(work / "results.csv")
    assert len(after) == len(before)
    pd.testing.assert_frame_equal(numbers(after), numbers(before))  # same seed -> same numbers


def test_killed_run_resumes_and_merges(smoke, tmp_path):
    out = tmp_path / "chain"
    args = ["graph=chain", "estimators=counting", "episodes=1000", "context_lens=[1,10,100]",
            f"out_dir={out}", "progress=false", "report=false"]
    proc = subprocess.Popen([sys.executable, "-m", "bncompare.studies.run", *args], cwd=tmp_path, env=env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "cells").glob("*.csv.gz")) and proc.poll() is None:
        time.sleep(0.05)
    t_kill = time.perf_counter()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "cells").glob("*.csv.gz")))
    assert 1 <= done < 15  # killed mid-study (5 estimators x 3 lengths)
    run = cli(tmp_path, *args)
    print(f"resume after kill: {time.perf_counter() - t_kill:.1f} s")
    assert run.returncode == 0, run.stderr[-3000:]
    last = json.loads((out / "meta.json").read_text())["runs"][-1]
    assert last["cells_reused"] == done and last["cells_computed"] == 15 - done
    results = read_results(out / "results.csv")
    assert not results.duplicated(["estimator", "context_len", "node", "metric"]).any()
    assert len(results.groupby(["estimator", "context_len"])) == 15

    # one report for both studies (tree from the smoke run, chain from this one)
    merged = tmp_path / "merged"
    t0 = time.perf_counter()
    run = cli(tmp_path, str(smoke[1]), str(out), "--out", str(merged), module="bncompare.reports.merge")
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"merge: {time.perf_counter() - t0:.1f} s")
    both = read_results(merged / "results.csv")
    assert set(both["graph"]) == {"tree-7", "chain-7"}
    assert n_pages(merged / "report.pdf") > n_pages(smoke[1] / "report.pdf")


@pytest.mark.parametrize("override, expect", [
    ("graph=nosuchgraph", "valid choices: "),
    ("episodes=abc", "episodes must be an integer"),
    ("context_lens=[-1,10]", "context length must be >= 0"),
    ("out_dir=/dev/null/sub", "cannot write"),
])
def test_cli_errors_are_one_line(tmp_path, override, expect):
    run = cli(tmp_path, override, "progress=false")
    assert run.returncode == 2
    err = run.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: ") and expect in err, err
    if override.startswith("graph="):
        assert "tree" in err and "sachs" in err


def test_help_lists_the_choices(tmp_path):
    run = cli(tmp_path, "--help")
    assert run.returncode == 0
    for text in ("graph:", "sachs", "random", "study: agnostic, autoregressive, default, paper, smoke", "estimators:",
                 "prior:"):
        assert text in run.stdout, text


def test_draws_do_not_depend_on_batch_size_and_subsets_share_episodes():
    spec = study_spec(compose(["estimators=counting", "episodes=70", "context_lens=[5]"]))
    graph, truth, _ = build_problem(spec)
    a = list(Episodes(graph, truth, spec).batches(5, 70, batch_size=32))
    b = list(Episodes(graph, truth, spec).batches(5, 70, batch_size=1000))
    cat = lambda bs, f: torch.cat([getattr(x, f) for x in bs])  # noqa: E731
    assert len(a) == 3 and len(b) == 1 and b[0].size == 70
    for field in ("contexts", "queries"):
        assert torch.equal(cat(a, field), cat(b, field))
    assert a[0].size == BLOCK and list(a[2].episodes) == list(range(64, 70))
    sub = next(Episodes(graph, truth, spec).batches(5, 3, batch_size=32))
    assert torch.equal(sub.contexts, a[0].contexts[:3]) and torch.equal(sub.cpts[2], a[0].cpts[2][:3])
    other = study_spec(compose(["estimators=counting", "episodes=70", "context_lens=[5]", "seed=1"]))
    assert not torch.equal(next(Episodes(graph, truth, other).batches(5, 32, 32)).contexts, a[0].contexts)


@pytest.mark.parametrize("graph", ["random", "sachs"])
def test_random_dag_and_real_network_run(tmp_path, graph):
    from bncompare.networks import get_graph, load_network

    cfg = compose([f"graph={graph}", "estimators=counting", "episodes=8", "context_lens=[0,20]", "queries=2",
                   "fidelity.mc_samples=50", "progress=false", "report=false"])
    out = run_study(cfg, tmp_path / graph)
    results = read_results(out / "results.csv")
    ran = {(e, n) for e, n in zip(results["estimator"], results["context_len"])}
    assert ran == {(e, n) for e, v in cfg["estimators"].items() if v for n in (0, 20)}  # all, at both lengths
    # the run used the graph the name stands for
    want = get_graph("random-7", **cfg["graph"]["options"]) if graph == "random" else load_network("sachs").graph
    dag = json.loads((out / "graph.json").read_text())
    assert dag["names"] == list(want.names) and dag["cards"] == list(want.cards)
    assert dag["parents"] == [[want.names[p] for p in ps] for ps in want.parents]
    fidelity = {"sachs": "mc_pair_tv", "random": "joint_tv"}[graph]  # sachs: 3^11 states -> Monte Carlo
    assert fidelity in set(results["metric"])
    # the truth of every episode: fresh prior draws (random) or sachs's own bundled CPTs
    spec = study_spec(cfg)
    g, truth, _ = build_problem(spec)
    batch = next(Episodes(g, truth, spec).batches(20, 8, 32))
    if graph == "sachs":
        assert json.loads((out / "truth.json").read_text())["truth"] == "bundled"
        for m, c in enumerate(load_network("sachs").cpts):
            assert np.allclose(batch.cpts[m].numpy(), np.asarray(c)[None], atol=0)
    else:
        assert json.loads((out / "truth.json").read_text())["truth"] == "prior"
        assert not torch.equal(batch.cpts[3][0], batch.cpts[3][1])  # a fresh CPT set per episode
    # and learning happened: at N = 20 the queries are better predicted than with no context at all
    tv = results[(results["metric"] == "cond_tv") & (results["node"] == "all")].set_index(["estimator", "context_len"])
    assert tv.loc[("bayes", 20), "mean"] < tv.loc[("bayes", 0), "mean"]


def test_numbers_do_not_depend_on_batch_size(tmp_path):
    # 40 episodes = 2 blocks, in one batch or two; Monte Carlo draws included (sachs has 3^11 states)
    runs = []
    for bs in (32, 64):
        cfg = compose(["graph=sachs", "estimators=counting", "~estimators.naive", "episodes=40", "context_lens=[10]",
                       "queries=2", "fidelity.mc_samples=30", f"batch_size={bs}", "progress=false", "report=false"])
        runs.append(numbers(read_results(run_study(cfg, tmp_path / str(bs)) / "results.csv")))
    assert "mc_pair_tv" in set(runs[0]["metric"])
    pd.testing.assert_frame_equal(runs[0], runs[1])
