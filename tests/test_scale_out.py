"""Beyond one machine, on this CPU: torchrun with 2 gloo processes, sweeps through the
submitit (local executor, then merged) and joblib launchers; a real kill of the training command."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bncompare.networks import DirichletPrior, get_graph
from bncompare.studies import run as study_command  # noqa: F401  registers the configs the guard composes
from bncompare.studies.guard import check_config, job_configs
from bncompare.transformer import snapshot
from bncompare.transformer.distributed import rank_groups
from bncompare.transformer.train import STREAM_TASKS, TrainConfig, build_model, stream_seed, train_step

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SCRIPTS = Path(__file__).parent / "scripts"


def run(cmd, cwd, cache, timeout=300):
    env = dict(os.environ, BNCOMPARE_CACHE=str(cache), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_torchrun_trains_the_model_the_study_then_loads(tmp_path):
    """The issue's commands: 2 gloo processes train; the study, one process, finds that model in the cache
    (the process count is not part of the key)."""
    cache = tmp_path / "cache"
    done = run([*TORCHRUN, "-m", "bncompare.studies.train", "graph=tree", "study=smoke", "--only", "trained"], tmp_path,
               cache)
    assert "trained in" in done.stdout and "on 2 processes" in done.stdout
    assert "global batch 16 over 2 processes (gloo, 8 on rank 0)" in done.stderr and "lr 0.003" in done.stderr
    (entry,) = (cache / "transformer").iterdir()
    meta = json.loads((entry / "config.json").read_text())
    assert meta["processes"] == 2 and meta["train"]["batch_size"] == 16 and len(meta["history"]) == 60
    assert not (entry / snapshot.STATE).exists()
    log = pd.read_csv(entry / "train_log.csv")
    assert list(log["step"]) == list(range(60)) and log["eval_tv"].notna().sum() == 3
    weights = (entry / "model.pt").stat().st_mtime_ns, sha(entry / "model.pt")

    run([sys.executable, "-m", "bncompare.studies.run", "graph=tree", "study=smoke", f"out_dir={tmp_path / 'run'}",
         "report=false", "progress=false", "~estimators.pyro_svi", "~estimators.pyro_nuts", "~estimators.pgmpy_mle",
         "~estimators.pgmpy_bdeu", "~estimators.trained_plain"], tmp_path, cache)
    assert [p.name for p in (cache / "transformer").iterdir()] == [entry.name]  # no other model was trained
    assert ((entry / "model.pt").stat().st_mtime_ns, sha(entry / "model.pt")) == weights
    history = pd.read_csv(tmp_path / "run" / "extras" / "history_trained.csv")
    assert list(history["loss"]) == pytest.approx([h["loss"] for h in meta["history"]])  # the 2-process model's


def test_data_parallel_gradient_is_the_global_batch_mean(tmp_path):
    """2 processes, uneven groups per process (3 length groups): DDP's gradient and loss equal one process
    doing every rank's tasks in one batch."""
    cfg = TrainConfig(d_model=16, n_head=2, d_ff=32, n_layer=1, batch_size=9, length_groups=3, n_context_max=12,
                      n_queries=3, loss_weight_power=0.5)
    out = tmp_path / "ddp.pt"
    run([*TORCHRUN, str(SCRIPTS / "ddp_step.py"), str(out), json.dumps(cfg.to_dict())], tmp_path, tmp_path / "c")
    got = torch.load(out, weights_only=True)
    graph, prior = get_graph("chain-3"), DirichletPrior(1.0)
    model, loss = build_model(graph, cfg), 0.0
    for rank in range(2):  # each rank's own task stream and share of the batch, gradients summed
        gen = torch.Generator().manual_seed(stream_seed(cfg.seed, STREAM_TASKS, rank))
        groups = rank_groups(cfg.batch_size, cfg.length_groups, rank, 2)
        loss += train_step(model, graph, prior, cfg, gen, torch.device("cpu"), False, groups=groups)["loss"]
    assert got["loss"].item() == pytest.approx(loss, rel=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm", "joblib"])
def test_launcher_plugins_pass_the_guard(launcher):
    extra = ["hydra.launcher.gpus_per_node=1"] if launcher == "submitit_slurm" else []
    jobs = job_configs(["study=smoke", "seed=0,1", f"hydra/launcher={launcher}", *extra], None, multirun=True)
    assert len(jobs) == 2
    for job in jobs:
        check_config(OmegaConf.to_container(job, resolve=False))  # no error: the plugin's _target_ is allowed
        assert OmegaConf.select(job, "hydra.launcher._target_").startswith("hydra_plugins.")


def sweep(tmp_path, launcher, *overrides):
    out = tmp_path / "sweep"
    run([sys.executable, "-m", "bncompare.studies.run", "-m", "study=smoke", "estimators=counting", *overrides,
         "report=false", "progress=false", "episodes=32", "queries=4", f"hydra/launcher={launcher}",
         f"hydra.sweep.dir={out}"], tmp_path, tmp_path / "cache")
    return out


@pytest.mark.slow  # ~15 s: .ci/run runs it
def test_submitit_local_sweep_then_merge(tmp_path):
    """A tiny sweep over graphs through submitit's local executor (each job its own process), merged."""
    out = sweep(tmp_path, "submitit_local", "graph=tree,chain")
    assert len(list(out.glob("*/results.csv"))) == 2 and list((out / ".submitit").iterdir())
    run([sys.executable, "-m", "bncompare.reports.merge", str(out), "--out", str(tmp_path / "merged")], tmp_path,
        tmp_path / "cache")
    merged = pd.read_csv(tmp_path / "merged" / "results.csv")
    assert set(merged["graph"]) == {"tree-7", "chain-7"}
    assert (tmp_path / "merged" / "report.pdf").stat().st_size > 10_000


@pytest.mark.slow  # .ci/run runs it
def test_joblib_sweep(tmp_path):
    out = sweep(tmp_path, "joblib", "seed=0,1", "hydra.launcher.n_jobs=2")
    frames = [pd.read_csv(p) for p in sorted(out.glob("*/results.csv"))]
    assert [set(f["seed"]) for f in frames] == [{0}, {1}]


def start_until_snapshot(cmd, tmp_path) -> subprocess.Popen:
    """Start a training command on the cache ``tmp_path/a``; return once it has written a snapshot."""
    env = dict(os.environ, BNCOMPARE_CACHE=str(tmp_path / "a"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list((tmp_path / "a").glob(f"transformer/*/{snapshot.STATE}")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return proc


@pytest.mark.slow  # .ci/run runs it
def test_killed_training_command_resumes_to_the_same_weights(tmp_path):
    """A real kill -9 of the training command mid-run; the same command again finishes with the weights of
    an uninterrupted run."""
    overrides = ["graph=chain-5", "study=smoke", "transformer.train.steps=200", "transformer.train.eval_every=0",
                 "--only", "trained"]  # one model: the cache holds one entry
    cmd = [sys.executable, "-m", "bncompare.studies.train", *overrides, "--checkpoint-every", "10"]
    proc = start_until_snapshot(cmd, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (entry,) = (tmp_path / "a" / "transformer").iterdir()
    assert not (entry / "model.pt").exists(), "the run finished before it was killed: make it longer"
    step = torch.load(entry / snapshot.STATE, weights_only=True)["step"]
    assert 0 < step < 200
    done = run(cmd, tmp_path, tmp_path / "a")
    assert "trained in" in done.stdout and f"resuming at step {step}" in done.stderr
    run(cmd, tmp_path, tmp_path / "b")  # uninterrupted
    (straight,) = (tmp_path / "b" / "transformer").iterdir()
    a = torch.load(entry / "model.pt", weights_only=True)
    b = torch.load(straight / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("argv, expect", [
    (["graph=nosuch"], "unknown graph 'nosuch'"),
    (["estimators=counting"], "nothing to train: none of the estimators"),
    (["--only", "mle"], "nothing to train: none of the estimators \\['mle'\\]"),
    (["--only", "nosuch"], "--only nosuch: the study has no estimator 'nosuch'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--log-every", "0"], "--log-every >= 1"),
    (["+hydra.callbacks.x._target_=os.system"], "may not name code to call"),
    (["transformer.train.batch_size=0"], "batch_size must be >= 1"),
])
def test_training_command_errors_are_one_line(argv, expect, capsys, tmp_path, monkeypatch):
    from bncompare.studies.train import main

    monkeypatch.setenv("BNCOMPARE_CACHE", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert re.search(expect, err), err
    assert not (tmp_path / "transformer").exists()


@pytest.mark.slow  # .ci/run runs it
def test_killed_torchrun_training_resumes_to_the_same_weights(tmp_path):
    """kill -9 of torchrun and both its workers; the same command resumes every rank's task stream and
    ends with the weights of an uninterrupted 2-process run."""
    overrides = ["graph=chain-5", "study=smoke", "transformer.train.steps=200", "transformer.train.eval_every=0",
                 "--only", "trained"]  # one model: the cache holds one entry
    cmd = [*TORCHRUN, "-m", "bncompare.studies.train", *overrides, "--checkpoint-every", "10"]
    agent = start_until_snapshot(cmd, tmp_path)
    workers = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    for pid in [*map(int, workers), agent.pid]:  # the whole job dies at once, as when a node is lost
        os.kill(pid, signal.SIGKILL)
    agent.wait()
    (entry,) = (tmp_path / "a" / "transformer").iterdir()
    assert not (entry / "model.pt").exists(), "the run finished before it was killed: make it longer"
    step = torch.load(entry / snapshot.STATE, weights_only=True)["step"]
    assert torch.load(entry / snapshot.STATE, weights_only=True)["generators"].shape[0] == 2
    done = run(cmd, tmp_path, tmp_path / "a")
    assert f"resuming at step {step}" in done.stderr
    run(cmd, tmp_path, tmp_path / "b")  # uninterrupted
    (straight,) = (tmp_path / "b" / "transformer").iterdir()
    a = torch.load(entry / "model.pt", weights_only=True)
    b = torch.load(straight / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)
    again = run(cmd, tmp_path, tmp_path / "a")  # every rank gets rank 0's cached model; nothing trains
    assert "cached already" in again.stdout and "training on" not in again.stderr


def test_training_command_options_may_come_between_overrides():
    from bncompare.studies.train import parse

    args, overrides = parse(["graph=tree", "--only", "trained", "study=smoke", "~estimators.pyro_nuts",
                             "--checkpoint-every", "50"])
    assert overrides == ["graph=tree", "study=smoke", "~estimators.pyro_nuts"]
    assert args.only == ["trained"] and args.checkpoint_every == 50 and args.log_every == 100
