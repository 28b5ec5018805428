"""The trained Gaussian transformer: training, cache, resume, the prediction contract, the computed update,
and that the discrete training's keys did not move."""
import hashlib
import json
import math

import pytest
import torch

from bncompare.codeversion import TRAIN_PARTS, code_version
from bncompare.errors import BNError
from bncompare.networks.families import tree
from bncompare.networks.gaussian import DF, LOC, SCALE
from bncompare.networks.graph import Graph
from bncompare.networks.priors import DirichletPrior, NIGPrior
from bncompare.transformer import checkpoint
from bncompare.transformer.gaussian_tokens import encode_gaussian
from bncompare.transformer.model import InContextTransformer
from bncompare.transformer.readouts import READOUTS, TRAINED_OUTPUTS
from bncompare.transformer.train import (
    TRAIN_CODE_VERSION,
    TrainConfig,
    TrainRun,
    graph_signature,
    prior_signature,
    run_fingerprint,
)
from bncompare.transformer.train_gaussian import (
    GaussianTrainConfig,
    build_gaussian_model,
    kl_normal_to_prediction,
    nig_predictive,
    train_gaussian,
)
from bncompare.transformer.trained_gaussian import TrainedGaussianTransformer

TINY = {"steps": 6, "batch_size": 4, "length_groups": 2, "n_context_max": 12, "n_queries": 2, "eval_every": 3,
        "eval_tasks": 4, "eval_lengths": (2, 6), "warmup": 2}


def gaussian_tree() -> Graph:
    t = tree(7)
    return Graph.from_edges(list(t.names), [(t.names[p], t.names[m]) for m in range(7) for p in t.parents[m]],
                            variables="gaussian")


def state_bytes(model) -> dict:
    return {k: v.numpy().tobytes() for k, v in model.state_dict().items()}


def rows(graph, n_sets, n, seed):
    gen = torch.Generator().manual_seed(seed)
    from bncompare.networks.gaussian import sample_gaussian

    params = NIGPrior().sample(graph, n_sets, gen)
    return params, sample_gaussian(graph, params, n, gen)


def test_short_training_caches_and_reloads_bit_identically_with_weights_only(tmp_path, monkeypatch):
    g = gaussian_tree()
    first = TrainedGaussianTransformer(TINY, cache_dir=tmp_path, progress=False).prepare(g, NIGPrior(), seed=0)
    assert len(first.history_) == TINY["steps"] and "eval_kl@6" in first.history_[-1]
    assert first.history_[-1]["train_seconds"] > 0
    entry = checkpoint.cache_entry(g, NIGPrior(), first.config(0), tmp_path)
    assert entry.parent.name == "transformer_gaussian" and (entry / "model.pt").is_file()
    torch.load(entry / "model.pt", weights_only=True)  # plain tensors only

    def no_training(*a, **k):
        raise AssertionError("a cached model was trained again")
    monkeypatch.setattr(checkpoint, "train_gaussian", no_training)
    again = TrainedGaussianTransformer(TINY, cache_dir=tmp_path, progress=False).prepare(g, NIGPrior(), seed=0)
    assert state_bytes(again.model_) == state_bytes(first.model_)
    assert again.history_ == first.history_
    _, ctx = rows(g, 3, 5, 1)
    a = first.fit(g, ctx).predict(ctx[:, :2])
    b = again.fit(g, ctx).predict(ctx[:, :2])
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_killed_training_resumes_to_the_uninterrupted_weights(tmp_path):
    g, prior = gaussian_tree(), NIGPrior()
    cfg = GaussianTrainConfig(**TINY)
    whole, whole_hist = train_gaussian(g, prior, cfg, progress=False)

    def die(rec):
        if rec["step"] == 3:
            raise KeyboardInterrupt  # after the snapshot of steps 0..3
    with pytest.raises(KeyboardInterrupt):
        train_gaussian(g, prior, cfg, progress=False, run=TrainRun(folder=tmp_path, checkpoint_every=2, on_step=die))
    assert (tmp_path / "train_state.pt").is_file()
    resumed, hist = train_gaussian(g, prior, cfg, progress=False, run=TrainRun(folder=tmp_path, checkpoint_every=2))
    assert state_bytes(resumed) == state_bytes(whole)
    assert [h["loss"] for h in hist] == [h["loss"] for h in whole_hist]


@pytest.mark.parametrize("output", ["conjugate", "student_t"])
def test_predictions_have_the_contract_shape_and_use_only_earlier_nodes(tmp_path, output):
    g = gaussian_tree()
    est = TrainedGaussianTransformer({**TINY, "output": output}, cache_dir=tmp_path, progress=False)
    est.prepare(g, NIGPrior(), seed=0)
    _, ctx = rows(g, 4, 9, 2)
    _, qry = rows(g, 4, 5, 3)
    preds = est.fit(g, ctx).predict(qry)
    assert len(preds) == g.n_nodes
    for p in preds:
        assert p.shape == (4, 5, 3) and p.dtype == torch.float64
        assert (p[..., DF] > 0).all() and (p[..., SCALE] > 0).all() and torch.isfinite(p[..., LOC]).all()
    for m in range(g.n_nodes):
        changed = qry.clone()
        changed[..., m:] = torch.randn(changed[..., m:].shape, dtype=torch.float64) * 50
        # equal up to float32 rounding (the backbone's; fewer query tokens may round differently)
        assert torch.allclose(est.predict(changed, [m])[0], preds[m], rtol=1e-5, atol=1e-6), \
            f"node {m} read a value at or after it"
    assert torch.allclose(est.predict(qry, [5, 2])[1], preds[2], rtol=1e-5, atol=1e-6)
    with pytest.raises(BNError, match="call predict"):
        est.predict_proba(qry)
    with pytest.raises(BNError, match="gaussian"):
        est.fit(tree(7), torch.zeros(4, 3, 7, dtype=torch.long))


def test_conjugate_readout_with_the_true_prior_is_the_exact_posterior_predictive():
    """The computed part: given the true prior (precision huge off the parents) it is the exact predictive."""
    g, prior = gaussian_tree(), NIGPrior(mean=0.3, precision=2.0, a=3.0, b=2.0)
    model = build_gaussian_model(g, GaussianTrainConfig()).double()
    ro = model.readout_module
    M, K, B = g.n_nodes, g.n_nodes + 1, 5
    lam = torch.full((M, K), math.exp(30.0), dtype=torch.float64)
    mu = torch.zeros(M, K, dtype=torch.float64)
    for t in range(M):
        for j in [0] + [1 + p for p in g.parents[t]]:
            lam[t, j], mu[t, j] = prior.precision, prior.mean
    r = ro.regressor
    true_prior = (lam * r).expand(B, M, K), (mu * r).expand(B, M, K), torch.full((B, M), prior.a,
                  dtype=torch.float64), torch.full((B, M), prior.b, dtype=torch.float64)
    ro.prior = lambda h_struct: true_prior
    _, ctx = rows(g, B, 40, 4)
    _, qry = rows(g, B, 6, 5)
    with torch.no_grad():
        out = model(encode_gaussian(ctx, qry, range(M), torch.float64), 40).reshape(B, 6, M, 3)
    for m in range(M):
        exact = nig_predictive(g, prior, ctx, qry, m)
        assert torch.allclose(out[:, :, m], exact, rtol=1e-9, atol=1e-9), m


def test_kl_quadrature_matches_the_normal_closed_form_and_is_zero_at_the_truth():
    loc, sigma = torch.tensor([0.0, 1.5]), torch.tensor([1.0, 0.5])
    loc, sigma = loc.double(), sigma.double()
    normal = torch.stack([torch.full_like(loc, math.inf), loc + 0.2, sigma * 1.3], -1)
    nearly = torch.stack([torch.full_like(loc, 1e7), loc + 0.2, sigma * 1.3], -1)
    assert torch.allclose(kl_normal_to_prediction(loc, sigma, normal), kl_normal_to_prediction(loc, sigma, nearly),
                          atol=1e-6)
    exact = torch.stack([torch.full_like(loc, math.inf), loc, sigma], -1)
    assert torch.allclose(kl_normal_to_prediction(loc, sigma, exact), torch.zeros(2, dtype=torch.float64))
    t5 = torch.stack([torch.full_like(loc, 5.0), loc, sigma], -1)
    assert (kl_normal_to_prediction(loc, sigma, t5) > 0).all()


def test_gaussian_settings_are_checked_in_one_line():
    with pytest.raises(BNError, match="output must be one of"):
        GaussianTrainConfig(output="mixture")
    with pytest.raises(BNError, match="unknown GaussianTrainConfig fields"):
        GaussianTrainConfig(stepz=3)
    with pytest.raises(BNError, match="a trained model's output"):
        TrainConfig(output="conjugate", match_scores=False)
    assert "conjugate" not in TRAINED_OUTPUTS and "student_t" not in TRAINED_OUTPUTS
    with pytest.raises(BNError, match="variables='gaussian'"):
        TrainedGaussianTransformer(TINY, progress=False).prepare(tree(7), DirichletPrior(1.0))


# The discrete training's settings and key, as they were before linear-Gaussian models existed.
DISCRETE_TRAIN_DEFAULTS = {
    "steps": 2000, "batch_size": 16, "lr": 3e-3, "min_lr_ratio": 0.0, "warmup": 200, "weight_decay": 0.01,
    "grad_clip": 1.0, "n_context_max": 500, "context_sampling": "uniform", "length_groups": 4, "n_queries": 8,
    "loss": "true_cpt", "loss_weight_power": 0.0, "seed": 0, "device": "auto", "eval_every": 500,
    "eval_tasks": 128, "eval_lengths": [1, 10, 100, 500],
    "model": {"d_model": 64, "n_layer": 2, "n_head": 2, "d_ff": 256, "norm": "layer", "attention": "softmax",
              "context_attention": "self", "attn_scale": "learned", "mlp": "swiglu", "query_view": "prefix",
              "output": "mixture", "match_scores": True, "evidence_rounds": 4}}
DISCRETE_TRAIN_PARTS = ("errors.py", "runtime.py", "networks", "estimators/counting.py", "metrics/conditional.py",
                        "transformer/train.py", "transformer/model.py", "transformer/encoding.py")


def test_the_discrete_training_key_is_unchanged(tmp_path):
    g, prior, cfg = tree(7), DirichletPrior(1.0), TrainConfig()
    assert cfg.to_dict() == DISCRETE_TRAIN_DEFAULTS
    assert TRAIN_PARTS == DISCRETE_TRAIN_PARTS and TRAIN_CODE_VERSION == "3"
    train_cfg = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    blob = {"graph": graph_signature(g), "prior": prior_signature(prior), "train": train_cfg,
            "code": ["3", code_version(DISCRETE_TRAIN_PARTS)]}
    assert run_fingerprint(g, prior, cfg) == hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
    entry = checkpoint.cache_entry(g, prior, cfg, tmp_path)
    assert entry == tmp_path / "transformer" / run_fingerprint(g, prior, cfg)[:24]
    recipe = checkpoint.recipe_of(cfg)
    assert recipe.train is checkpoint.train and recipe.fingerprint is run_fingerprint


def test_what_is_computed_is_declared():
    assert TrainedGaussianTransformer.computed_parts and all(isinstance(p, str) for p in
                                                            TrainedGaussianTransformer.computed_parts)
    assert TrainedGaussianTransformer().model_computed_parts() == TrainedGaussianTransformer.computed_parts
    assert TrainedGaussianTransformer({"output": "student_t"}).model_computed_parts() == ()



@pytest.mark.parametrize("kind", sorted(k for k, r in READOUTS.items() if r.variables == "gaussian"))
def test_every_gaussian_readout_builds_and_answers_every_query(kind):
    g = gaussian_tree()
    cfg = GaussianTrainConfig(output=kind, d_model=16, d_ff=32).model_config(g)
    model = InContextTransformer(cfg, seed=0).eval()
    assert isinstance(model.readout_module, READOUTS[kind])
    _, ctx = rows(g, 2, 9, 6)
    _, qry = rows(g, 2, 3, 7)
    with torch.no_grad():
        out, weights = model(encode_gaussian(ctx, qry, range(g.n_nodes)), 9, return_weights=True)
    assert out.shape == (2, 3 * g.n_nodes, 3) and out.dtype == torch.float64
    assert len(weights) == model.n_attention_layers
    with pytest.raises(BNError, match="densities"):
        model.probabilities(out)


@pytest.mark.slow
def test_default_training_reaches_the_bayes_predictive_on_gaussian_tree(tmp_path):
    """The acceptance figure: trained / Bayes KL <= 1.10 at N >= 5 and below least squares at N <= 50."""
    from bncompare.networks.gaussian import sample_gaussian, true_conditional
    from bncompare.transformer.train_gaussian import least_squares_predictive

    g, prior = gaussian_tree(), NIGPrior()
    est = TrainedGaussianTransformer(None, cache_dir=tmp_path, progress=False).prepare(g, prior, seed=0)
    for n in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        gen = torch.Generator().manual_seed(1000 + n)
        params = prior.sample(g, 200, gen)
        ctx, qry = sample_gaussian(g, params, n, gen), sample_gaussian(g, params, 8, gen)
        preds = est.fit(g, ctx).predict(qry)
        kl = {"trained": 0.0, "bayes": 0.0, "mle": 0.0}
        for m in range(g.n_nodes):
            true = true_conditional(g, params, qry, m)
            for name, pred in (("trained", preds[m]), ("bayes", nig_predictive(g, prior, ctx, qry, m)),
                               ("mle", least_squares_predictive(g, ctx, qry, m))):
                kl[name] += float(kl_normal_to_prediction(true[..., 1], true[..., 2], pred).mean()) / g.n_nodes
        if n >= 5:
            assert kl["trained"] / kl["bayes"] <= 1.10, (n, kl)
        if n <= 50:
            assert kl["trained"] < kl["mle"], (n, kl)
