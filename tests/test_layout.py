"""The package's shape: imports flow one way, every config composes, estimators declare themselves."""
import ast
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bncompare
from bncompare.estimators.base import Estimator, Tags
from bncompare.studies import registry
from bncompare.studies.run import compose, train_defaults
from bncompare.transformer.train import MODEL_SETTINGS, TrainConfig

PACKAGE = Path(bncompare.__file__).parent
# Lower layers never import higher ones; packages on one layer never import each other.
# rundir (the run directory's names, columns and readers) sits below everything that writes or reads it.
LAYERS = {"errors": 0, "csvtext": 1, "bundled": 1, "files": 1, "processes": 1, "runtime": 1, "data": 1,
          "codeversion": 1, "networks": 2, "rundir": 2,
          "testing": 4, "cli": 7,  # the public estimator contract; the console script (dispatches by module name)
          "estimators": 3, "metrics": 4, "transformer": 5, "realdata": 5, "studies": 6,
          "reports": 6}  # transformer may use metrics.tv


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> bncompare modules it imports, anywhere in the file (lazy imports in functions count)."""
    graph = {}
    for path in root.rglob("*.py"):
        parts = ("bncompare",) + path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bncompare"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("bncompare")}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A module cycle (package __init__ files excepted: a package's parts may import through it), or None."""
    def edges(m):
        return [d for d in graph.get(m, ()) if d in graph and not m.startswith(d + ".") and d != m]

    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in edges(m):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def package(module: str) -> str:
    return module.split(".")[1] if "." in module else "bncompare"


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"bncompare.a": {"bncompare.b"}, "bncompare.b": {"bncompare.a"}}) is not None


def test_imports_flow_down_the_layers():
    wrong = []
    for module, deps in import_graph().items():
        for d in deps:
            a, b = package(module), package(d)
            if a != b and "bncompare" not in (a, b) and not LAYERS[b] < LAYERS[a]:
                wrong.append(f"{module} -> {d}")
    assert not wrong, wrong


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (PACKAGE / "studies" / "conf" / group).glob("*.yaml"))


# options made for linear-Gaussian networks: composed on a Gaussian graph (the default graph is discrete)
GAUSSIAN_OPTIONS = {("prior", "nig"), ("estimators", "gaussian"), ("estimators", "gaussian_smoke"),
                    ("variables", "gaussian")}


# options made for autoregressive processes: composed on graph=autoregressive
AUTOREGRESSIVE_OPTIONS = {("prior", "autoregressive"), ("estimators", "autoregressive"),
                          ("estimators", "autoregressive_smoke"), ("variables", "autoregressive"),
                          ("process", "orthogonal"), ("process", "commuting"), ("process", "gaussian")}


def on_its_variables(group: str, option: str) -> list[str]:
    if (group, option) in GAUSSIAN_OPTIONS:
        return ["graph=gaussian-tree"]
    return ["graph=autoregressive"] if (group, option) in AUTOREGRESSIVE_OPTIONS else []


def check_study(cfg: dict) -> None:
    """A composed config is a valid study: its settings validate, its graph and truth build, every
    estimator builds from its parameters and fits the graph's variables, and the references are among
    them and run everywhere."""
    from bncompare.studies.spec import study_spec
    from bncompare.studies.truth import build_problem

    spec = study_spec(cfg)
    graph, truth, prior = build_problem(spec)
    assert graph.n_nodes >= 1 and prior.describe()
    for e in spec.estimators:
        est = registry.build(e.kind, e.params)
        assert est.get_params() is not None and est.tags.variables == graph.variables, e.name
    names = {e.name for e in spec.estimators}
    assert set(spec.references().values()) <= names


GROUPS = ("graph", "variables", "prior", "process", "transformer", "estimators", "study")


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_config_option_composes(group, option, tmp_path):
    overrides = [f"{group}={option}"] + on_its_variables(group, option)
    if (group, option) == ("graph", "file"):  # needs the user's network file
        net = tmp_path / "net.yaml"
        net.write_text("nodes:\n  Rain: {states: [no, yes], cpt: [[0.3, 0.7]]}\n"
                       "  Wet: {parents: [Rain], cpt: [[0.9, 0.1], [0.2, 0.8]]}\n")
        overrides.append(f"graph.options.path={net}")
    check_study(compose(overrides))


def test_prior_option_brings_its_references():
    # each prior names the estimators optimal under it as the KL and TV references
    for prior, ref, tv_ref in (("dirichlet", "bayes", "bayes_median"),
                               ("uniform", "bayes_exact", "bayes_exact_median")):
        cfg = compose([f"prior={prior}"])
        assert (cfg["reference"], cfg["tv_reference"]) == (ref, tv_ref)
        kinds = {cfg["estimators"][ref]["kind"], cfg["estimators"][tv_ref]["kind"]}
        assert kinds == {"dirichlet": {"dirichlet", "dirichlet_median"},
                         "uniform": {"uniform_mean", "uniform_median"}}[prior]
    cfg = compose(["prior=uniform", "prior.params.low=0.2"])
    assert cfg["estimators"]["bayes_exact"]["params"] == {"low": 0.2, "high": 0.9}


def test_user_preset_example_composes():
    # studies/study/example.yaml, through --config-dir as the README says, with every estimator set
    from omegaconf import OmegaConf

    from bncompare.studies.guard import _plain, job_configs

    presets = PACKAGE.parent / "studies"
    for estimators in [None] + options("estimators"):
        overrides = (["study=example"] + ([f"estimators={estimators}"] if estimators else [])
                     + on_its_variables("estimators", estimators))
        cfg = _plain(job_configs(overrides, str(presets), multirun=False)[0])
        resolved = OmegaConf.to_container(OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"}),
                                          resolve=True)
        assert resolved["study_name"] == "example"
        if estimators is None:
            assert resolved["context_lens"] == [1, 5, 25, 125]
        check_study(resolved)


def test_train_defaults_come_from_the_dataclass():
    defaults = train_defaults()["train"]
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"} | MODEL_SETTINGS  # the model's beside
    assert set(defaults) == names - {"seed"}  # every field, so a new one appears by itself
    cfg = compose(["context_lens=[1,7]", "device=cpu"])["transformer"]["train"]
    assert cfg["n_context_max"] == 7 and cfg["device"] == "cpu"  # the study's own settings
    assert TrainConfig.from_dict(cfg).steps == TrainConfig().steps  # the rest are the dataclass's


@pytest.mark.parametrize("kind", sorted(registry.KINDS))
def test_estimators_declare_tags_and_params(kind):
    cls = registry.factory(kind)
    est = cls()
    assert isinstance(cls.tags, Tags)
    params = est.get_params()
    assert list(params) == cls.param_names()
    assert cls(**params).get_params() == params  # settings round-trip through the constructor
    assert cls.tags.family in ("counting", "library", "constructed", "trained")


def test_get_params_reads_the_signature():
    class Toy(Estimator):
        def __init__(self, a=1, b="x"):
            self.a, self.b = a, b

    assert Toy(b="y").get_params() == {"a": 1, "b": "y"}
    assert repr(Toy()) == "Toy(a=1, b='x')"


def test_report_renders_from_the_run_directory_alone(tmp_path):
    """A finished smoke run, moved elsewhere, renders with an empty model cache and no study code run."""
    import os

    from bncompare.reports.data import load
    from bncompare.studies.runner import run_study

    cfg = compose(["study=smoke", "~estimators.pyro_svi", "~estimators.pyro_nuts", "~estimators.pgmpy_bdeu",
                   "transformer.train.steps=20", f"transformer.cache_dir={tmp_path / 'cache'}", "progress=false"])
    run = run_study(cfg, tmp_path / "run")
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    shutil.rmtree(tmp_path / "cache")
    env = dict(os.environ, BNCOMPARE_CACHE=str(tmp_path / "empty-cache"))
    done = subprocess.run([sys.executable, "-m", "bncompare.reports.report", str(moved)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (moved / "report.pdf").stat().st_size > 10_000
    assert not (tmp_path / "empty-cache").exists()  # nothing was trained or loaded
    data = load(moved)
    assert data.runs[0].dag.n_nodes == 7 and data.entry("tree-7", "trained")["tags"]["has_history"]

    # the learning page draws from the history the training wrote: held-out TV per context length, and seconds
    from bncompare.reports.transformer_pages import eval_lengths

    h = pd.read_csv(moved / "extras" / "history_trained.csv")
    assert eval_lengths(h) == [2, 20]
    evals = h.dropna(subset=["eval_tv@2"])
    assert list(evals["step"]) == [0, 19] and (evals["seconds"].diff().dropna() > 0).all()
    assert ((evals["eval_tv@20"] > 0) & (evals["eval_bayes_tv@20"] > 0)).all()


def test_report_command_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bncompare.reports.report", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "\n" not in done.stderr.strip()
