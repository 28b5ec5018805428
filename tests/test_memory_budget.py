"""Memory budget: a study that would need more memory than allowed is refused before allocating,
in one line naming the amount and the setting to lower."""
import pytest

from bncompare.errors import BNError
from bncompare.networks import get_graph
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
    # (a card above graph.MAX_CARD is refused before the estimate: tests/test_network_bounds.py)
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


def three_nodes(folder, card: int):
    path = folder / f"three-{card}.yaml"
    path.write_text(f"nodes:\n  A: {{card: {card}}}\n  B: {{card: {card}}}\n  C: {{card: {card}, parents: [A, B]}}\n")
    return ["graph=file", f"graph.options.path={path}", "graph.options.truth=prior"]


@pytest.mark.parametrize("card, study, gb", [(200, [], "18"), (100, ["study=smoke"], "1.5")])
def test_wide_cpts_that_outgrew_the_old_estimate_are_refused(tmp_path, monkeypatch, card, study, gb):
    """Measured: 200 states grew to 23.7 GB (estimated 7.7); 100 states to 3.47 GB (estimated 986 MB)."""
    monkeypatch.setenv("BNCOMPARE_MEMORY_GB", gb)
    with pytest.raises(BNError, match="the study would need ~[0-9.]+ [GT]B of memory") as err:
        run_study(compose([*study, "progress=false", "report=false", *three_nodes(tmp_path, card)]), tmp_path / "o")
    assert "graph.options.card" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, named", [
    ("episodes=1000000000000", "episodes"),  # grew ~9 MB/s: every cell's rows are kept
    ("transformer.train.steps=1000000000000", "transformer.train.steps"),  # costs time only
    ("estimators.pyro_nuts.params.num_samples=100000000000", "pyro_nuts"),
])
def test_every_count_is_bounded(tmp_path, override, named):
    with pytest.raises(BNError, match=named) as err:
        run_study(compose([*SMOKE, override]), tmp_path / "out")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["inf", "1e400", "-1", "0", "nan", "-inf", "lots"])
def test_a_bad_memory_limit_is_one_line(monkeypatch, value):
    from bncompare.studies.budget import memory_limit

    monkeypatch.setenv("BNCOMPARE_MEMORY_GB", value)
    with pytest.raises(BNError, match=f"BNCOMPARE_MEMORY_GB must be a positive number.*got '{value}'"):
        memory_limit()


def test_training_estimate_is_linear_in_the_query_tokens():
    # queries attend to the sink, the context rows and themselves, never to each other: the activations grow
    # linearly with the query tokens (Q * M), not with their square
    from bncompare.studies.budget import _training

    graph = get_graph("alarm")
    need = [_training({"n_queries": q, "n_context_max": 20, "eval_every": 0}, graph, 0, 0)[1] for q in (16, 32, 64)]
    assert need[2] - need[1] == pytest.approx(2 * (need[1] - need[0]), rel=0.05)
