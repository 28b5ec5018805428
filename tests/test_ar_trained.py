"""The softmax transformer trained to forecast an autoregressive process's next state (transformer_ar_trained)."""
from __future__ import annotations

import math

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks.autoregressive import ARPrior, ar_graph
from bncompare.transformer import checkpoint
from bncompare.transformer.ar_tokens import ARLayout, encode_ar
from bncompare.transformer.train_ar import ARTrainConfig, least_squares_forecast, ridge_forecast, train_ar
from bncompare.transformer.trained_ar import TrainedARTransformer

# A model small enough to train in about a second; the prior's sequences are the papers' (commuting W).
TINY = {"steps": 200, "batch_size": 16, "length_groups": 2, "n_context_max": 8, "eval_every": 199, "eval_tasks": 64,
        "warmup": 10, "lr": 1e-2, "d_model": 16, "n_layer": 1, "n_head": 2, "d_ff": 32}
PRIOR = ARPrior("commuting")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    est = TrainedARTransformer(TINY, cache_dir=cache, progress=False).prepare(ar_graph(3), PRIOR, seed=0)
    return est, cache


def prefixes(n=6, t=5, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return PRIOR.sequences(PRIOR.sample(ar_graph(3), n, gen), t + 1, gen)


def test_a_short_training_lowers_the_held_out_error(prepared):
    est, _ = prepared
    evals = [h for h in est.history_ if "eval_err" in h]
    assert [h["step"] for h in evals] == [0, 199]
    first, last = evals[0], evals[-1]
    assert last["eval_err"] < 0.8 * first["eval_err"]
    for t in (2, 5, 8):
        assert {f"eval_err@{t}", f"eval_gd_err@{t}", f"eval_ls_err@{t}"} <= set(last)
    assert last["eval_ls_err@8"] < 1e-12  # least squares is exact beyond t = d without noise
    assert est.history_[-1]["train_seconds"] > 0 and all("loss" in h for h in est.history_)


def test_predict_is_a_point_forecast_that_never_reads_the_queries(prepared):
    est, _ = prepared
    seqs = prefixes()
    est.fit(ar_graph(3), seqs[:, :5])
    a = est.predict(seqs[:, 5:6].expand(-1, 4, -1))
    b = est.predict(torch.randn(6, 4, 3, dtype=torch.float64))
    assert len(a) == 3 and all(p.shape == (6, 4, 3) for p in a)
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
        assert torch.isinf(pa[..., 0]).all() and (pa[..., 2] == 0).all()
        assert torch.equal(pa[:, :1, 1].expand(-1, 4), pa[..., 1])  # the same forecast for every query row
    assert [p.shape for p in est.predict(torch.zeros(6, 4, 3, dtype=torch.float64), nodes=[2])] == [(6, 4, 3)]
    tags = TrainedARTransformer.tags
    assert tags.point_forecast and tags.one_structure and tags.has_history and tags.family == "trained"
    assert TrainedARTransformer.computed_parts == ()


def test_the_query_token_holds_only_the_prefix():
    seqs = prefixes(t=4)
    tokens = encode_ar(seqs[:, :4], horizon=8)
    lay = ARLayout(3)
    assert tokens.shape == (6, 1 + 4 + 1, lay.d_in)
    q = tokens[:, -1]
    assert (q[:, lay.current] == 0).all() and q[:, lay.query_flag].eq(1).all()
    assert torch.allclose(q[:, lay.previous], seqs[:, 3].float())
    assert (tokens[:, 1, lay.previous] == 0).all()  # s_0 = 0
    assert torch.allclose(tokens[:, 3, lay.previous], seqs[:, 1].float())
    assert torch.allclose(tokens[:, 2:, lay.position][..., 0] * 8, torch.arange(2, 6).float().expand(6, -1))


def test_the_cache_loads_without_training(prepared, monkeypatch):
    est, cache = prepared
    seqs = prefixes()
    before = est.fit(ar_graph(3), seqs[:, :5]).predict(seqs[:, 5:6])

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(checkpoint, "train_ar", no_training)
    again = TrainedARTransformer(TINY, cache_dir=cache, progress=False).prepare(ar_graph(3), PRIOR, seed=0)
    after = again.fit(ar_graph(3), seqs[:, :5]).predict(seqs[:, 5:6])
    assert all(torch.equal(x, y) for x, y in zip(before, after))
    assert again.history_ == est.history_
    cfg = est.config(0)
    entry = checkpoint.cache_entry(ar_graph(3), PRIOR, cfg, cache)
    assert entry.parent.name == "transformer_ar"
    state = torch.load(entry / checkpoint.WEIGHTS, weights_only=True)  # plain tensors only
    assert set(state) == set(est.model_.state_dict())
    kept = sorted(int(p.name) for p in (entry / checkpoint.STEPS).iterdir())
    assert kept == list(checkpoint.kept_steps(cfg))
    half = TrainedARTransformer(TINY, cache_dir=cache, progress=False, at_fraction=0.5).prepare(ar_graph(3), PRIOR)
    assert half.steps_ == 100


def test_the_same_seed_gives_the_same_weights():
    cfg = ARTrainConfig(**{**TINY, "steps": 5, "eval_every": 0})
    a, _ = train_ar(ar_graph(3), PRIOR, cfg, progress=False)
    b, _ = train_ar(ar_graph(3), PRIOR, cfg, progress=False)
    c, _ = train_ar(ar_graph(3), PRIOR, ARTrainConfig(**{**TINY, "steps": 5, "eval_every": 0, "seed": 1}),
                    progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_errors_before_prepare_and_fit_and_on_bad_settings(prepared):
    est = TrainedARTransformer(TINY, progress=False)
    with pytest.raises(BNError, match="call prepare"):
        est.fit(ar_graph(3), prefixes()[:, :5])
    with pytest.raises(BNError, match="call fit"):
        est.predict(torch.zeros(6, 1, 3, dtype=torch.float64))
    trained, _ = prepared
    with pytest.raises(BNError, match="prepared for"):
        trained.fit(ar_graph(4), torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(BNError, match="unknown ARTrainConfig fields"):
        ARTrainConfig(stepz=3)
    with pytest.raises(BNError, match="output must be one of"):
        ARTrainConfig(output="mixture")
    assert ARTrainConfig(n_context_max=20).eval_lengths == (2, 5, 10, 20)


def test_the_references_are_least_squares_and_ridge():
    gen = torch.Generator().manual_seed(0)
    prior = ARPrior("gaussian", sigma=0.1)
    seqs = prior.sequences(prior.sample(ar_graph(3), 4, gen), 12, gen)
    ctx = seqs[:, :11]
    W = torch.linalg.lstsq(ctx[:, :-1], ctx[:, 1:]).solution.transpose(1, 2)  # rows s_u -> s_{u+1}
    assert torch.allclose(least_squares_forecast(ctx), (W @ ctx[:, -1, :, None])[..., 0], atol=1e-10)
    x, y = ctx[0, :-1], ctx[0, 1:]
    Wr = y.T @ x @ torch.linalg.inv(x.T @ x + 0.01 * 3 * torch.eye(3, dtype=x.dtype))
    assert torch.allclose(ridge_forecast(ctx, 0.1)[0], Wr @ ctx[0, -1], atol=1e-10)
    assert math.isclose(float(least_squares_forecast(ctx[:, :1]).abs().max()), 0.0)  # no pair yet: forecast 0
