"""The command line refuses bad input: hostile presets and overrides, bad values, out_dir problems, shared out_dirs.

Every case expects exit code 2, one line on stderr, no traceback, nothing run. The end-to-end cases run the
real CLI in a subprocess; the many small refusals call the same ``main()`` in this process (they stop in its
preflight, before Hydra starts), which keeps them at ~0.2 s each instead of ~3 s.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def env(tmp: Path) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["BNCOMPARE_CACHE"] = str(tmp / "cache")
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def cli(tmp: Path, *args, module="bncompare.studies.run"):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, env=env(tmp), capture_output=True,
                          text=True, timeout=300)


def main_in_process(capsys, monkeypatch, tmp: Path, *args) -> subprocess.CompletedProcess:
    """``python -m bncompare.studies.run *args`` for a command refused before Hydra starts, run in this process."""
    from bncompare.studies.run import main

    monkeypatch.chdir(tmp)
    monkeypatch.setattr(sys, "argv", ["run.py", *args])
    # main() sets these for its own process: setenv (not delenv of an absent key) makes monkeypatch undo them,
    # so later tests' subprocesses do not inherit HYDRA_FULL_ERROR=1 and print tracebacks
    from bncompare.studies.run import _USER_TRACEBACK

    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setenv(_USER_TRACEBACK, "0")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, stop.value.code, out.out, out.err)


def one_line_error(run, expect: str = "") -> str:
    err = run.stderr.strip()
    assert run.returncode == 2, (run.returncode, err[-2000:])
    assert "\n" not in err and "Traceback" not in err, err[-2000:]
    assert err.startswith("error: ") and expect in err, err
    return err


FAST = ["study=smoke", "estimators=counting", "report=false", "progress=false"]


# ----- nothing in a config may name code to call -----------------------------------------------

def _payload(tmp: Path) -> tuple[Path, Path]:
    src, dst = tmp / "payload.txt", tmp / "planted.pth"
    src.write_text("import os\n")
    return src, dst


@pytest.mark.parametrize("preset", [
    "hydra:\n  callbacks:\n    p:\n      _target_: shutil.copyfile\n      src: {src}\n      dst: {dst}\n",
    "hydra:\n  job_logging:\n    version: 1\n    handlers:\n      h:\n        class: logging.FileHandler\n"
    "        filename: {dst}\n    root:\n      handlers: [h]\n",
    "hydra:\n  hydra_logging:\n    version: 1\n    filters:\n      f:\n        (): pathlib.Path.touch\n"
    "        self: {dst}\n",
    "estimators:\n  mle:\n    kind: mle\n    params:\n      _target_: shutil.copyfile\n"
    "      src: {src}\n      dst: {dst}\n",
    "hydra:\n  job:\n    env_set:\n      PYTHONPATH: {src}\n",
])
def test_preset_cannot_call_code(tmp_path, capsys, monkeypatch, preset):
    src, dst = _payload(tmp_path)
    (tmp_path / "presets" / "study").mkdir(parents=True)
    body = "# @package _global_\ndefaults:\n  - override /estimators: counting\n" + preset.format(src=src, dst=dst)
    (tmp_path / "presets" / "study" / "evil.yaml").write_text(body)
    for mode in ([], ["-m"], ["--help"], ["--cfg", "job"]):
        run = main_in_process(capsys, monkeypatch, tmp_path, *mode, "--config-dir", str(tmp_path / "presets"),
                              "study=evil", "episodes=32", "context_lens=[2]", "report=false", "progress=false")
        one_line_error(run, "not allowed" if "_target_" not in preset else "may not name code")
        assert not dst.exists(), mode


def test_preset_cannot_call_code_end_to_end(tmp_path):
    """The issue's attack through the real command: a preset copying chosen bytes to a chosen path."""
    src, dst = _payload(tmp_path)
    (tmp_path / "presets" / "study").mkdir(parents=True)
    (tmp_path / "presets" / "study" / "evil.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    p:\n      _target_: shutil.copyfile\n"
        f"      src: {src}\n      dst: {dst}\n")
    for mode in ([], ["--help"]):
        run = cli(tmp_path, *mode, "--config-dir", str(tmp_path / "presets"), *FAST, "study=evil")
        one_line_error(run, "hydra.callbacks.p._target_")
        assert not dst.exists(), mode


@pytest.mark.parametrize("overrides", [
    ["+hydra.callbacks.p._target_=shutil.copyfile", "+hydra.callbacks.p.src={src}", "+hydra.callbacks.p.dst={dst}"],
    ["+hydra.job_logging.handlers.x.class=logging.FileHandler", "+hydra.job_logging.handlers.x.filename={dst}"],
    ["+hydra.launcher.x._target_=shutil.copyfile", "+hydra.launcher.x.src={src}", "+hydra.launcher.x.dst={dst}"],
    ["+hydra.job.env_set.PYTHONPATH={src}"],
    ["+hydra.launcher.setup=[cp {src} {dst}]"],
])
def test_command_line_cannot_call_code(tmp_path, capsys, monkeypatch, overrides):
    src, dst = _payload(tmp_path)
    args = [o.format(src=src, dst=dst) for o in overrides]
    for mode in ([], ["-m"]):
        one_line_error(main_in_process(capsys, monkeypatch, tmp_path, *mode, *FAST, *args))
        assert not dst.exists(), mode


def test_sweep_job_cannot_bring_code(tmp_path, capsys, monkeypatch):
    """A job of a -m sweep composes its own config: a preset chosen by one job only is checked too."""
    src, dst = _payload(tmp_path)
    (tmp_path / "presets" / "study").mkdir(parents=True)
    (tmp_path / "presets" / "study" / "evil.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    p:\n      _target_: shutil.copyfile\n"
        f"      src: {src}\n      dst: {dst}\n")
    run = main_in_process(capsys, monkeypatch, tmp_path, "-m", "--config-dir", str(tmp_path / "presets"),
                          "study=smoke,evil", "estimators=counting", "report=false", "progress=false",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}")
    one_line_error(run, "hydra.callbacks")
    assert not dst.exists() and not (tmp_path / "sweep").exists()  # refused before any job ran


def test_unpickling_rerun_is_refused(tmp_path, capsys, monkeypatch):
    run = main_in_process(capsys, monkeypatch, tmp_path, "--experimental-rerun", str(tmp_path / "x.pickle"))
    one_line_error(run, "unpickles")


# ----- bad values: one line, exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("override, expect", [
    ("context_lens=[nan]", "must be an integer"),
    ("context_lens=[inf]", "must be an integer"),
    ("context_lens=[]", "non-empty list"),
    ("episodes=nan", "episodes must be an integer"),
    ("seed=inf", "seed must be an integer"),
    ("prior.params.alpha=abc", "alpha must be a finite number"),
    ("+prior.params.foo=1", "unknown parameters ['foo']"),
    ("=5", "bad config or override"),
    ("graph=null", "bad config or override"),
    ("+nosuchkey=5", "unknown keys ['nosuchkey']"),
    ("+transformer.train.nosuch=1", "unknown keys ['nosuch']"),
    ("out_dir=", "out_dir is empty"),
])
def test_bad_values_are_one_line(tmp_path, capsys, monkeypatch, override, expect):
    one_line_error(main_in_process(capsys, monkeypatch, tmp_path, *FAST, override), expect)
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("override", ["context_lens=[nan]", "=5", "+nosuchkey=5"])
def test_bad_values_end_to_end(tmp_path, override):
    """The same refusals through the real command (the old code gave tracebacks or ran)."""
    one_line_error(cli(tmp_path, *FAST, override))
    assert not (tmp_path / "reports").exists()


def test_broken_preset_yaml_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "presets" / "study").mkdir(parents=True)
    (tmp_path / "presets" / "study" / "broken.yaml").write_text("# @package _global_\nepisodes: [1, 2\nseed: {\n")
    run = main_in_process(capsys, monkeypatch, tmp_path, "--config-dir", str(tmp_path / "presets"), "study=broken")
    one_line_error(run, "bad config")


def test_out_dir_under_multirun_is_refused(tmp_path, capsys, monkeypatch):
    run = main_in_process(capsys, monkeypatch, tmp_path, "-m", *FAST, "seed=0,1", f"out_dir={tmp_path / 'x'}",
                          f"hydra.sweep.dir={tmp_path / 's'}")
    one_line_error(run, "hydra.sweep.dir")
    assert not (tmp_path / "x").exists() and not (tmp_path / "s").exists()


def test_read_only_out_dir_is_one_line(tmp_path, read_only_dir):
    one_line_error(cli(tmp_path, *FAST, f"out_dir={read_only_dir}"), "cannot write to out_dir")


# ----- one run per out_dir ----------------------------------------------------------------------

def test_held_out_dir_names_its_holder(tmp_path):
    from bncompare.files import lock_dir

    out = tmp_path / "out"
    out.mkdir()
    lock_dir(out, "the test that holds it")  # this process holds it until the test session ends
    err = one_line_error(cli(tmp_path, *FAST, f"out_dir={out}"), "is in use by")
    assert f"pid {os.getpid()}" in err and "the test that holds it" in err
    assert not (out / "results.csv").exists() and not (out / ".hydra").exists()


def test_concurrent_runs_one_wins_nothing_corrupt(tmp_path):
    out = tmp_path / "out"
    args = ["graph=chain", "estimators=counting", "episodes=256", "context_lens=[1,10,100]",
            f"out_dir={out}", "progress=false", "report=false"]
    first = subprocess.Popen([sys.executable, "-m", "bncompare.studies.run", *args], cwd=tmp_path, env=env(tmp_path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".bncompare.lock").is_file():
        time.sleep(0.05)
    second = cli(tmp_path, *args)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    one_line_error(second, "is in use by pid")
    rerun = cli(tmp_path, *args)  # every cell of the winner reads back whole
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "damaged" not in rerun.stderr and not list((out / "cells").glob("*.tmp"))
