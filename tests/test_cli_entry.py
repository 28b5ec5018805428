"""The `bncompare` console script: each command is its `python -m` module with the remaining argv, and
`--help` (of the script and of the study command) loads neither torch, Pyro nor pgmpy."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "bncompare"


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One model cache for the module (never the user's): the train defaults are computed once in it."""
    global CACHE
    CACHE = tmp_path_factory.mktemp("cache")


def env(tmp: Path) -> dict:
    e = dict(os.environ, BNCOMPARE_CACHE=str(CACHE))
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def script(tmp, *args):
    assert SCRIPT.exists(), f"no console script {SCRIPT}: reinstall bncompare (pip install -e .)"
    return subprocess.run([str(SCRIPT), *args], cwd=tmp, env=env(tmp), capture_output=True, text=True, timeout=300)


# Runs a command in this process the way its entry point does, then names the heavy packages it imported.
PROBE = """
import runpy, sys
how, *argv = sys.argv[1:]
sys.argv = ["probe", *argv]
try:
    if how == "script":
        from bncompare.cli import main
        main(argv)
    else:
        runpy.run_module(how, run_name="__main__", alter_sys=True)
except SystemExit as e:
    assert not e.code, e.code
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "pyro", "pgmpy", "pandas"}), file=sys.stderr)
"""


def imported(tmp, how, *argv) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, how, *argv], cwd=tmp, env=env(tmp), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("how", [["script", "--help"], ["script", "run", "--help"],
                                 ["bncompare.studies.run", "--help"]])
def test_help_imports_no_torch_pyro_or_pgmpy(tmp_path, how):
    imported(tmp_path, "bncompare.studies.run", "--help")  # the first call may compute the cached train defaults
    assert imported(tmp_path, *how) == "[]"


def test_script_lists_its_commands(tmp_path):
    done = script(tmp_path, "--help")
    assert done.returncode == 0
    for command in ("run", "report", "merge", "compare", "train", "networks"):
        assert f"\n  {command} " in done.stdout, command


def test_each_command_is_its_module(tmp_path):
    for command, prog in (("report", "bncompare.reports.report"), ("merge", "bncompare.reports.merge"),
                          ("compare", "bncompare.reports.compare"), ("train", "bncompare.studies.train")):
        done = script(tmp_path, command, "--help")
        assert done.returncode == 0 and f"python -m {prog}" in done.stdout, (command, done.stderr[-500:])
    run = script(tmp_path, "run", "--help")
    assert run.returncode == 0 and "study: agnostic, autoregressive, default, paper, smoke" in run.stdout
    same = subprocess.run([sys.executable, "-m", "bncompare.studies.run", "--help"], cwd=tmp_path, env=env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert same.stdout == run.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, expect in ((["nope"], "unknown command 'nope'"), (["run", "graph=nope"], "unknown graph 'nope'"),
                         ([], "usage: bncompare")):
        done = script(tmp_path, *args)
        assert done.returncode == 2 and expect in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_networks_dispatches_to_the_listing_or_says_it_is_missing(tmp_path):
    import importlib.util

    done = script(tmp_path, "networks")
    if importlib.util.find_spec("bncompare.networks.listing") is None:
        assert done.returncode == 2
        assert done.stderr.strip() == ("error: bncompare networks is not available in this version "
                                       "(bncompare.networks.listing is missing)")
    else:
        assert done.returncode == 0, done.stderr[-1000:]


def test_the_study_help_lists_a_config_dir_s_own_groups(tmp_path):
    presets = tmp_path / "presets" / "graph"
    presets.mkdir(parents=True)
    (presets / "mine.yaml").write_text("name: chain-5\n")
    done = script(tmp_path, "run", "--config-dir", str(tmp_path / "presets"), "--help")
    assert done.returncode == 0 and "mine" in next(line for line in done.stdout.splitlines()
                                                    if line.startswith("graph: "))
