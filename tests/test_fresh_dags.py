"""graph=random_dags: a fresh DAG per episode; estimators that use the parents are fitted on each one."""
import numpy as np
import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators.counting import MLE
from bncompare.metrics.conditional import tv
from bncompare.studies.evaluate import evaluate_cell
from bncompare.studies.protocol import Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import FreshDAGTruth, build_problem


def _spec(*extra):
    return study_spec(compose(["graph=random_dags", "estimators=counting", "episodes=40", "queries=3",
                               "context_lens=[20]", "progress=false", "report=false", *extra]))


def test_every_episode_has_its_own_dag_and_its_cpts_respect_it():
    spec = _spec()
    graph, truth, _ = build_problem(spec)
    assert isinstance(truth, FreshDAGTruth) and graph.parents[3] == (0, 1, 2)  # the study graph is complete
    batch = next(Episodes(graph, truth, spec).batches(20, 40, 64))
    assert batch.graphs is not None and len(batch.graphs) == batch.size == 40
    assert len(set(batch.graphs)) > 30  # fresh per episode, not per study or block
    for b in range(5):  # the truth at a full prefix depends only on the episode's own parents
        dag = batch.graphs[b]
        for m in range(graph.n_nodes):
            rows = batch.cpts[m][b]  # (2^m, 2) on the complete graph
            for r, config in enumerate(graph.configs(m)):
                kept = [config[i] if i in dag.parents[m] else 0 for i in range(m)]
                same = graph.configs(m).tolist().index(kept) if m else 0
                assert torch.equal(rows[r], rows[same])


def test_mle_is_fitted_on_each_episodes_true_dag():
    spec = _spec()
    graph, truth, _ = build_problem(spec)
    episodes = Episodes(graph, truth, spec)
    frame = evaluate_cell(episodes, MLE(), spec.estimator("mle"), 20)
    got = frame[(frame["metric"] == "cond_tv") & (frame["node"] == "all")].set_index("episode")["value"]
    batch = next(episodes.batches(20, 40, 64))
    for b in (0, 7, 31):  # by hand: one episode, its own DAG, its own context
        dag = batch.graphs[b]
        est = MLE().fit(dag, batch.contexts[b : b + 1])
        probs = est.predict_proba(batch.queries[b : b + 1])
        errs = []
        for m in range(graph.n_nodes):
            true = batch.cpts[m][b][graph.config_index(batch.queries[b : b + 1], m)[0]]
            errs.append(tv(probs[m][0].double(), true))
        assert got[b] == pytest.approx(float(torch.stack(errs, -1).mean()), abs=1e-12)
        # and it differs from MLE on the complete graph (so the DAG was used, not the layout)
    full = MLE().fit(graph, batch.contexts[:1]).predict_proba(batch.queries[:1])
    mine = MLE().fit(batch.graphs[0], batch.contexts[:1]).predict_proba(batch.queries[:1])
    assert any(not torch.allclose(a, b) for a, b in zip(full, mine))
    assert np.isfinite(got.values).all()


def test_a_structure_trained_estimator_is_refused_in_one_line(tmp_path):
    cfg = compose(["study=agnostic", "estimators=agnostic_trained", "episodes=4", "context_lens=[5]",
                   "progress=false", "report=false", f"transformer.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(BNError, match=r"trained for one structure.*~estimators\.trained"):
        run_study(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()  # refused before any training
