"""The second process that trains a study's longest-training estimator: the same numbers and weights as
training in the study's own process, and it never outlives the study (kill -9, Ctrl-C)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bncompare.rundir import read_results
from bncompare.studies import runner
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"fit_seconds_per_context", "predict_seconds_per_context", "seconds_per_context"}


def tiny(cache: Path, steps: int = 30) -> list[str]:
    """Counting estimators and one small trained transformer (a few seconds of training)."""
    train = "estimators.tf.params.train_cfg"
    return ["graph=chain-5", "estimators=counting", "~estimators.naive", "~estimators.bdeu", "episodes=8",
            "context_lens=[3,12]", "queries=2", "progress=false", "report=false", "+estimators.tf.kind=trained",
            f"+{train}.steps={steps}", f"+{train}.d_model=16", f"+{train}.n_head=2", f"+{train}.d_ff=32",
            f"+{train}.n_context_max=12", f"+{train}.eval_every=0", f"+estimators.tf.params.cache_dir={cache}"]


def numbers(out: Path):
    r = read_results(out / "results.csv")
    return r[~r["metric"].isin(TIMING)].sort_values(["estimator", "context_len", "node", "metric"]).reset_index(
        drop=True)


def test_a_short_training_stays_in_the_study_process(tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.INFO)
    monkeypatch.setenv("BNCOMPARE_PARALLEL", "1")
    run_study(compose(tiny(tmp_path / "cache")), tmp_path / "run")  # ~1 s of training: not worth a process
    assert "training in a second process" not in caplog.text


def test_second_process_trains_the_same_model_and_numbers(tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(runner, "BACKGROUND_SECONDS", 0)  # a second process even for a training of seconds
    outs = {}
    for parallel in ("0", "1"):
        monkeypatch.setenv("BNCOMPARE_PARALLEL", parallel)
        cache = tmp_path / f"cache{parallel}"
        outs[parallel] = run_study(compose(tiny(cache)), tmp_path / f"run{parallel}"), cache
    assert "training in a second process" in caplog.text  # the second run did use it
    (a, cache_a), (b, cache_b) = outs["0"], outs["1"]
    assert numbers(a).equals(numbers(b))
    weights = sorted(p.relative_to(cache_a) for p in cache_a.rglob("model.pt"))
    assert weights and weights == sorted(p.relative_to(cache_b) for p in cache_b.rglob("model.pt"))
    assert all((cache_a / w).read_bytes() == (cache_b / w).read_bytes() for w in weights)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _start(tmp_path: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               BNCOMPARE_PARALLEL="1")
    env.pop("HYDRA_FULL_ERROR", None)
    args = tiny(tmp_path / "cache", steps=100_000) + [f"out_dir={tmp_path / 'run'}"]
    return subprocess.Popen([sys.executable, "-m", "bncompare.studies.run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _second_pid(proc) -> int:
    deadline = time.time() + 120
    for line in proc.stdout:  # Hydra logs to stdout
        if "training in a second process (pid " in line:
            return int(line.split("(pid ")[1].split(")")[0])
        if time.time() > deadline:
            break
    raise AssertionError("the study did not start a second process")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", ["kill", "ctrl_c"])
def test_the_second_process_ends_with_the_study(tmp_path, how):
    proc = _start(tmp_path)
    pid = _second_pid(proc)
    assert _alive(pid)
    if how == "kill":
        proc.send_signal(signal.SIGKILL)
    else:  # a terminal's Ctrl-C reaches the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    deadline = time.time() + 20
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    if how == "ctrl_c":
        assert proc.returncode == 130
    assert not list((tmp_path / "run" / "cells").glob("*.tmp"))
