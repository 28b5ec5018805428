"""The time estimate of a study (bncompare.studies.timing) and the max_minutes refusal."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bncompare.errors import BNError
from bncompare.studies import background, registry, timing
from bncompare.studies.evaluate import evaluate_cell
from bncompare.studies.protocol import Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import build_estimators, plan_cells
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import build_problem
from bncompare.transformer.trained import TrainedTransformer

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = {"steps": 3, "d_model": 8, "n_head": 1, "d_ff": 8, "n_context_max": 5, "n_queries": 2,
              "eval_every": 0, "warmup": 1}


def problem(overrides):
    spec = study_spec(compose(["progress=false", *overrides]))
    graph, truth, prior = build_problem(spec)
    return spec, graph, truth, prior


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNCOMPARE_CACHE", str(tmp_path / "cache"))  # no model cached: first runs


def total(overrides) -> float:
    spec, graph, truth, prior = problem(overrides)
    estimators = build_estimators(spec, graph, truth)
    return timing.estimate(spec, graph, prior, estimators, plan_cells(spec), truth.per_episode_graphs).total


def test_more_episodes_longer_contexts_more_samples_cost_more():
    base = ["study=smoke", "estimators=fast", "graph=hailfinder"]  # Monte Carlo fidelity: mc_samples counts
    t = total(base)
    for more in ("episodes=64", "context_lens=[2,200]", "fidelity.mc_samples=400",
                 "estimators.pyro_conjugate.kind=pyro_nuts"):
        assert total([*base, more]) > 1.05 * t, more
    assert total([*base, "queries=8"]) > t


def test_pyro_budget_and_subset_move_its_estimate():
    spec, graph, _, _ = problem(["study=smoke", "episodes=128"])
    nuts = spec.estimator("pyro_nuts")
    small = timing.cell_seconds(spec, graph, nuts, 20)
    from dataclasses import replace

    more = replace(nuts, params={**nuts.params, "num_samples": 200, "warmup_steps": 200})
    assert timing.cell_seconds(spec, graph, more, 20) > 5 * small
    assert timing.cell_seconds(spec, graph, replace(nuts, subset=64), 20) > 1.8 * small  # 1 plate of 32 -> 2


def test_a_cached_model_costs_no_training(tmp_path):
    spec, graph, truth, prior = problem(["study=smoke"])
    est = TrainedTransformer(TINY_TRAIN, cache_dir=tmp_path / "models", progress=False)
    entry = est.pending_training(graph, prior, 0)
    assert entry is not None and str(tmp_path / "models") in entry
    est.prepare(graph, prior, 0)  # a real (tiny) training into the cache
    assert est.pending_training(graph, prior, 0) is None
    assert est.pending_training(graph, prior, 1) is not None  # another seed is another model


def test_training_is_counted_once_per_model_and_only_when_not_cached():
    spec, graph, truth, prior = problem(["study=smoke"])
    estimators = build_estimators(spec, graph, truth)
    first = timing.estimate(spec, graph, prior, estimators, plan_cells(spec))
    # trained_half shares trained's model: one training for both; trained_plain is another recipe
    assert set(first.training) == {"trained", "trained_plain"}
    assert all(s > 0 for s in first.training.values())
    for name in first.training:
        estimators[name].prepare(graph, prior, spec.seed)  # train both (smoke size: seconds)
    again = timing.estimate(spec, graph, prior, estimators, plan_cells(spec))
    assert again.training == {} and again.total == pytest.approx(first.total - sum(first.training.values()))
    assert timing.estimate(spec, graph, prior, estimators, []).total == 0  # every cell done: ~0


def test_over_max_minutes_is_refused_in_one_line_naming_what_to_lower():
    spec, graph, truth, prior = problem(["max_minutes=0.01", "episodes=2000"])
    estimators = build_estimators(spec, graph, truth)
    with pytest.raises(BNError) as e:
        timing.check_time(spec, graph, prior, estimators, plan_cells(spec))
    line = str(e.value)
    assert "\n" not in line and "max_minutes=0.01" in line
    assert "training trained ~" in line and "transformer.train.steps" in line  # no model cached: trainings cost most
    assert "~estimators.trained," in line  # the costliest estimators, as overrides that drop them
    for knob in ("episodes", "context_lens", "fidelity.mc_samples", "max_minutes="):
        assert knob in line


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_max_minutes_must_be_a_positive_number(value):
    with pytest.raises(BNError, match="max_minutes must be a positive number"):
        study_spec(compose([f"max_minutes={value}"]))


def test_a_plugin_kind_is_priced_as_a_stated_guess(monkeypatch, caplog):
    from bncompare.estimators.counting import MLE

    monkeypatch.setitem(registry.KINDS, "my_counting", MLE)
    spec, graph, truth, prior = problem(["study=smoke", "estimators=counting", "+estimators.mine.kind=my_counting"])
    estimators = build_estimators(spec, graph, truth)
    with caplog.at_level("INFO", logger="bncompare.studies.timing"):
        est = timing.check_time(spec, graph, prior, estimators, plan_cells(spec))
    assert est.guessed == ("mine",) and est.cells["mine"] > 0
    assert "mine: a guess" in caplog.text


@pytest.mark.parametrize("overrides", [[], ["study=smoke"], ["study=paper"], ["study=agnostic"],
                                       ["graph=gaussian-tree"], ["study=autoregressive"]])
def test_the_shipped_studies_fit_their_limit_on_a_first_run(overrides):
    spec = study_spec(compose(overrides))
    assert total(overrides) < 60 * spec.max_minutes / 2  # with room: the estimate is an order of magnitude


def test_the_estimate_is_the_right_order_of_magnitude():
    """Not a speed test: the model's cell seconds against what the same cells take, within 10x either way
    (generous: other jobs on the cores change the measured side by 2-5x)."""
    spec, graph, truth, prior = problem(["study=smoke", "estimators=fast", "~estimators.trained",
                                         "~estimators.trained_plain", "~estimators.trained_half", "episodes=64"])
    estimators = build_estimators(spec, graph, truth)
    episodes = Episodes(graph, truth, spec)
    guess = measured = 0.0
    for n, name in plan_cells(spec):
        e = spec.estimator(name)
        guess += timing.cell_seconds(spec, graph, e, n)
        t0 = time.perf_counter()
        evaluate_cell(episodes, estimators[name], e, n, estimators[e.mirrors] if e.mirrors else None)
        measured += time.perf_counter() - t0
    assert measured / 10 < guess < 10 * measured, (guess, measured)


def test_the_cli_refuses_before_training_with_exit_code_2(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "BNCOMPARE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "bncompare.studies.run", "study=smoke", "max_minutes=0.001",
                          f"out_dir={tmp_path / 'out'}", "progress=false"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "max_minutes=0.001" in errors[0]
    assert not (tmp_path / "cache" / "transformer").exists()  # refused before any training
    assert not list((tmp_path / "out").glob("cells/*.csv*"))


def test_a_second_process_overlaps_its_training_with_the_rest(tmp_path, monkeypatch):
    from bncompare.studies.runner import CellStore, plan_run, second_process, to_prepare

    spec, graph, truth, prior = problem([])
    estimators = build_estimators(spec, graph, truth)
    plan = plan_run(spec, estimators, truth, CellStore(tmp_path), tmp_path)
    order = to_prepare(spec, estimators, plan, tmp_path)
    monkeypatch.setenv("BNCOMPARE_PARALLEL", "0")
    assert second_process(spec, estimators, plan, order, graph, prior) == []
    monkeypatch.setattr(background, "enabled", lambda: True)  # as on any machine with two cores
    later = second_process(spec, estimators, plan, order, graph, prior)
    assert later == ["trained", "trained_quarter", "trained_half"]  # the longest training, with its budgets

    alone = timing.estimate(spec, graph, prior, estimators, plan.pending)
    both = timing.estimate(spec, graph, prior, estimators, plan.pending, second=later)
    assert both.work == pytest.approx(alone.work) and alone.total == pytest.approx(alone.work)
    assert set(both.waiting) == set(later)  # their cells wait for the model
    child, waits = both.training["trained"], sum(both.cells[n] for n in later)
    assert both.total == pytest.approx(max(child, alone.work - child - waits) + waits)
    assert both.total < 0.8 * alone.total
