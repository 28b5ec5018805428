"""The model cache: a bad entry is one log line and a retrain, never a traceback or a huge allocation."""
import json
import logging
import os
import pickle
import shutil

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks.families import get_graph
from bncompare.networks.priors import DirichletPrior
from bncompare.transformer import checkpoint as ckpt
from bncompare.transformer.checkpoint import load_checkpoint, trained_model
from bncompare.transformer.train import TrainConfig

GRAPH, PRIOR = get_graph("chain-2"), DirichletPrior(1.0)
CFG = TrainConfig(d_model=16, n_head=2, d_ff=32, n_layer=1, batch_size=8, n_context_max=20, n_queries=4,
                  warmup=2, min_lr_ratio=0.1, eval_every=0, steps=3)


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    trained_model(GRAPH, PRIOR, CFG, cache_dir=cache, progress=False)
    (folder,) = (cache / "transformer").iterdir()
    return folder


def _rehash(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta["weights_sha256"] = ckpt._sha256(folder / "model.pt")  # the attacker matches the hash
    (folder / "config.json").write_text(json.dumps(meta))


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/bncompare_pickle_ran",))


def _pickle_payload(folder):
    with open(folder / "model.pt", "wb") as f:
        pickle.dump(Payload(), f)
    _rehash(folder)


def _huge_d_model(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["d_model"] = 65536
    (folder / "config.json").write_text(json.dumps(meta))


DAMAGE = {
    "config_list": lambda f: (f / "config.json").write_text("[1, 2, 3]"),
    "config_null": lambda f: (f / "config.json").write_text("null"),
    "weights_empty": lambda f: ((f / "model.pt").write_bytes(b""), _rehash(f)),
    "weights_garbage": lambda f: ((f / "model.pt").write_bytes(os.urandom(300)), _rehash(f)),
    "weights_pickle": _pickle_payload,
    "huge_d_model": _huge_d_model,
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_bad_entry_is_one_line_and_retrained(entry, tmp_path, caplog, damage):
    folder = tmp_path / "transformer" / entry.name
    shutil.copytree(entry, folder)
    DAMAGE[damage](folder)
    with pytest.raises(BNError) as err:
        load_checkpoint(folder, GRAPH)
    assert "\n" not in str(err.value)
    with caplog.at_level(logging.WARNING):
        model, history = trained_model(GRAPH, PRIOR, CFG, cache_dir=tmp_path, progress=False)
    assert any("training again" in r.getMessage() for r in caplog.records)
    assert len(history) == CFG.steps
    assert load_checkpoint(folder, GRAPH)[1]["cache_key"]  # rewritten, good again
    assert not os.path.exists("/tmp/bncompare_pickle_ran")


def test_huge_config_is_refused_before_allocating(entry, tmp_path):
    folder = tmp_path / "e"
    shutil.copytree(entry, folder)
    _huge_d_model(folder)
    with pytest.raises(BNError, match="describes a model of .* MB but model.pt holds"):
        load_checkpoint(folder, GRAPH)


def test_unwritable_cache_is_found_before_training(read_only_dir, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained before finding out the cache is not writable")

    monkeypatch.setattr(ckpt, "train", no_training)
    with pytest.raises(BNError, match="cannot write to the model cache .*BNCOMPARE_CACHE"):
        trained_model(GRAPH, PRIOR, CFG, cache_dir=read_only_dir, progress=False)


def test_weights_only_is_kept():
    import inspect

    assert "weights_only=True" in inspect.getsource(load_checkpoint)
    assert torch.load.__module__.startswith("torch")


# ----- the whole entry: the kept steps are part of it ---------------------------------------------------------

STEPPED = TrainConfig(**{**CFG.to_dict(), "steps": 4, "seed": 0})  # keeps the weights after 1, 2 and 3 steps


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    cache = tmp_path_factory.mktemp("stepped")
    trained_model(GRAPH, PRIOR, STEPPED, cache_dir=cache, progress=False)
    (folder,) = (cache / "transformer").iterdir()
    assert sorted(p.name for p in (folder / "steps").iterdir()) == ["1", "2", "3"]
    return folder


def _damage_step(folder):
    (folder / "steps" / "2" / "model.pt").write_bytes(os.urandom(200))


def _lose_steps(folder):  # the entry deleted while training: only the steps written after that are left
    shutil.rmtree(folder / "steps" / "1")
    shutil.rmtree(folder / "steps" / "2")


def _foreign_step(folder):
    meta = json.loads((folder / "steps" / "3" / "config.json").read_text())
    meta["cache_key"] = "0" * 64
    (folder / "steps" / "3" / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, said", [(_damage_step, "steps/2 is incomplete"), (_lose_steps, "after 1 steps"),
                                          (_foreign_step, "belongs to another training")])
def test_a_bad_kept_step_rebuilds_the_entry(stepped, tmp_path, caplog, damage, said):
    from bncompare.transformer.checkpoint import model_at_step

    folder = tmp_path / "transformer" / stepped.name
    shutil.copytree(stepped, folder)
    damage(folder)
    with caplog.at_level(logging.WARNING):
        trained_model(GRAPH, PRIOR, STEPPED, cache_dir=tmp_path, progress=False)
    (line,) = [r.getMessage() for r in caplog.records if "bad model cache entry" in r.getMessage()]
    assert said in line and "training again" in line and "\n" not in line
    for step in (1, 2, 3):  # every kept step loads again, and is the same training's
        fresh = model_at_step(GRAPH, PRIOR, STEPPED, step, cache_dir=tmp_path)
        kept = load_checkpoint(stepped / "steps" / str(step), GRAPH)[0]
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), kept.state_dict().values()))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        trained_model(GRAPH, PRIOR, STEPPED, cache_dir=tmp_path, progress=False)  # sound now: loaded, not trained
    assert not any("training" in r.getMessage() for r in caplog.records)


def test_identical_trainings_write_identical_bytes(entry, tmp_path):
    """The weights file does not carry its temporary name (torch names the zip's inner folder after the file)."""
    trained_model(GRAPH, PRIOR, CFG, cache_dir=tmp_path, progress=False)
    (again,) = (tmp_path / "transformer").iterdir()
    assert (again / "model.pt").read_bytes() == (entry / "model.pt").read_bytes()
    sha = [json.loads((f / "config.json").read_text())["weights_sha256"] for f in (again, entry)]
    assert sha[0] == sha[1]  # (the rest of config.json records training seconds, which differ)
