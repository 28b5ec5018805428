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
