"""What a trained transformer computes rather than learns: declared from its settings, recorded in the run
directory, shown in its label; the paper's plain architecture beside the project's readouts."""
import json

import pytest

from bncompare.reports.data import read_results
from bncompare.studies import registry
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.transformer.trained import TrainedTransformer


def test_computed_parts_are_derived_from_the_model_settings():
    default = TrainedTransformer().tags.computed
    assert any("value-equality" in p for p in default)
    no_gains = TrainedTransformer({"match_scores": False}).tags.computed
    assert no_gains and set(no_gains) < set(default)  # dropping the gains drops exactly that part
    assert TrainedTransformer({"match_scores": False, "output": "logits"}).tags.computed == ()
    evidence = TrainedTransformer({"output": "evidence"}).tags.computed
    assert any("leave-one-out likelihood of parent sets" in p for p in evidence)
    assert TrainedTransformer(recipe="paper").tags.computed == ()  # the paper's architecture: nothing hard-wired
    # the class itself declares the default model's parts
    assert TrainedTransformer.tags.computed == default


def test_paper_recipe_is_the_plain_architecture_with_the_same_budget():
    base = {"steps": 123, "batch_size": 8, "d_model": 32}
    plain = TrainedTransformer(base, recipe="paper").config()
    assert (plain.steps, plain.batch_size, plain.model.d_model) == (123, 8, 32)
    m = plain.model
    assert (m.output, m.match_scores, m.mlp, m.context_attention, m.attn_scale) == (
        "logits", False, "relu", "full", "fixed")
    assert TrainedTransformer(base, recipe="paper_mle").config().loss == "mle"
    params = TrainedTransformer(base, recipe="paper").get_params()
    assert params["recipe"] == "paper" and params["train_cfg"]["model"]["output"] == "logits"


def test_an_unknown_recipe_is_a_one_line_error():
    with pytest.raises(Exception, match="recipe must be one of") as e:
        TrainedTransformer(recipe="nope").config()
    assert "\n" not in str(e.value)


def test_default_and_paper_studies_have_the_plain_model_and_the_imitation_variant():
    default = compose([])["estimators"]
    assert default["trained_plain"]["kind"] == "trained" and default["trained_plain"]["params"]["recipe"] == "paper"
    assert default["trained_plain"]["params"]["train_cfg"] == default["trained"]["params"]["train_cfg"]
    paper = compose(["study=paper"])["estimators"]
    assert "trained_plain" in paper and paper["trained_plain_mle"]["params"]["recipe"] == "paper_mle"
    assert "MLE" in paper["trained_plain_mle"]["label"]
    for name in ("fast", "counting"):  # the fast set keeps the trainings, counting drops them all
        ests = compose([f"estimators={name}"])["estimators"]
        assert ("trained_plain" in ests) == ("trained" in ests), name


def test_agnostic_preset_has_a_plain_agnostic_model_beside_the_evidence_readout():
    ests = compose(["study=agnostic"])["estimators"]
    plain, evidence = ests["agnostic_plain"], ests["agnostic"]
    assert plain["kind"] == evidence["kind"] == "transformer_agnostic"
    built = {name: registry.build(e["kind"], e["params"]) for name, e in (("plain", plain), ("evidence", evidence))}
    assert built["plain"].tags.computed == () and built["plain"].tags.graph_agnostic
    assert any("leave-one-out" in p for p in built["evidence"].tags.computed)
    assert built["plain"].config().steps == built["evidence"].config().steps
    alone = compose(["study=agnostic", "~estimators.agnostic"])["estimators"]["agnostic_plain"]  # either may go
    assert alone["params"]["max_parents"] == evidence["params"]["max_parents"]


def test_smoke_run_has_plain_rows_and_labels_that_say_what_is_hard_wired(tmp_path):
    cfg = compose(["study=smoke", "transformer.train.steps=20", f"transformer.cache_dir={tmp_path / 'cache'}",
                   "episodes=8", "progress=false", "report=false"])
    cfg["estimators"] = {k: v for k, v in cfg["estimators"].items() if k in ("bayes", "bayes_median", "mle",
                                                                             "trained", "trained_plain")}
    out = run_study(cfg, tmp_path / "run")
    res = read_results(out / "results.csv")
    tv = res[(res["metric"] == "cond_tv") & (res["node"] == "all")]
    for name in ("trained", "trained_plain"):
        assert sorted(tv.loc[tv["estimator"] == name, "context_len"]) == cfg["context_lens"], name
    records = json.loads((out / "estimators.json").read_text())
    trained = {k: v for k, v in records.items() if v["tags"]["family"] == "trained"}
    assert set(trained) == {"trained", "trained_plain"}
    for name, e in trained.items():
        computed = e["tags"]["computed"]
        if computed:
            assert "[computed: " in e["label"] and all(p.split()[0] in e["label"] for p in computed), name
        else:
            assert e["label"].endswith("[learned end to end]"), name
    assert records["trained_plain"]["tags"]["computed"] == [] and records["trained"]["tags"]["computed"]
