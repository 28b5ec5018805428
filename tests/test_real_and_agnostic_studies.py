"""Beyond synthetic families: the structure-agnostic preset, the real Sachs rows, prior distance of real CPTs."""
import json

import numpy as np
import pytest
import torch

from bncompare.reports.data import read_results
from bncompare.reports.report import write_report
from bncompare.studies.protocol import BLOCK, Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import SplitTruth, build_problem

TINY_TRAIN = ["transformer=smoke", "transformer.train.steps=20", "transformer.train.d_model=16",
              "transformer.train.d_ff=32"]


def test_agnostic_preset_compares_the_right_estimators():
    cfg = compose(["study=agnostic"])
    assert cfg["graph"]["name"] == "random_dags"
    assert {e: v["kind"] for e, v in cfg["estimators"].items()} == {
        "bayes": "dirichlet", "bayes_median": "dirichlet_median", "mle": "mle", "naive": "naive",
        "agnostic": "transformer_agnostic", "agnostic_plain": "transformer_agnostic",
        "bayes_structures": "structure_averaging"}
    # the agnostic limit averages over the DAGs of the agnostic model's own training prior
    limit, model = cfg["estimators"]["bayes_structures"]["params"], cfg["estimators"]["agnostic"]["params"]
    dag_prior = ("p_low", "p_high", "max_parents")
    assert [limit[k] for k in dag_prior] == [model[k] for k in dag_prior]
    cfg = compose(["study=agnostic", "graph=tree-7", "estimators=agnostic_trained"])
    assert {e: v["kind"] for e, v in cfg["estimators"].items()} == {
        "bayes": "dirichlet", "mle": "mle", "naive": "naive", "trained": "trained", "agnostic": "transformer_agnostic",
        "agnostic_plain": "transformer_agnostic",
        "bayes_median": "dirichlet_median",  # the TV reference comes with the prior
        "bayes_structures": "structure_averaging"}


def test_tiny_agnostic_study_rows_and_attention_page(tmp_path):
    cfg = compose(["study=agnostic", "graph=chain-5", *TINY_TRAIN, f"transformer.cache_dir={tmp_path / 'cache'}",
                   "context_lens=[3,12]", "episodes=8", "queries=2",
                   "diagnostics.attention_episodes=2", "progress=false"])
    out = run_study(cfg, tmp_path / "out")
    res = read_results(out / "results.csv")
    agn = res[res["estimator"] == "agnostic"]
    tv = agn[(agn["metric"] == "cond_tv") & (agn["node"] == "all")]
    assert sorted(tv["context_len"]) == [3, 12] and tv["mean"].between(0, 1).all()
    limit = res[(res["estimator"] == "bayes_structures") & (res["metric"] == "cond_tv") & (res["node"] == "all")]
    assert sorted(limit["context_len"]) == [3, 12]
    heads = set(agn.loc[agn["metric"] == "attn_match", "node"])
    assert {"L0.H0", "L1.H0"} <= heads  # every layer is diagnosed, not only the last
    assert write_report(out).stat().st_size > 10_000
    assert (out / "extras" / "history_agnostic.csv").is_file()


def _sachs_cfg(*extra):
    return compose(["graph=sachs_data", "estimators=counting", "~estimators.bdeu", "context_lens=[0,10]", "episodes=64",
                    "queries=4", "fidelity.mc_samples=20", "fidelity.episodes=8", "progress=false", "report=false",
                    "graph.options.splits=2", *extra])


def test_sachs_data_contexts_come_from_the_pool_and_truth_from_held_out_rows(tmp_path):
    spec = study_spec(_sachs_cfg())
    graph, truth, _ = build_problem(spec)
    assert isinstance(truth, SplitTruth) and len(truth.splits) == 2
    for s in truth.splits:  # no leakage: the reference is fitted on rows disjoint from the pool
        assert not np.intersect1d(s.pool_rows.numpy(), s.holdout_rows.numpy()).size
    batch = next(Episodes(graph, truth, spec).batches(10, 64, 64))
    for b in range(batch.size):
        split = truth.split_of(batch.episodes[b])
        assert split is truth.splits[b // BLOCK]  # blocks cycle over the splits
        # every context row is a pool row, every query row a held-out row
        for rows, part in ((batch.contexts[b], split.pool), (batch.queries[b], split.holdout)):
            assert (rows[:, None, :] == part[None]).all(-1).any(1).all()
        ref = torch.as_tensor(split.reference.cpts[3])
        assert torch.equal(batch.cpts[3][b], ref)
    out = run_study(_sachs_cfg(), tmp_path / "sachs")
    res = read_results(out / "results.csv")
    tv = res[(res["metric"] == "cond_tv") & (res["node"] == "all")].set_index(["estimator", "context_len"])["mean"]
    assert tv["mle", 10] < tv["mle", 0]  # real rows carry information about the held-out reference
    assert json.loads((out / "truth.json").read_text())["prior_distance"].startswith("split-0 held-out reference")


def test_sachs_data_context_longer_than_pool_is_a_user_error():
    from bncompare.errors import BNError

    with pytest.raises(BNError, match="exceeds the Sachs context pool"):
        build_problem(study_spec(_sachs_cfg("context_lens=[5000]")))


def test_real_network_report_states_prior_distance(tmp_path):
    # The figures of the note are recomputed here from asia's bundled CPTs, in plain Python, and the
    # report's title page must show them (read from the rendered page, not from the run directory).
    import re

    from scipy.special import gammaln

    from bncompare.networks import load_network
    from bncompare.reports import study_pages
    from bncompare.reports.data import load

    cfg = compose(["graph=asia", "estimators=counting", "episodes=4", "context_lens=[5]", "queries=2",
                   "progress=false", "report=false"])
    out = run_study(cfg, tmp_path / "asia")
    note = json.loads((out / "truth.json").read_text())["prior_distance"]
    rows = [list(r) for c in load_network("asia").cpts for r in np.asarray(c)]
    assert all(len(r) == 2 for r in rows)  # asia is binary: Dirichlet(1) rows are Beta(1, 1)
    min_entry = min(min(r) for r in rows)
    entropy = sum(-sum(p * np.log(p) for p in r if p > 0) for r in rows) / len(rows)
    below = sum(p < 1e-3 for r in rows for p in r) / (2 * len(rows))
    positive = [r for r in rows if min(r) > 0]  # best alpha: Beta(a, a) likelihood on a fine grid
    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 200_001))
    log_sum = sum(np.log(r).sum() for r in positive)
    loglik = len(positive) * (gammaln(2 * grid) - 2 * gammaln(grid)) + (grid - 1) * log_sum
    alpha = grid[np.argmax(loglik)]
    numbers = dict(re.findall(r"(min entry|mean row entropy|best-fit symmetric alpha) ([0-9.e+-]+)", note))
    assert float(numbers["min entry"]) == pytest.approx(min_entry, abs=1e-12)
    assert float(numbers["mean row entropy"]) == pytest.approx(entropy, abs=5e-4)
    assert float(numbers["best-fit symmetric alpha"]) == pytest.approx(alpha, rel=2e-3)
    assert f"{100 * below:.1f}% of entries < 0.001" in note
    assert "prior: 0.500)" in note  # E[row entropy] of Beta(1, 1) rows is exactly 1/2 nat

    class Pages:  # collects the title page's figure instead of writing a PDF
        figs = []

        def savefig(self, fig):
            self.figs.append(fig)

    study_pages.title_page(Pages(), load(out))
    shown = " ".join(t.get_text() for t in Pages.figs[0].texts)
    assert note[:100] in shown.replace("\n", " ")
