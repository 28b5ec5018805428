"""One run directory: the folder checked and locked first is the folder written and recorded; a failed write
names its file in one line.
"""
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cli_guard import cli, env, main_in_process, one_line_error

BASE = ["study=smoke", "estimators=counting", "report=false", "progress=false"]
FAST = [*BASE, "episodes=64", "context_lens=[2]"]


# ----- a write that fails: one line naming the file, exit 2 --------------------------------------

def _small_files(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("limit, names", [(8000, "cells"), (4000, "")])
def test_full_disk_names_the_file(tmp_path, limit, names):
    """A write failing with no file name of its own (disk full; here the kernel's file size limit, which the
    study's cell files exceed at 8000 bytes, and Hydra's own record of the run, hydra.yaml, at 4000)."""
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "bncompare.studies.run", *BASE, f"out_dir={out}"],
                         cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=300,
                         preexec_fn=_small_files(limit))
    err = one_line_error(run, "File too large")
    assert str(out / names) in err and "Error executing job" not in run.stdout + run.stderr, err


def test_read_only_folder_in_the_run_names_the_file(tmp_path, read_only_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells").symlink_to(read_only_dir)  # the run's cells/ folder cannot be written
    run = cli(tmp_path, *FAST, f"out_dir={out}")
    err = one_line_error(run, str(out / "cells"))
    assert ".tmp" not in err, err  # the file the run writes, not its temporary name
    assert "Error executing job" not in run.stdout + run.stderr, err


# ----- the run directory is out_dir ---------------------------------------------------------------

def test_run_dir_and_out_dir_cannot_differ(tmp_path, capsys, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    run = main_in_process(capsys, monkeypatch, tmp_path, *FAST, f"hydra.run.dir={a}", f"out_dir={b}")
    one_line_error(run, "hydra.run.dir")
    assert not a.exists() and not b.exists()


def test_run_dir_from_a_preset_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "studies" / "study").mkdir(parents=True)
    (tmp_path / "studies" / "study" / "elsewhere.yaml").write_text(
        f"# @package _global_\nhydra:\n  run:\n    dir: {tmp_path / 'a'}\n")
    run = main_in_process(capsys, monkeypatch, tmp_path, "-cd", "studies", "study=elsewhere", *FAST[1:])
    one_line_error(run, "hydra.run.dir")
    assert not (tmp_path / "a").exists()


def test_clock_in_the_run_dir_is_refused(tmp_path, capsys, monkeypatch):
    """${now:...} resolves once for the lock and again for the run: two folders. Refused, nothing created."""
    for arg in [f"out_dir={tmp_path / 'runs'}/at-${{now:%H-%M-%S-%f}}",
                f"hydra.run.dir={tmp_path / 'runs'}/at-${{now:%H-%M-%S-%f}}"]:
        run = main_in_process(capsys, monkeypatch, tmp_path, *FAST, arg)
        one_line_error(run, "now")
        assert not (tmp_path / "runs").exists(), arg


def test_sweep_job_records_the_folder_it_writes(tmp_path):
    sweep = tmp_path / "sweep"
    run = cli(tmp_path, "-m", *FAST, "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert run.returncode == 0, run.stderr[-2000:]
    jobs = sorted(p.parent for p in sweep.glob("*/results.csv"))
    assert len(jobs) == 2
    for job in jobs:
        recorded = yaml.safe_load((job / "config.yaml").read_text())["out_dir"]
        assert Path(recorded).resolve() == job.resolve(), (recorded, job)
