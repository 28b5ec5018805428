"""Training, checkpoints, the cache, the trained estimator and the attention diagnostics.

Every training run here is tiny (a one- or two-layer model of width 16, tens of
steps, short contexts), so the whole file runs in seconds on a CPU.
"""
import json
import math
import re

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.networks.graph import Graph
from bncompare.transformer import checkpoint as ckpt
from bncompare.transformer.checkpoint import load_checkpoint, save_checkpoint, trained_model
from bncompare.transformer.diagnostics import attention_to_parents
from bncompare.transformer.encoding import encode
from bncompare.transformer.model import InContextTransformer, SelfAttention, TransformerConfig
from bncompare.transformer.train import TrainConfig, lr_at, make_tasks, query_log_probs, train
from bncompare.transformer.trained import TrainedTransformer

GRAPH = get_graph("chain-2")  # A -> B
PRIOR = DirichletPrior(1.0)
TINY = dict(d_model=16, n_head=2, d_ff=32, n_layer=1, batch_size=8, length_groups=1, n_context_max=20, n_queries=4,
            warmup=5, min_lr_ratio=0.1, eval_every=0, steps=8)


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def short_run():
    """One short but real training run, shared by the tests that only read it."""
    cfg = tiny(steps=100, lr=1e-2, n_layer=2, context_sampling="uniform",
               eval_every=99, eval_tasks=64, eval_lengths=(5, 20))
    model, history = train(GRAPH, PRIOR, cfg, progress=False)
    return cfg, model, history


def test_training_lowers_held_out_loss(short_run):
    _, _, history = short_run
    evals = [h for h in history if "eval_ce" in h]
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == 99
    # an untrained mixture readout weighs every row alike: an even mix of the observed values and a
    # flat prior, between the Bayes posterior mean and uniform answers (log 2) against the true rows
    assert first["eval_bayes_ce"] < first["eval_ce"] < math.log(2)
    # training at least halves the excess over the Bayes posterior mean
    assert last["eval_ce"] - last["eval_bayes_ce"] < (first["eval_ce"] - first["eval_bayes_ce"]) / 2
    assert last["eval_tv"] < first["eval_tv"]
    # nothing beats the Bayes posterior mean on average
    assert last["eval_ce"] > last["eval_bayes_ce"] - 1e-3
    assert all(math.isfinite(h["loss"]) and h["bayes_loss"] > 0 for h in history)
    assert history[-1]["train_seconds"] > 0


def test_same_seed_same_model_other_seed_differs(short_run):
    cfg, model, history = short_run
    model2, history2 = train(GRAPH, PRIOR, cfg, progress=False)
    assert [h["loss"] for h in history] == [h["loss"] for h in history2]
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), k
    _, history3 = train(GRAPH, PRIOR, tiny(seed=1), progress=False)
    assert [h["loss"] for h in history3] != [h["loss"] for h in history[:8]]


@pytest.mark.parametrize("loss", ["true_cpt", "sample", "mle"])
@pytest.mark.parametrize("attention", ["softmax", "softmax_1"])
def test_every_loss_and_attention_variant_trains(loss, attention):
    model, history = train(GRAPH, PRIOR, tiny(loss=loss, attention=attention, steps=4), progress=False)
    assert len(history) == 4 and all(math.isfinite(h["loss"]) for h in history)
    assert model.cfg.attention == attention
    assert not model.training


def test_bad_train_config_is_one_line_error():
    for bad in (dict(loss="kl"), dict(attention="linear"), dict(d_model=10, n_head=4), dict(device="tpu")):
        with pytest.raises(BNError) as e:
            tiny(**bad)
        assert "\n" not in str(e.value)
    with pytest.raises(BNError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})


def test_cosine_schedule():
    cfg = tiny(steps=100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(99, cfg) == pytest.approx(1e-4, rel=0.01)


def test_softmax_1_row_with_nothing_to_attend_outputs_zero():
    """With a null key, a row whose every real score is very negative attends to nothing."""
    torch.manual_seed(0)
    outs = {}
    for attention in ("softmax", "softmax_1"):
        cfg = TransformerConfig(d_model=8, n_head=1, attention=attention, attn_scale="fixed", context_attention="full")
        attn = SelfAttention(cfg)
        with torch.no_grad():
            attn.q.weight.zero_(), attn.k.weight.zero_(), attn.proj.bias.zero_()
            attn.q.bias.fill_(-10.0)
            attn.k.bias.fill_(10.0)  # every score = -100 * 8 / sqrt(8)
        h = torch.randn(2, 5, 8)
        outs[attention] = attn(h, n_context=2)
    assert outs["softmax_1"].abs().max() < 1e-6
    assert outs["softmax"].abs().max() > 1e-2  # plain softmax must still average the values


# ----- checkpoints and cache ---------------------------------------------------

def test_checkpoint_round_trip_weights_only(tmp_path, short_run):
    cfg, model, history = short_run
    save_checkpoint(tmp_path, model, {"graph": ckpt.graph_signature(GRAPH), "train": cfg.to_dict()})
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # plain tensors only
    assert set(state) == set(model.state_dict())
    loaded, meta = load_checkpoint(tmp_path, GRAPH)
    assert meta["train"] == cfg.to_dict() and meta["model"] == model.cfg.to_dict()
    cpts = PRIOR.sample(GRAPH, 3, torch.Generator().manual_seed(0))
    ctx, q = sample(GRAPH, cpts, 10), sample(GRAPH, cpts, 2)
    tok = encode(GRAPH, ctx, q, range(GRAPH.n_nodes))
    assert torch.equal(model(tok, 10), loaded(tok, 10))


def test_checkpoint_for_another_graph_is_rejected(tmp_path, short_run):
    _, model, _ = short_run
    save_checkpoint(tmp_path, model, {"graph": ckpt.graph_signature(GRAPH)})
    with pytest.raises(BNError, match="trained for another network") as e:
        load_checkpoint(tmp_path, get_graph("tree-5"))
    assert "\n" not in str(e.value)
    with pytest.raises(BNError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_interrupted_save_leaves_old_checkpoint_intact(tmp_path, short_run, monkeypatch):
    _, model, _ = short_run
    save_checkpoint(tmp_path, model, {"graph": ckpt.graph_signature(GRAPH), "tag": "old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def dies_halfway(obj, f):  # the serializer writes some bytes (to its in-memory buffer), then the process "dies"
        f.write(b"partial weights")
        raise KeyboardInterrupt

    other = train(GRAPH, PRIOR, tiny(seed=5, steps=1), progress=False)[0]
    monkeypatch.setattr(ckpt.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, other, {"graph": ckpt.graph_signature(GRAPH), "tag": "new"})
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # no temp file left, nothing overwritten
    monkeypatch.undo()
    assert load_checkpoint(tmp_path, GRAPH)[1]["tag"] == "old"


def test_weights_and_config_from_different_saves_are_detected(tmp_path, short_run):
    _, model, _ = short_run
    other = train(GRAPH, PRIOR, tiny(seed=5, steps=1), progress=False)[0]
    save_checkpoint(tmp_path / "a", model, {})
    save_checkpoint(tmp_path / "b", other, {})
    (tmp_path / "a" / "model.pt").write_bytes((tmp_path / "b" / "model.pt").read_bytes())
    with pytest.raises(BNError, match="incomplete"):
        load_checkpoint(tmp_path / "a")


def test_cache_hit_loads_instead_of_training(tmp_path, monkeypatch):
    cfg = tiny(steps=3)
    model, history = trained_model(GRAPH, PRIOR, cfg, cache_dir=tmp_path, progress=False)
    entries = list((tmp_path / "transformer").iterdir())
    assert len(entries) == 1 and json.loads((entries[0] / "config.json").read_text())["train"] == cfg.to_dict()

    def no_training(*a, **k):
        raise AssertionError("the cache should have served this model")

    monkeypatch.setattr(ckpt, "train", no_training)
    model2, history2 = trained_model(GRAPH, PRIOR, cfg, cache_dir=tmp_path, progress=False)
    assert history2 == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    # anything that changes the model changes the key
    key = ckpt.run_fingerprint
    keys = {key(GRAPH, PRIOR, cfg), key(GRAPH, PRIOR, tiny(steps=4)), key(GRAPH, DirichletPrior(0.5), cfg),
            key(get_graph("chain-4"), PRIOR, cfg)}
    assert len(keys) == 4
    with pytest.raises(AssertionError, match="cache should have served"):
        trained_model(GRAPH, PRIOR, tiny(steps=4), cache_dir=tmp_path, progress=False)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BNCOMPARE_CACHE", str(tmp_path))
    assert ckpt.default_cache_dir() == tmp_path


# ----- the estimator ----------------------------------------------------------

def test_trained_transformer_estimator(tmp_path):
    est = TrainedTransformer({**TINY, "steps": 3}, cache_dir=tmp_path, progress=False)
    cpts = PRIOR.sample(GRAPH, 4, torch.Generator().manual_seed(1))
    ctx, q = sample(GRAPH, cpts, 15), sample(GRAPH, cpts, 3)
    with pytest.raises(BNError, match="call prepare"):
        est.fit(GRAPH, ctx)
    est.prepare(GRAPH, PRIOR, seed=2)
    assert est.name == "transformer_trained" and len(est.history_) == 3
    assert est.config(2).seed == 2
    probs = est.fit(GRAPH, ctx).predict_proba(q)
    assert len(probs) == 2 and all(p.shape == (4, 3, 2) for p in probs)
    assert all(torch.allclose(p.sum(-1), torch.ones(4, 3, dtype=torch.float64)) for p in probs)
    other = get_graph("tree-5")
    with pytest.raises(BNError, match="prepared for"):
        est.fit(other, sample(other, PRIOR.sample(other, 1), 3))
    with pytest.raises(BNError, match="unknown TrainConfig fields"):
        TrainedTransformer({"lr": 1e-3, "bogus": 1}).prepare(GRAPH, PRIOR)


# ----- diagnostics ------------------------------------------------------------

def reference_attention(attn: SelfAttention, x: torch.Tensor, n_context: int, full: bool) -> torch.Tensor:
    """The documented pattern as one plain masked softmax over the whole sequence (independent of the
    model's split into query rows and context rows): queries see the sink, the context and themselves;
    context rows see the sink and every context row ("full") or the sink and themselves ("self")."""
    B, L, D = x.shape
    H, n_seen = attn.n_head, 1 + n_context
    mask = torch.zeros(L, L, dtype=torch.bool)
    mask[:, 0] = True
    mask[torch.arange(L), torch.arange(L)] = True
    mask[n_seen:, :n_seen] = True
    if full:
        mask[:n_seen, :n_seen] = True
    q, k, v = (f(x).view(B, L, H, -1).transpose(1, 2) for f in (attn.q, attn.k, attn.v))
    scale = torch.full((H, 1, 1), 1 / math.sqrt(D // H))
    if attn.cfg.attn_scale != "fixed":
        scale = scale * attn.log_temp.exp()[:, None, None]
    if attn.cfg.attn_scale == "log_n":  # log of the number of keys a row sees (sink row: 2, as a context row)
        n_keys = mask.sum(-1).float().clamp_min(2)
        n_keys[0] = 2 if not full else n_keys[0]
        scale = scale * torch.log(n_keys)[None, :, None]
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
    if attn.null_key:
        scores = torch.cat([scores, scores.new_zeros(B, H, L, 1)], -1)
        v = torch.cat([v, v.new_zeros(B, H, 1, v.shape[-1])], 2)
    y = torch.softmax(scores, -1) @ v
    return attn.proj(y.transpose(1, 2).reshape(B, L, D))


@pytest.mark.parametrize("context_attention", ["full", "self"])
@pytest.mark.parametrize("variant", [dict(), dict(attention="softmax_1"), dict(attn_scale="learned"),
                                     dict(attn_scale="log_n")])
def test_attention_pattern_matches_a_plain_masked_softmax(context_attention, variant):
    torch.manual_seed(1)
    variant = {"attn_scale": "fixed", **variant}
    cfg = TransformerConfig(d_model=8, n_head=2, context_attention=context_attention, **variant)
    attn = SelfAttention(cfg)
    with torch.no_grad():
        for lin in (attn.q, attn.k, attn.v, attn.proj):
            lin.weight.normal_(0, 1), lin.bias.normal_(0, 0.3)
        if hasattr(attn, "log_temp"):
            attn.log_temp.copy_(torch.tensor([0.3, -0.2]))
    x = torch.randn(3, 1 + 6 + 4, 8)
    want = reference_attention(attn, x, 6, context_attention == "full")
    got = attn(x, n_context=6)
    if context_attention == "self" and cfg.attn_scale == "log_n":
        got, want = got[:, 7:], want[:, 7:]  # context rows scale by log 2 by design; queries must agree
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(attn(x, n_context=6, queries_only=True), attn(x, n_context=6)[:, 7:], atol=1e-6)
    out, w = attn(x, n_context=6, return_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-6)
    out.sum().backward()  # masked entries must not leak inf * 0 = nan into any gradient
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())


def test_query_answers_ignore_other_queries_and_context_order(short_run):
    _, model, _ = short_run
    cpts = PRIOR.sample(GRAPH, 2, torch.Generator().manual_seed(3))
    ctx, q = sample(GRAPH, cpts, 9), sample(GRAPH, cpts, 3)
    out = model(encode(GRAPH, ctx, q, range(2)), 9)
    alone = model(encode(GRAPH, ctx, q[:, :1], range(2)), 9)
    perm = model(encode(GRAPH, ctx[:, torch.randperm(9)], q, range(2)), 9)
    assert torch.allclose(out[:, :2], alone, atol=1e-5) and torch.allclose(out, perm, atol=1e-5)


def test_attention_to_parents_shares(short_run):
    _, model, _ = short_run
    cpts = PRIOR.sample(GRAPH, 4, torch.Generator().manual_seed(4))
    ctx, q = sample(GRAPH, cpts, 12), sample(GRAPH, cpts, 3)
    rows = attention_to_parents(model, GRAPH, ctx, q, layers=[0, 1, -1])
    # two blocks of two heads, then the mixture readout's single attention (the last layer)
    assert model.n_attention_layers == 3
    assert {(r["layer"], r["head"]) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)}
    for r in rows:
        total = r["match"] + r["other"] + r["sink"] + r["self"] + r["null"]
        assert total == pytest.approx(1.0, abs=1e-5)
        assert 0 < r["chance"] <= 1 and r["n_context"] == 12


# ----- recipe pieces -----------------------------------------------------------

def test_parents_view_shows_only_the_targets_parents():
    graph = get_graph("general-5")  # A, B roots; C <- {A, B}; D <- {A, C}; E <- D
    x = torch.tensor([[[1, 0, 1, 1, 0]]])
    prefix = encode(graph, x[:, :0], x, range(5))[0, 1:, :10]  # the one-hots of the 5 query tokens
    parents = encode(graph, x[:, :0], x, range(5), view="parents")[0, 1:, :10]
    onehot = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1, 1, 0], dtype=torch.float32)  # A=1 B=0 C=1 D=1 E=0
    blocks = {"A": slice(0, 2), "B": slice(2, 4), "C": slice(4, 6), "D": slice(6, 8)}
    want = {0: [], 1: [], 2: ["A", "B"], 3: ["A", "C"], 4: ["D"]}
    for m, shown in want.items():
        expected = torch.zeros(10)
        for name in shown:
            expected[blocks[name]] = onehot[blocks[name]]
        assert torch.equal(parents[m], expected), m
        assert torch.equal(prefix[m][: 2 * m], onehot[: 2 * m]) and not prefix[m][2 * m :].any()


def test_length_groups_split_the_batch_and_draw_their_own_lengths():
    cfg = tiny(batch_size=10, length_groups=4, n_context_max=500, context_sampling="uniform")
    from bncompare.transformer.train import group_sizes
    assert group_sizes(cfg) == [3, 3, 2, 2]
    model, history = train(GRAPH, PRIOR, tiny(batch_size=8, length_groups=4, n_context_max=500,
                                              context_sampling="uniform", steps=3), progress=False)
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    with pytest.raises(BNError, match="length_groups"):
        tiny(batch_size=2, length_groups=3)


def test_on_eval_sees_each_held_out_check_as_it_happens():
    seen = []
    _, history = train(GRAPH, PRIOR, tiny(steps=7, eval_every=3, eval_tasks=8, eval_lengths=(4,)),
                       progress=False, on_eval=lambda rec: seen.append(dict(rec)))
    assert [r["step"] for r in seen] == [0, 3, 6]
    assert all("eval_tv@4" in r and r["seconds"] >= 0 for r in seen)
    assert seen[-1]["eval_tv@4"] == history[-1]["eval_tv@4"]


def test_mixture_readout_is_a_mixture_of_the_targets_observed_values():
    """With a flat readout attention and a flat prior, the answer for node m is (count of each value of m
    among ALL context rows + 1/d) / (N + 1): the readout gathers the target's own slots, nothing else."""
    graph = Graph.from_edges(["A", "B", "C"], [("A", "B"), ("B", "C")], {"A": 2, "B": 3, "C": 2})
    cfg = TrainConfig(d_model=16, d_ff=32, output="mixture").model_config(graph)
    model = InContextTransformer(cfg, seed=0).eval()
    with torch.no_grad():
        for p in (model.readout.q.weight, model.readout.q.bias, model.readout.prior.weight, model.readout.prior.bias,
                  model.readout.gain.weight, model.readout.gain.bias):
            p.zero_()
    gen = torch.Generator().manual_seed(1)
    cpts = DirichletPrior(1.0).sample(graph, 2, gen)
    contexts, queries = sample(graph, cpts, 9, gen), sample(graph, cpts, 4, gen)
    with torch.no_grad():
        out = model(encode(graph, contexts, queries, range(3)), 9).reshape(2, 4, 3, -1)
    for m, d in enumerate(graph.cards):
        counts = torch.nn.functional.one_hot(contexts[..., m], d).sum(1).double()  # (2, d)
        want = (counts + 1 / d) / 10
        got = model.probabilities(out[:, :, m, :d]).double()
        assert torch.allclose(got, want[:, None].expand_as(got), atol=1e-5)
        assert (out[:, :, m, d:] < -60).all()  # a state the node does not have gets no mass


def test_match_scores_weigh_rows_by_the_values_they_share_with_the_query():
    """With the readout's q.k term off and a large gain on node B alone, the answer for C (whose query shows
    A and B) is the frequency of C among the context rows with the query's value of B: counting on B."""
    graph = Graph.from_edges(["A", "B", "C"], [("A", "B"), ("B", "C")], {"A": 2, "B": 3, "C": 2})
    cfg = TrainConfig(d_model=16, d_ff=32, match_scores=True).model_config(graph)
    model = InContextTransformer(cfg, seed=0).eval()
    with torch.no_grad():
        for p in (model.readout.q.weight, model.readout.q.bias, model.readout.gain.weight):
            p.zero_()
        model.readout.gain.bias.copy_(torch.tensor([0.0, 60.0, 0.0]))
    gen = torch.Generator().manual_seed(2)
    cpts = DirichletPrior(1.0).sample(graph, 3, gen)
    contexts, queries = sample(graph, cpts, 40, gen), sample(graph, cpts, 5, gen)
    with torch.no_grad():
        out = model(encode(graph, contexts, queries, [2]), 40)  # (3, 5, d_out): node C of each query
    same_b = (contexts[:, None, :, 1] == queries[:, :, None, 1]).double()  # (3, 5, 40)
    counts = same_b @ torch.nn.functional.one_hot(contexts[..., 2], 2).double()  # (3, 5, 2)
    seen = counts.sum(-1) > 0
    assert seen.any()
    want = counts / counts.sum(-1, keepdim=True)
    got = model.probabilities(out[..., :2]).double()
    assert torch.allclose(got[seen], want[seen], atol=1e-6)


def test_match_scores_need_the_mixture_readout():
    with pytest.raises(BNError, match="match_scores needs output='mixture'"):
        TrainConfig(match_scores=True, output="logits")


def test_trained_mixture_model_answers_are_its_training_probabilities(tmp_path):
    graph = get_graph("chain-5")
    cfg = TrainConfig(steps=5, batch_size=4, length_groups=2, d_model=16, d_ff=32, n_context_max=20, eval_every=0,
                      output="mixture")
    est = TrainedTransformer(cfg, cache_dir=tmp_path, progress=False)
    est.prepare(graph, DirichletPrior(1.0), 0)
    gen = torch.Generator().manual_seed(3)
    cpts = DirichletPrior(1.0).sample(graph, 3, gen)
    contexts, queries = sample(graph, cpts, 15, gen), sample(graph, cpts, 4, gen)
    probs = est.fit(graph, contexts).predict_proba(queries)
    tasks = make_tasks(graph, DirichletPrior(1.0), 3, 15, 4, gen)
    tasks.contexts, tasks.queries = contexts, queries
    want = query_log_probs(est.model_, graph, tasks, torch.device("cpu"), False).exp()
    for m, p in enumerate(probs):
        assert torch.allclose(p.sum(-1), torch.ones_like(p[..., 0]))
        assert torch.allclose(p.float(), want[:, :, m, : graph.cards[m]], atol=1e-5)


@pytest.mark.parametrize("settings, message", [
    ({"n_head": "abc"}, "model.n_head must be a whole number, got 'abc'"),
    ({"match_scores": 3}, "model.match_scores must be true or false, got 3"),
    ({"steps": 2.5}, "TrainConfig.steps must be a whole number, got 2.5"),
    ({"lr": "fast"}, "TrainConfig.lr must be a number, got 'fast'"),
    ({"steps": True}, "TrainConfig.steps must be a whole number, got True"),
])
def test_settings_of_the_wrong_type_are_one_line_errors(settings, message):
    with pytest.raises(BNError, match=re.escape(message)):
        TrainConfig.from_dict(settings)
