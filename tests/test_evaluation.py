"""Proper scores, calibration, evaluation off the training prior, the real-data headline, checkpoints along
training: each against a computation by hand or an independent one."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bncompare.errors import BNError
from bncompare.metrics.scores import brier, calibration_sums, ece, ece_with_se, log_loss
from bncompare.metrics.summary import CELL, summarize
from bncompare.networks import DirichletPrior, get_graph
from bncompare.reports.data import read_results
from bncompare.studies.protocol import Episodes
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import build_problem
from bncompare.transformer import TrainConfig, TrainedTransformer
from bncompare.transformer.checkpoint import cache_entry, kept_step, trained_model

# ----- the scores, by hand ------------------------------------------------------------------------

def test_log_loss_and_brier_by_hand():
    q = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]], dtype=torch.float64)
    x = torch.tensor([0, 2])
    nll = log_loss(q, x)
    assert nll[0].item() == pytest.approx(-math.log(0.7))
    assert math.isinf(nll[1].item())  # the value that occurred was ruled out: infinite, not clipped
    b = brier(q, x)
    assert b[0].item() == pytest.approx(0.3**2 + 0.2**2 + 0.1**2)
    assert b[1].item() == pytest.approx(0.5**2 + 0.5**2 + 1.0)


def test_calibration_bins_and_ece_by_hand():
    # one episode, two binary forecasts: q = (0.25, 0.75) with x = 1, and q = (0.95, 0.05) with x = 0
    q = torch.tensor([[[0.25, 0.75], [0.95, 0.05]]], dtype=torch.float64)
    x = torch.tensor([[1, 0]])
    sums = calibration_sums(q, x).numpy()[0]  # (3, 10): count, sum of forecasts, sum of outcomes
    # forecasts 0.25 (event x=0: no), 0.75 (x=1: yes), 0.95 (x=0: yes), 0.05 (x=1: no)
    assert sums[0].tolist() == [1, 0, 1, 0, 0, 0, 0, 1, 0, 1]
    assert sums[1][[0, 2, 7, 9]].tolist() == pytest.approx([0.05, 0.25, 0.75, 0.95])
    assert sums[2][[0, 2, 7, 9]].tolist() == [0, 0, 1, 1]
    # ECE = sum_b n_b/n |mean forecast - frequency| = (0.05 + 0.25 + 0.25 + 0.05) / 4
    assert float(ece(sums)) == pytest.approx(0.6 / 4)
    # a forecast of exactly 1 lands in the last bin, not past it
    assert calibration_sums(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[0]])).numpy()[0, 0, 9] == 1


def test_ece_bootstrap_is_reproducible_and_shrinks_with_episodes():
    rng = np.random.default_rng(1)
    per_episode = np.zeros((400, 3, 10))
    for b in range(400):
        q = rng.uniform(size=8)
        hit = rng.uniform(size=8) < q  # calibrated forecasts
        for p, h in zip(q, hit):
            k = min(int(p * 10), 9)
            per_episode[b, :, k] += [1, p, h]
    v1, se1 = ece_with_se(per_episode)
    v2, se2 = ece_with_se(per_episode)
    assert (v1, se1) == (v2, se2)
    assert float(ece(per_episode.sum(0))) == v1
    _, se_small = ece_with_se(per_episode[:25])
    assert 0 < se1 < se_small


def test_cell_rows_summarize_to_their_value_and_standard_error():
    frame = pd.DataFrame({"episode": [0, 1, 2, CELL, CELL], "node": ["all"] * 5,
                          "metric": ["cond_tv", "cond_tv", "cond_tv", "ece", "ece_sem"],
                          "value": [0.1, 0.2, 0.3, 0.05, 0.01]})
    out = summarize(frame).set_index("metric")
    assert out.loc["cond_tv", "mean"] == pytest.approx(0.2) and out.loc["cond_tv", "n"] == 3
    assert out.loc["ece", "mean"] == 0.05 and out.loc["ece", "sem"] == 0.01 and out.loc["ece", "n"] == 3
    assert "ece_sem" not in out.index


# ----- the study's numbers against a recomputation ---------------------------------------------------

@pytest.fixture(scope="module")
def counting_run(tmp_path_factory):
    cfg = compose(["estimators=counting", "context_lens=[2,20]", "episodes=64", "queries=4", "progress=false",
                   "report=false", "fidelity.episodes=0"])
    out = run_study(cfg, tmp_path_factory.mktemp("counting") / "run")
    return cfg, out


def test_query_nll_brier_and_ece_are_in_results_per_node_and_overall(counting_run):
    _, out = counting_run
    results = read_results(out / "results.csv")
    for metric in ("query_nll", "query_nll_inf_frac", "brier", "ece", "query_nll_excess", "brier_excess"):
        nodes = set(results.loc[(results["metric"] == metric) & (results["estimator"] == "mle"), "node"])
        assert {"all", "A", "G"} <= nodes, metric
    r = results.set_index(["estimator", "context_len", "node", "metric"])
    assert math.isinf(r.loc[("mle", 2, "all", "query_nll"), "mean"])  # MLE rules out values at N = 2
    assert 0 < r.loc[("mle", 2, "all", "query_nll_inf_frac"), "mean"] < 1
    assert math.isfinite(r.loc[("bayes", 2, "all", "query_nll"), "mean"])
    assert r.loc[("bayes", 20, "all", "ece"), "n"] == 64 and r.loc[("bayes", 20, "all", "ece"), "sem"] > 0
    counts = [r.loc[("bayes", 20, "all", f"calib_count@{b}"), "mean"] for b in range(10)
              if ("bayes", 20, "all", f"calib_count@{b}") in r.index]
    assert sum(counts) == 64 * 4 * 7 * 2  # every forecast of every query, node and (binary) state


def test_query_nll_equals_a_recomputation_from_the_episodes(counting_run):
    cfg, out = counting_run
    spec = study_spec(cfg)
    graph, truth, _ = build_problem(spec)
    batch = next(Episodes(graph, truth, spec).batches(20, 64, 64))
    # Dirichlet(1) posterior mean by plain counting, then -log of each query's own value
    total = np.zeros(batch.size)
    for b in range(batch.size):
        ctx, qry = batch.contexts[b].numpy(), batch.queries[b].numpy()
        per_node = []
        for m in range(graph.n_nodes):
            ps = graph.parents[m]
            losses = []
            for row in qry:
                match = np.all(ctx[:, ps] == row[ps], axis=1) if ps else np.ones(len(ctx), bool)
                count = (ctx[match, m] == row[m]).sum()
                losses.append(-math.log((count + 1.0) / (match.sum() + 2.0)))
            per_node.append(np.mean(losses))
        total[b] = np.mean(per_node)
    eps = pd.read_csv(out / "episodes.csv.gz", dtype={"node": str})
    got = eps[(eps["estimator"] == "bayes") & (eps["context_len"] == 20) & (eps["metric"] == "query_nll")
              & (eps["node"] == "all")].sort_values("episode")["value"].to_numpy()
    assert np.allclose(got, total, atol=1e-10)


# ----- off the training prior --------------------------------------------------------------------

def test_eval_prior_draws_the_truth_from_it_and_keeps_the_training_prior():
    cfg = compose(["eval_prior=dirichlet", "eval_prior.params.alpha=50", "estimators=counting"])
    spec = study_spec(cfg)
    graph, truth, prior = build_problem(spec)
    assert prior == DirichletPrior(1.0)  # what the trained transformer would learn from
    cpts = truth.draw(graph, 400, torch.Generator().manual_seed(0))
    p = torch.cat([c[..., 0].reshape(-1) for c in cpts])
    assert float(p.var()) == pytest.approx(0.25 / 101, rel=0.15)  # Beta(50, 50), not Beta(1, 1) (1/12)
    assert cfg["reference"] == "bayes_true" and cfg["tv_reference"] == "bayes_true_median"
    assert cfg["estimators"]["bayes_true"]["params"]["alpha"] == 50
    assert cfg["out_dir"] != compose(["estimators=counting"])["out_dir"]  # never overwrites the same-prior run


def test_eval_prior_study_references_the_true_prior(tmp_path):
    cfg = compose(["eval_prior=dirichlet", "eval_prior.params.alpha=20", "estimators=counting", "context_lens=[2]",
                   "episodes=64", "queries=4", "progress=false", "report=false", "fidelity.episodes=0"])
    out = run_study(cfg, tmp_path / "run")
    r = read_results(out / "results.csv").set_index(["estimator", "context_len", "node", "metric"])
    # the training prior's posterior mean pays for the wrong prior, paired on the same episodes
    assert r.loc[("bayes", 2, "all", "query_nll_excess"), "mean"] > 3 * r.loc[("bayes", 2, "all",
                                                                                 "query_nll_excess"), "sem"]
    truth = json.loads((out / "truth.json").read_text())
    assert truth["eval_prior"] == "Dirichlet(20) rows" and truth["prior"] == "Dirichlet(1) rows"
    est = json.loads((out / "estimators.json").read_text())
    assert est["bayes_true"]["optimal_prior"] == {"kind": "dirichlet", "params": {"alpha": 20.0}}


def test_eval_prior_is_refused_where_the_truth_is_not_drawn_from_a_prior():
    with pytest.raises(BNError, match="not drawn from a prior"):
        build_problem(study_spec(compose(["graph=asia", "eval_prior=dirichlet"])))


def test_the_report_claims_optimality_only_under_the_exact_true_prior():
    from bncompare.reports.data import optimal_here

    entry = {"tags": {"reference_for": "KL", "optimal_under": "dirichlet"},
             "optimal_prior": {"kind": "dirichlet", "params": {"alpha": 1.0}}}
    same = {"prior": {"kind": "dirichlet", "params": {"alpha": 1.0}}}
    assert optimal_here(entry, same) == "KL"
    assert optimal_here(entry, dict(same, eval_prior={"kind": "dirichlet", "params": {"alpha": 5.0}})) == ""


# ----- the real-data headline --------------------------------------------------------------------

def test_real_data_leads_with_held_out_log_loss():
    from bncompare.reports.context import Ctx
    from bncompare.reports.panels import ERROR

    _, truth, _ = build_problem(study_spec(compose(["graph=sachs_data"])))
    assert truth.headline == "query_nll"
    _, synthetic, _ = build_problem(study_spec(compose([])))
    assert synthetic.headline == "cond_tv"

    class Headline:  # what the error page asks of its context
        def __init__(self, headline):
            self.headline = headline

    assert ERROR.panels(Headline("query_nll"))[0].metric == "query_nll"
    assert ERROR.panels(Headline("cond_tv"))[0].metric == "cond_tv"
    assert Ctx.headline.fget  # the page reads truth.json's declaration, written by the runner


# ----- the trained transformer along its training ------------------------------------------------

def test_checkpoints_along_training_are_kept_and_served(tmp_path):
    graph, prior = get_graph("chain-5"), DirichletPrior(1.0)
    cfg = TrainConfig(steps=12, batch_size=4, length_groups=2, d_model=16, d_ff=32, n_context_max=10,
                      eval_every=4, eval_tasks=4, eval_lengths=(2,))
    final, _ = trained_model(graph, prior, cfg, cache_dir=tmp_path, progress=False)
    kept = sorted(int(p.name) for p in (cache_entry(graph, prior, cfg, tmp_path) / "steps").iterdir())
    assert kept == [3, 4, 6, 8, 9]  # every eval_every steps, and at 1/4, 1/2, 3/4 of the training
    assert kept_step(cfg, 0.25) == 3 and kept_step(cfg, 0.7) == 8
    half = TrainedTransformer(cfg.to_dict(), cache_dir=tmp_path, progress=False, at_fraction=0.7)
    half.prepare(graph, prior, seed=cfg.seed)
    assert half.steps_ == 8 and half.history_ == []
    same = [torch.equal(a, b) for a, b in zip(half.model_.state_dict().values(), final.state_dict().values())]
    assert not all(same)  # other weights than the finished model
    ctx = torch.zeros(2, 3, 5, dtype=torch.long)
    p = half.fit(graph, ctx).predict_proba(torch.zeros(2, 1, 5, dtype=torch.long))
    assert torch.allclose(p[0].sum(-1), torch.ones(2, 1, dtype=p[0].dtype))
    assert kept_step(TrainConfig(steps=20, eval_every=0), 0.5) == 10
    with pytest.raises(BNError, match="keeps no weights"):
        kept_step(TrainConfig(steps=1, eval_every=0), 0.5)
