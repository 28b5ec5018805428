"""The structure-agnostic transformer: trained on random DAGs, never told the parents."""
import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.transformer.agnostic import StructureAgnosticTransformer, complete_graph_like
from bncompare.transformer.checkpoint import run_fingerprint

TINY = {"steps": 3, "eval_every": 0, "d_model": 16, "n_head": 2, "d_ff": 32, "n_context_max": 20, "batch_size": 4}


def test_one_training_task_serves_every_graph_of_the_same_layout():
    est = StructureAgnosticTransformer(TINY)
    keys = {run_fingerprint(*est.training_task(get_graph(name), DirichletPrior(1.0)), est.config(0))
            for name in ("chain-5", "tree-5", "general-5")}
    assert len(keys) == 1
    other = run_fingerprint(*est.training_task(get_graph("chain-7"), DirichletPrior(1.0)), est.config(0))
    assert other not in keys


def test_training_graph_is_complete_with_the_same_cardinalities():
    g = get_graph("survey")
    c = complete_graph_like(g)
    assert c.cards == g.cards and all(c.parents[m] == tuple(range(m)) for m in range(g.n_nodes))


def test_trains_fits_any_graph_of_the_layout_and_rejects_others(tmp_path, monkeypatch):
    import bncompare.transformer.checkpoint as ckpt

    est = StructureAgnosticTransformer(TINY, cache_dir=tmp_path, progress=False)
    est.prepare(get_graph("chain-5"), DirichletPrior(1.0), seed=0)
    entries = list((tmp_path / "transformer").iterdir())
    assert len(entries) == 1  # one trained model in the cache
    g = get_graph("tree-5")
    cpts = DirichletPrior(1.0).sample(g, 3, torch.Generator().manual_seed(0))
    x = sample(g, cpts, 10, torch.Generator().manual_seed(1))
    probs = est.fit(g, x).predict_proba(x[:, :4])
    assert all(torch.allclose(p.sum(-1), torch.ones_like(p[..., 0])) for p in probs)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached model")

    monkeypatch.setattr(ckpt, "train", no_training)
    again = StructureAgnosticTransformer(TINY, cache_dir=tmp_path, progress=False).prepare(g, DirichletPrior(1.0))
    assert list((tmp_path / "transformer").iterdir()) == entries
    assert all(torch.equal(a, b) for a, b in zip(again.model_.state_dict().values(), est.model_.state_dict().values()))
    with pytest.raises(BNError, match="cardinalities"):
        est.fit(get_graph("chain-5", card=3), torch.zeros(1, 2, 5, dtype=torch.long))
