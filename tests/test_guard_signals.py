"""A study stopped from outside: Ctrl-C is one line and exit 130; a killed study takes its report process with it.

Each test runs the real command in its own process and sends it a real signal.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_guard import env

LONG = ["graph=chain", "estimators=counting", "episodes=2000", "context_lens=[1,10,100,500]", "progress=false"]


def start(tmp: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bncompare.studies.run", *args], cwd=tmp, env=env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    """Read the command's stdout until a line holds ``text`` (the runner logs there)."""
    deadline = time.time() + timeout
    for line in proc.stdout:
        if text in line:
            return
        assert time.time() < deadline, f"no line with {text!r} after {timeout} s"
    pytest.fail(f"the command ended without printing {text!r}: {proc.wait()}, {proc.stderr.read()[-2000:]}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_ctrl_c_is_one_line_and_frees_the_folder(tmp_path):
    from filelock import FileLock

    out = tmp_path / "out"
    proc = start(tmp_path, *LONG, "report=false", f"out_dir={out}")
    try:
        wait_for_line(proc, "cells, 0 already done")
        time.sleep(1.0)  # inside the cells
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = err.strip()
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert "\n" not in err and "Traceback" not in err and "interrupted" in err, err[-3000:]
    assert not (out / "results.csv").exists()  # it really stopped inside the study
    lock = FileLock(out / ".bncompare.lock", thread_local=False)
    lock.acquire(timeout=0)  # the folder is free for the rerun that resumes it
    lock.release()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_study_takes_its_report_process_along(tmp_path, sig):
    out = tmp_path / "out"
    proc = start(tmp_path, "study=smoke", "estimators=counting", "episodes=64", "context_lens=[2]", "progress=false",
                 "report=true", f"out_dir={out}")
    report = None
    try:
        deadline = time.time() + 120
        while report is None and time.time() < deadline and proc.poll() is None:
            for pid in children(proc.pid):
                try:
                    if b"bncompare.reports.report" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        report = pid
                except OSError:
                    pass
            time.sleep(0.05)
        assert report is not None, ("no report process seen", proc.poll())
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while alive(report) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(report), "the report process outlived the study that started it"
        assert not (out / "report.pdf").exists()
    finally:
        proc.kill()
        if report is not None and alive(report):
            os.kill(report, signal.SIGKILL)
