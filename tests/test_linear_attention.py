"""The one-layer linear transformer on augmented tokens: its one-GD-step construction, its training, its cache and
its estimators (bncompare.transformer.linear_attention, bncompare.transformer.ar_linear)."""
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncompare.errors import BNError
from bncompare.estimators.autoregressive import gd_direction, gd_directions
from bncompare.networks.autoregressive import ARPrior, ar_graph
from bncompare.transformer import linear_attention as la
from bncompare.transformer.ar_linear import ConstructedLinearTF, TrainedLinearTF


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 8), t=st.integers(1, 40), step=st.floats(-10, 10, allow_nan=False),
       seed=st.integers(0, 2**31 - 1), law=st.sampled_from(["orthogonal", "commuting", "gaussian"]))
def test_constructed_layer_is_one_gd_step(d, t, step, seed, law):
    gen = torch.Generator().manual_seed(seed)
    # bounded states (spectral radius <= 1), so 1e-9 is an absolute bound on forecasts of size up to ~1e4
    prior = ARPrior(law=law, start="gaussian", spectral_radius=1.0 if law == "gaussian" else None)
    seqs = prior.sequences(prior.sample(ar_graph(d), 3, gen), t, gen) * (1 + 2 * torch.rand(3, 1, 1, generator=gen,
                                                                                              dtype=torch.float64))
    layer = la.constructed_layer(d, step)
    want = step * gd_directions(seqs)
    with torch.no_grad():
        full = layer(la.augmented_tokens(seqs))  # the definition: o_t = W_PV M_t W_KQ e_t
        assert torch.allclose(full[..., :d], want, rtol=0, atol=1e-9)
        assert torch.allclose(layer.forecast(seqs), want, rtol=0, atol=1e-9)  # the cheap path
        last, W = layer.last(seqs)
    assert torch.allclose(last, step * gd_direction(seqs), rtol=0, atol=1e-9)
    assert torch.allclose(torch.einsum("bij,bj->bi", W, seqs[:, -1]), last, rtol=0, atol=1e-9)
    # the estimator says the same, and its W is eta A_t
    est = ConstructedLinearTF(horizon=t, step=step).fit(ar_graph(d), seqs)
    pred = est.predict(torch.zeros(3, 2, d))
    assert torch.allclose(torch.stack([p[:, 0, 1] for p in pred], -1), want[:, -1], rtol=0, atol=1e-9)
    A = torch.einsum("bui,buj->bij", seqs[:, 1:], seqs[:, :-1])
    assert torch.allclose(est.transition_, step * A, rtol=0, atol=1e-9)


def test_map_distance_and_map():
    d, eta = 3, 0.2
    W_PV, W_KQ = la.gd_weights(d, eta)
    assert la.map_distance(W_PV * 7, W_KQ / 7, W_PV, W_KQ) == pytest.approx(0, abs=1e-12)  # the scaling symmetry
    assert torch.allclose(la.prediction_map(W_PV * 7, W_KQ / 7), eta * torch.eye(d, dtype=torch.float64))
    W2 = W_KQ.clone()
    W2[0, 0] = 5.0  # a block that never meets a nonzero token coordinate changes nothing
    assert la.map_distance(W_PV, W2, W_PV, W_KQ) == pytest.approx(0, abs=1e-12)
    assert la.map_distance(W_PV * 1.1, W_KQ, W_PV, W_KQ) == pytest.approx(0.1)
    assert la.map_distance(torch.zeros_like(W_PV), W_KQ, W_PV, W_KQ) == pytest.approx(1)


SHORT = dict(horizon=10, steps=60, batch_size=256, eval_every=20, n_eval=256)


def test_short_training_lowers_loss_and_map_distance(tmp_path):
    prior = ARPrior(law="orthogonal")  # (under law=commuting the layer moves AWAY from eta* I: see the module doc)
    est = TrainedLinearTF(**SHORT, cache_dir=tmp_path, progress=False).prepare(ar_graph(3), prior, seed=1)
    h = est.history_
    assert len(h) == SHORT["steps"] and all({"step", "loss", "train_seconds"} <= set(r) for r in h)
    evals = [r for r in h if "eval_err" in r]
    assert [r["step"] for r in evals] == [0, 20, 40, 59]
    assert sum(r["loss"] for r in h[-10:]) < 0.7 * sum(r["loss"] for r in h[:10])
    assert evals[-1]["eval_map_distance"] < evals[0]["eval_map_distance"] - 0.2
    assert evals[-1]["eval_err"] < evals[0]["eval_err"]
    for key in ("eval_gd_err", "eval_ls_err", "eval_err@5", "eval_gd_err@10"):
        assert math.isfinite(evals[-1][key])
    art = est.artifacts_
    json.dumps(art)
    assert len(art["W_KQ"]) == 9 and len(art["map_learned"]) == 3 and set(art["test_err"]) == set(range(1, 11))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(torch.tensor(art["map_gd"], dtype=torch.float64), art["step"] * eye)
    assert art["map_distance"] == pytest.approx(evals[-1]["eval_map_distance"])


def test_cache_round_trip(tmp_path, monkeypatch):
    prior = ARPrior(law="orthogonal")
    cfg = dict(SHORT, steps=5, eval_every=0)
    first = TrainedLinearTF(**cfg, cache_dir=tmp_path, progress=False).prepare(ar_graph(2), prior, seed=3)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(la.torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    monkeypatch.setattr(la, "train_linear", lambda *a, **k: pytest.fail("a cached training ran again"))
    second = TrainedLinearTF(**cfg, cache_dir=tmp_path, progress=False).prepare(ar_graph(2), prior, seed=3)
    assert loads and all(k.get("weights_only") is True for k in loads)
    assert torch.equal(first.layer_.W_PV, second.layer_.W_PV) and torch.equal(first.layer_.W_KQ, second.layer_.W_KQ)
    assert second.history_ == first.history_
    # a damaged entry (wrong shapes) is trained again, not loaded
    folder = second.cache_entry_
    torch.save({"W_PV": torch.zeros(3, 3), "W_KQ": torch.zeros(3, 3)}, folder / la.WEIGHTS)
    monkeypatch.undo()
    assert la.load_entry(folder, la.cache_key(prior, 2, second.config(3)), 2) is None
    third = TrainedLinearTF(**cfg, cache_dir=tmp_path, progress=False).prepare(ar_graph(2), prior, seed=3)
    assert torch.equal(third.layer_.W_PV, first.layer_.W_PV)  # the same seed trains the same weights
    # another seed is another entry
    other = TrainedLinearTF(**cfg, cache_dir=tmp_path, progress=False).prepare(ar_graph(2), prior, seed=4)
    assert other.cache_entry_ != folder


def test_estimator_contract(tmp_path):
    graph, prior = ar_graph(4), ARPrior(law="commuting")
    ctx = prior.sequences(prior.sample(graph, 6, torch.Generator().manual_seed(0)), 7)
    with pytest.raises(BNError, match="prepare"):
        ConstructedLinearTF().fit(graph, ctx)
    with pytest.raises(BNError, match="prepare"):
        TrainedLinearTF(cache_dir=tmp_path).fit(graph, ctx)
    with pytest.raises(BNError, match="fit before predict"):
        ConstructedLinearTF(step=0.1).predict(torch.zeros(6, 1, 4))
    est = ConstructedLinearTF(horizon=7, step=None).prepare(graph, prior)
    assert 0 < est.step_ < 1
    est.fit(graph, ctx)
    q1, q2 = torch.randn(6, 3, 4, dtype=torch.float64), torch.randn(6, 3, 4, dtype=torch.float64)
    p1, p2 = est.predict(q1), est.predict(q2, nodes=[0, 1, 2, 3])
    assert len(p1) == 4 and all(p.shape == (6, 3, 3) for p in p1)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))  # the query values are never read
    assert all(torch.isinf(p[..., 0]).all() and (p[..., 2] == 0).all() for p in p1)
    with pytest.raises(BNError, match="queries must have shape"):
        est.predict(torch.zeros(5, 3, 4))
    with pytest.raises(BNError):
        est.predict(torch.zeros(6, 3, 3))
    # t = 1: no pair yet, the forecast is 0
    assert torch.equal(est.fit(graph, ctx[:, :1]).forecast_, torch.zeros(6, 4, dtype=torch.float64))
    assert ConstructedLinearTF.tags.family == "constructed" and ConstructedLinearTF.tags.point_forecast
    t = TrainedLinearTF.tags
    assert (t.family, t.one_structure, t.point_forecast, t.has_history, t.has_artifacts) == \
        ("trained", True, True, True, True)
    with pytest.raises(BNError, match="steps"):
        TrainedLinearTF(steps=0, cache_dir=tmp_path).prepare(graph, prior)
    with pytest.raises(BNError, match="ARPrior"):
        ConstructedLinearTF().prepare(graph, object())


@pytest.mark.slow
def test_trained_layer_commuting_d5(tmp_path):
    """The issue's setting (commuting law, d = 5, T = 50, sigma = 0, fixed start), default training (~3 min here).

    The issue's acceptance (map distance <= 0.05) does NOT hold for the pure layer: its population optimum is
    not eta* I but a block-rotation preconditioned step that exploits the law's fixed basis (module docstring),
    with a lower error than the one-step optimum at most t. What holds, and is checked: the trained layer is
    never more than 2% worse than the one-step optimum at any t, and better on average."""
    est = TrainedLinearTF(cache_dir=tmp_path, progress=False).prepare(ar_graph(5), ARPrior(law="commuting"), seed=0)
    art = est.artifacts_
    assert all(art["test_err"][t] <= 1.02 * art["test_gd_err"][t] for t in range(1, 51))
    assert sum(art["test_err"].values()) < 0.97 * sum(art["test_gd_err"].values())
    assert art["map_distance"] > 0.5  # far from eta* I (x) I: if this fails, the finding above changed
