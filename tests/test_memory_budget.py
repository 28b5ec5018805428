"""Memory budget: a study that would need more memory than allowed is refused before allocating,
in one line naming the amount and the setting to lower."""
import pytest

from bncompare.errors import BNError
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

SMOKE = ["study=smoke", "progress=false", "report=false"]
WIDE = "nodes:\n" + "".join(f"  P{i}: {{card: 2}}\n" for i in range(25)) + \
    "  C: {parents: [" + ", ".join(f"P{i}" for i in range(25)) + "]}\n"


@pytest.fixture(autouse=True)
def eight_gb(monkeypatch):
    monkeypatch.setenv("BNCOMPARE_MEMORY_GB", "8")  # the same answer on every machine


@pytest.mark.parametrize("overrides, knob", [
    (["context_lens=[1000000000]"], "context_lens"),
    (["queries=1000000000"], "queries"),
    (["graph=chain", "graph.options.card=100000"], "graph.options.card"),
    (["graph=collider", "graph.name=collider-40"], "graph.options.card, parents"),
    (["graph=alarm", "fidelity.max_exact_states=100000000000000000"], "fidelity.max_exact_states"),
    (["fidelity.mc_samples=1000000000"], "fidelity.mc_samples"),
    (["estimators=counting", "context_lens=[100000000]"], "context_lens or batch_size"),
    (["transformer.train.d_model=65536"], "transformer.train.d_model"),
])
def test_too_big_is_refused_before_allocating(tmp_path, overrides, knob):
    with pytest.raises(BNError, match="would need ~") as err:
        run_study(compose([*SMOKE, *overrides]), tmp_path / "out")
    message = str(err.value)
    assert knob in message and "\n" not in message and "allowed here" in message
    assert not (tmp_path / "out" / "config.yaml").exists()  # refused before writing (or drawing) anything


def test_a_spec_with_25_binary_parents(tmp_path):
    (tmp_path / "wide.yaml").write_text(WIDE)
    cfg = compose([*SMOKE, "estimators=counting", "graph=file", f"graph.options.path={tmp_path / 'wide.yaml'}",
                   "graph.options.truth=prior"])
    with pytest.raises(BNError, match="CPTs of a batch .* would need ~.* GB"):
        run_study(cfg, tmp_path / "out")


def test_the_default_studies_fit():
    from bncompare.studies.budget import check_budget
    from bncompare.studies.spec import study_spec
    from bncompare.studies.truth import build_problem

    for graph in ("tree", "sachs", "alarm", "random"):
        spec = study_spec(compose([f"graph={graph}"]))
        check_budget(spec, build_problem(spec)[0])
