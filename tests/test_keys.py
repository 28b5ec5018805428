"""Keys that see everything: a changed estimator default or a change to the code that computes a cell
makes a resumed study compute that cell again (and say why); trained models are keyed the same way."""
import json
import logging
import shutil

from bncompare import codeversion
from bncompare.estimators import DirichletPosterior
from bncompare.studies import registry
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

SMALL = ["graph=chain-5", "estimators=counting", "episodes=32", "context_lens=[2,8]", "queries=2",
         "progress=false", "report=false"]


def toy_kind(default_alpha: float):
    class Toy(DirichletPosterior):  # the config gives no params: only the default decides alpha
        name = "toy"

        def __init__(self, alpha: float = default_alpha):
            super().__init__(alpha)

    return Toy


def study(tmp_path):
    cfg = compose(SMALL)
    cfg["estimators"]["toy"] = {"kind": "toy"}
    return cfg, tmp_path / "run"


def last_run(out):
    return json.loads((out / "meta.json").read_text())["runs"][-1]


def cells(out, name):
    return sorted(p.name for p in (out / "cells").glob(f"{name}__*.csv.gz"))


def test_changed_default_recomputes_that_estimators_cells_only(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(registry.KINDS, "toy", toy_kind(1.0))
    cfg, out = study(tmp_path)
    run_study(cfg, out)
    total = last_run(out)["cells_computed"]
    before = (out / "results.csv").read_text()
    run_study(cfg, out)
    assert last_run(out)["cells_computed"] == 0  # nothing changed: everything reused

    monkeypatch.setitem(registry.KINDS, "toy", toy_kind(2.0))  # an upgrade changes the default
    with caplog.at_level(logging.INFO, logger="bncompare.studies.runner"):
        run_study(cfg, out)
    assert (last_run(out)["cells_computed"], last_run(out)["cells_reused"]) == (2, total - 2)  # toy at N = 2, 8
    said = [r.getMessage() for r in caplog.records if "toy" in r.getMessage()]
    assert any("alpha: 1.0 -> 2.0" in s for s in said), said
    assert (out / "results.csv").read_text() != before
    meta = json.loads((out / "meta.json").read_text())
    assert meta["cell_inputs"]["toy"]["estimator"]["params"] == {"alpha": 2.0}
    assert meta["code_version"]["package"] and meta["code_version"]["source"]


def copy_of_package(tmp_path, monkeypatch):
    """A copy of the package's source: code_version reads it instead of the installed one."""
    root = tmp_path / "bncompare"
    shutil.copytree(codeversion.PACKAGE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codeversion, "PACKAGE_DIR", root)
    return root


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    codeversion._source_hash.cache_clear()


def test_changed_code_recomputes_every_cell_and_says_why(tmp_path, monkeypatch, caplog):
    root = copy_of_package(tmp_path, monkeypatch)
    cfg = compose(SMALL)
    out = tmp_path / "run"
    run_study(cfg, out)
    total = last_run(out)["cells_computed"]

    # a comment or docstring changes nothing that computes: the cells are reused
    edit(root / "metrics" / "conditional.py", "def tv(", "# a new comment\ndef tv(")
    edit(root / "metrics" / "conditional.py", "``p`` is the TRUE", "``p`` (reworded) is the TRUE")
    run_study(cfg, out)
    assert last_run(out)["cells_computed"] == 0

    # a change to what the metric code does: every cell is computed again, and the log says why
    edit(root / "metrics" / "conditional.py", "return 0.5 * (p - q).abs().sum(-1)",
         "return (p - q).abs().sum(-1) / 2")
    with caplog.at_level(logging.INFO, logger="bncompare.studies.runner"):
        run_study(cfg, out)
    assert (last_run(out)["cells_computed"], last_run(out)["cells_reused"]) == (total, 0)
    assert any("code that computes the numbers changed" in r.getMessage() for r in caplog.records)

    # the report code is not part of what computes a cell
    edit(root / "reports" / "plots.py", "Z = 1.96", "Z = 2.0")
    run_study(cfg, out)
    assert last_run(out)["cells_computed"] == 0


def test_checkpoint_key_sees_the_training_code(tmp_path, monkeypatch):
    from bncompare.networks import DirichletPrior, get_graph
    from bncompare.transformer.train import TrainConfig, run_fingerprint

    root = copy_of_package(tmp_path, monkeypatch)
    graph, prior, cfg = get_graph("chain-3"), DirichletPrior(1.0), TrainConfig(steps=5)
    key = run_fingerprint(graph, prior, cfg)
    edit(root / "transformer" / "train.py", "def lr_at(", "# why this schedule\ndef lr_at(")
    assert run_fingerprint(graph, prior, cfg) == key
    edit(root / "transformer" / "model.py", "import torch", "import torch\nUNUSED = 1")
    assert run_fingerprint(graph, prior, cfg) != key
    edit(root / "reports" / "plots.py", "Z = 1.96", "Z = 2.0")  # not training code
    key2 = run_fingerprint(graph, prior, cfg)
    edit(root / "studies" / "runner.py", "import logging", "import logging\nUNUSED = 1")
    assert run_fingerprint(graph, prior, cfg) == key2
