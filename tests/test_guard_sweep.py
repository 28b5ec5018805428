"""The guard sees every job Hydra's sweeper would build: no preset may start a sweep or add per-job overrides.

Hydra's basic sweeper adds ``hydra.sweeper.params`` (from the config) to the command line's sweep, and a
config may set ``hydra.mode: MULTIRUN`` so that a command without ``-m`` sweeps. Both are refused, from a
preset in the user's ``studies/`` folder, from a config group there, and from the command line. The
attack below is real: a ``sitecustomize.py`` that writes a marker file whenever a Python process starts
with its folder on PYTHONPATH.
"""
import sys
from pathlib import Path

import pytest
from test_cli_guard import cli, main_in_process, one_line_error


def plant(tmp: Path) -> tuple[Path, Path]:
    """A folder with a sitecustomize.py that writes ``marker`` when Python starts with it on the path."""
    site, marker = tmp / "site", tmp / "MARKER"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return site, marker


def preset(tmp: Path, name: str, body: str, group: str = "study") -> Path:
    folder = tmp / "studies" / group
    folder.mkdir(parents=True, exist_ok=True)
    header = "# @package _global_\n" if group == "study" else ""
    (folder / f"{name}.yaml").write_text(header + body)
    return tmp / "studies"


SMALL = ("defaults:\n  - override /estimators: counting\n"
         "episodes: 32\ncontext_lens: [2]\nprogress: false\nreport: true\n")


def test_site_control_sees_the_marker(tmp_path):
    """The planted folder runs code in any Python process with it on PYTHONPATH (so the tests below mean something)."""
    import subprocess

    site, marker = plant(tmp_path)
    subprocess.run([sys.executable, "-c", "pass"], env={"PYTHONPATH": str(site)}, check=True)
    assert marker.read_text() == "ran"


def test_preset_sweep_cannot_set_the_report_environment(tmp_path):
    """The issue's route: a plain command (no -m), a preset that turns on MULTIRUN and adds env_set per job."""
    site, marker = plant(tmp_path)
    preset(tmp_path, "evil", SMALL + f"hydra:\n  mode: MULTIRUN\n  sweep:\n    dir: {tmp_path / 'sweep'}\n"
                                     f"  sweeper:\n    params:\n      +hydra.job.env_set.PYTHONPATH: {site}\n")
    run = cli(tmp_path, "-cd", "studies", "study=evil")
    one_line_error(run, "hydra.")
    assert not marker.exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("extra, key", [
    ("hydra:\n  mode: MULTIRUN\n", "hydra.mode"),
    ("hydra:\n  sweeper:\n    params:\n      seed: 0,1\n", "hydra.sweeper.params"),
    ("hydra:\n  sweeper:\n    params:\n      +hydra.job.env_set.PYTHONPATH: {site}\n", "hydra.sweeper.params"),
    ("hydra:\n  sweeper:\n    params:\n      hydra/job_logging: evil\n", "hydra.sweeper.params"),
])
@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_preset_cannot_sweep(tmp_path, capsys, monkeypatch, extra, key, mode):
    site, marker = plant(tmp_path)
    preset(tmp_path, "evil", SMALL + extra.format(site=site))
    preset(tmp_path, "evil", "version: 1\nhandlers:\n  h:\n    (): pathlib.Path.touch\n"
                             f"    self: {marker}\nroot:\n  handlers: [h]\n", group="hydra/job_logging")
    run = main_in_process(capsys, monkeypatch, tmp_path, *mode, "-cd", "studies", "study=evil",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}")
    err = one_line_error(run, key)
    assert "-m" in err  # says how to sweep instead
    assert not marker.exists() and not (tmp_path / "sweep").exists()


def test_sweeper_config_group_cannot_add_jobs(tmp_path, capsys, monkeypatch):
    """The same through a config group of the user's folder: hydra/sweeper=evil."""
    site, marker = plant(tmp_path)
    preset(tmp_path, "evil", "_target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\nmax_batch_size: null\n"
                             f"params:\n  +hydra.job.env_set.PYTHONPATH: {site}\n", group="hydra/sweeper")
    run = main_in_process(capsys, monkeypatch, tmp_path, "-m", "-cd", "studies", "hydra/sweeper=evil", "study=smoke",
                          "estimators=counting", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    one_line_error(run, "hydra.sweeper.params")
    assert not marker.exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("args", [
    ["hydra.mode=MULTIRUN", "seed=0,1"],
    ["hydra.mode=RUN"],
    ["hydra.sweeper.params={seed:'0,1'}"],
])
def test_command_line_cannot_set_mode_or_sweeper_params(tmp_path, capsys, monkeypatch, args):
    run = main_in_process(capsys, monkeypatch, tmp_path, "study=smoke", "estimators=counting", *args,
                          f"hydra.sweep.dir={tmp_path / 'sweep'}")
    one_line_error(run, args[0].lstrip("+").split("=")[0].rsplit(".", 1)[0])
    assert not (tmp_path / "sweep").exists()


def test_command_line_sweep_still_runs(tmp_path):
    """A sweep given with -m on the command line is what sweeping is for: it runs."""
    out = tmp_path / "sweep"
    run = cli(tmp_path, "-m", "study=smoke", "estimators=counting", "seed=0,1", "episodes=32", "context_lens=[2]",
              "report=false", "progress=false", f"hydra.sweep.dir={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(out.glob("*/results.csv"))) == 2


@pytest.mark.parametrize("node, target", [
    ("launcher", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.os.system"),
    ("launcher", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher"),
    ("launcher", "hydra._internal.core_plugins.basic_launcher.os.system"),
    ("launcher", "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"),
    ("sweeper", "hydra._internal.core_plugins.basic_sweeper.os.system"),
    ("sweeper", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
])
def test_plugin_targets_are_exact_classes(tmp_path, capsys, monkeypatch, node, target):
    marker = tmp_path / "MARKER"
    preset(tmp_path, "evil", f"_target_: {target}\ncommand: touch {marker}\n", group=f"hydra/{node}")
    for mode in ([], ["-m"]):
        run = main_in_process(capsys, monkeypatch, tmp_path, *mode, "-cd", "studies", f"hydra/{node}=evil",
                              "study=smoke", "estimators=counting", f"hydra.sweep.dir={tmp_path / 'sweep'}")
        one_line_error(run, f"hydra.{node}._target_")
        assert not marker.exists()


def test_plugin_target_refused_end_to_end(tmp_path):
    """Through the real command: one line, no Hydra traceback about an unknown plugin."""
    preset(tmp_path, "evil", "_target_: hydra_plugins.hydra_joblib_launcher.joblib_launcher.os.system\n",
           group="hydra/launcher")
    run = cli(tmp_path, "-m", "-cd", "studies", "hydra/launcher=evil", "study=smoke", "estimators=counting",
              "report=false", "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    one_line_error(run, "hydra.launcher._target_")
    assert not (tmp_path / "sweep").exists()
