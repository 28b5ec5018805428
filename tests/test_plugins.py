"""Estimator kinds from installed plugins: the example package (examples/bncompare-laplace), installed with
pip into a folder of its own, runs from the study command line and in a 2-job joblib sweep, and its cells
are keyed by its code: an edited plugin recomputes its cells, and only its cells."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "bncompare-laplace"
LAPLACE = "+estimators.laplace={kind: laplace, params: {alpha: 0.5}}"
SMALL = ["graph=chain-5", "estimators=counting", "context_lens=[2,20]", "episodes=32", "queries=4",
         "report=false", "progress=false"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The plugin installed by pip (a real wheel build) into a --target folder, put on PYTHONPATH below."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(tmp / "site"), str(src)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "site"


def env(tmp: Path, site: Path | None) -> dict:
    e = dict(os.environ, BNCOMPARE_CACHE=str(tmp / "cache"))
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([str(site)] if site else []) + [e.get("PYTHONPATH", "")])
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def study(tmp, site, *args):
    return subprocess.run([sys.executable, "-m", "bncompare.studies.run", *args], cwd=tmp, env=env(tmp, site),
                          capture_output=True, text=True, timeout=600)


def test_an_uninstalled_kind_is_refused_in_one_line(tmp_path):
    done = study(tmp_path, None, *SMALL, LAPLACE, f"out_dir={tmp_path / 'out'}")
    assert done.returncode == 2
    assert "unknown estimator kind 'laplace'" in done.stderr and "Traceback" not in done.stderr


def test_plugin_runs_from_the_command_line_and_its_origin_is_logged(tmp_path, site):
    out = tmp_path / "out"
    done = study(tmp_path, site, *SMALL, LAPLACE, f"out_dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = pd.read_csv(out / "results.csv")
    assert {"laplace", "mle"} <= set(results["estimator"])
    log = (out / "run.log").read_text() if (out / "run.log").exists() else done.stderr + done.stdout
    assert "laplace (bncompare-laplace 0.1.0)" in log and "mle (bncompare)" in log


def test_plugin_runs_from_the_console_script(tmp_path, site):
    out = tmp_path / "out"
    done = subprocess.run([str(Path(sys.executable).parent / "bncompare"), "run", *SMALL, LAPLACE, f"out_dir={out}"],
                          cwd=tmp_path, env=env(tmp_path, site), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "laplace" in set(pd.read_csv(out / "results.csv")["estimator"])


def test_plugin_runs_in_a_two_job_joblib_sweep(tmp_path, site):
    sweep = tmp_path / "sweep"
    done = study(tmp_path, site, "-m", *SMALL, LAPLACE, "seed=0,1", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    frames = [pd.read_csv(p) for p in sorted(sweep.glob("*/results.csv"))]
    assert [set(f["seed"]) for f in frames] == [{0}, {1}]
    assert all("laplace" in set(f["estimator"]) for f in frames)  # the children found the plugin too


def cell_files(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}


def test_an_edited_plugin_recomputes_its_cells_and_only_its_cells(tmp_path, site):
    installed = tmp_path / "site"
    shutil.copytree(site, installed)  # this test edits the plugin: its own copy
    out = tmp_path / "out"
    first = study(tmp_path, installed, *SMALL, LAPLACE, f"out_dir={out}")
    assert first.returncode == 0, first.stderr[-3000:]
    before, numbers = cell_files(out), pd.read_csv(out / "results.csv")

    source = installed / "bncompare_laplace" / "estimator.py"
    text = source.read_text()
    assert "smoothed = counts + self.alpha" in text
    source.write_text(text.replace("smoothed = counts + self.alpha", "smoothed = counts + 2 * self.alpha"))
    again = study(tmp_path, installed, *SMALL, LAPLACE, f"out_dir={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    after = cell_files(out)

    kept = {n: t for n, t in before.items() if not n.startswith("laplace__")}
    assert kept and all(after.get(n) == t for n, t in kept.items())  # the other estimators' cells untouched
    new = [n for n in set(after) - set(before) if n.startswith("laplace__")]
    assert len(new) == 2  # both context lengths of laplace, under new keys
    log = (out / "run.log").read_text() if (out / "run.log").exists() else again.stderr
    assert re.search(r"laplace: code changed .*2 cells recomputed", log), log[-2000:]
    results = pd.read_csv(out / "results.csv")
    mine = lambda r: r[(r["estimator"] == "laplace") & (r["metric"] == "cond_kl")]["mean"].to_numpy()
    assert (mine(results) != mine(numbers)).any()  # the new code's numbers, not the old ones


def test_a_registered_class_keys_its_cells_by_its_source(tmp_path, monkeypatch):
    """In-process registration (no plugin): the class's module source is in its cells' keys, the other
    estimators' keys do not move."""
    import importlib

    from bncompare.studies import registry
    from bncompare.studies.spec import study_spec
    from bncompare.studies.store import cell_inputs, cell_key

    module = tmp_path / "my_smoothing.py"
    source = ("from bncompare.estimators.counting import DirichletPosterior\n\n\n"
              "class Mine(DirichletPosterior):\n    s = 1\n")
    module.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.KINDS, "mine", importlib.import_module("my_smoothing").Mine)
    cfg = {"graph": {"name": "chain-5"}, "estimators": {"mle": {"kind": "mle"}, "mine": {"kind": "mine"}}}

    def keys():
        spec = study_spec(cfg)
        return {e.name: cell_key(cell_inputs(spec, e, {})) for e in spec.estimators}

    first = keys()
    module.write_text(source.replace("s = 1", "s = 2"))
    second = keys()
    assert first["mle"] == second["mle"] and first["mine"] != second["mine"]
    assert study_spec(cfg).estimator("mine").code["origin"] == "registered (my_smoothing)"
