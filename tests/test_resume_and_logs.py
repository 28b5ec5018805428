"""Resumable training, training logs, portable and versioned checkpoints (all in-process, tiny sizes)."""
import csv
import json
import logging

import pytest
import torch

from bncompare.errors import BNError
from bncompare.networks import DirichletPrior, get_graph
from bncompare.transformer import checkpoint as ckpt
from bncompare.transformer import snapshot
from bncompare.transformer.checkpoint import load_checkpoint, save_checkpoint, trained_model
from bncompare.transformer.distributed import rank_groups
from bncompare.transformer.train import STREAM_TASKS, TrainConfig, TrainRun, group_sizes, stream_seed, train
from bncompare.transformer.trainlog import LOG_CSV, columns, tensorboard_available

GRAPH, PRIOR = get_graph("chain-3"), DirichletPrior(1.0)
CFG = TrainConfig(d_model=16, n_head=2, d_ff=32, n_layer=1, batch_size=8, length_groups=2, n_context_max=12,
                  n_queries=3, warmup=3, min_lr_ratio=0.1, eval_every=5, eval_tasks=8, eval_lengths=(2, 12), steps=14)


class Killed(Exception):
    """Stands in for a kill: raised from inside the training loop."""


def kill_at(step):
    def hook(rec):
        if rec["step"] == step:
            raise Killed(step)
    return hook


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_clock(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "train_seconds")} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    model, history = train(GRAPH, PRIOR, CFG, progress=False, run=TrainRun(folder, checkpoint_every=4))
    return folder, model, history


def test_killed_run_resumes_to_the_same_weights(tmp_path, uninterrupted):
    _, straight, history = uninterrupted
    run = TrainRun(tmp_path, checkpoint_every=4, on_step=kill_at(9))
    with pytest.raises(Killed):
        train(GRAPH, PRIOR, CFG, progress=False, run=run)
    assert torch.load(tmp_path / snapshot.STATE, weights_only=True)["step"] == 8  # the last snapshot: after step 7
    resumed_at = []
    model, history2 = train(GRAPH, PRIOR, CFG, progress=False,
                            run=TrainRun(tmp_path, checkpoint_every=4, on_step=lambda r: resumed_at.append(r["step"])))
    assert resumed_at[0] == 8  # it did not start over
    assert same_weights(model, straight)
    assert without_clock(history2) == without_clock(history)
    rows = list(csv.DictReader(open(tmp_path / LOG_CSV)))
    assert [int(r["step"]) for r in rows] == list(range(CFG.steps))  # steps 8 and 9 of the killed run, once each


def test_snapshot_is_plain_data_and_holds_every_state(uninterrupted):
    folder, _, _ = uninterrupted
    blob = torch.load(folder / snapshot.STATE, weights_only=True)  # no pickled objects
    assert blob["step"] == 12 and blob["processes"] == 1 and blob["generators"].dtype == torch.uint8
    assert set(blob["optimizer"]) == {"state", "param_groups"} and blob["optimizer"]["state"]  # AdamW moments
    assert len(json.loads(blob["history"])) == 12


def test_snapshot_of_another_process_count_is_one_line(tmp_path, uninterrupted):
    folder, _, _ = uninterrupted
    blob = torch.load(folder / snapshot.STATE, weights_only=True)
    blob["generators"] = torch.cat([blob["generators"]] * 2)
    torch.save(blob, tmp_path / snapshot.STATE)
    with pytest.raises(BNError, match="written by 2 process.*this run has 1"):
        train(GRAPH, PRIOR, CFG, progress=False, run=TrainRun(tmp_path))


@pytest.mark.parametrize("damage", ["garbage", "other_config"])
def test_bad_snapshot_is_logged_and_training_starts_over(tmp_path, uninterrupted, caplog, damage):
    folder, straight, _ = uninterrupted
    if damage == "garbage":
        (tmp_path / snapshot.STATE).write_bytes(b"not a snapshot")
        cfg = CFG
    else:  # a snapshot of the same steps of another config: never resumed
        (tmp_path / snapshot.STATE).write_bytes((folder / snapshot.STATE).read_bytes())
        cfg = TrainConfig(**{**CFG.to_dict(), "lr": 1e-2})
    with caplog.at_level(logging.WARNING):
        model, history = train(GRAPH, PRIOR, cfg, progress=False, run=TrainRun(tmp_path))
    assert len(history) == cfg.steps and "training snapshot" in caplog.text
    if damage == "garbage":
        assert same_weights(model, straight)


def test_cache_training_resumes_and_drops_its_snapshot(tmp_path):
    cfg = TrainConfig(**{**CFG.to_dict(), "eval_every": 0})
    with pytest.raises(Killed):
        trained_model(GRAPH, PRIOR, cfg, tmp_path, progress=False, run=TrainRun(checkpoint_every=3,
                                                                                on_step=kill_at(5)))
    entry = ckpt.cache_entry(GRAPH, PRIOR, cfg, tmp_path)
    assert (entry / snapshot.STATE).is_file() and not (entry / ckpt.CONFIG).is_file()
    model, history = trained_model(GRAPH, PRIOR, cfg, tmp_path, progress=False)  # the study's call resumes it
    assert not (entry / snapshot.STATE).exists() and (entry / ckpt.CONFIG).is_file()
    straight, _ = train(GRAPH, PRIOR, cfg, progress=False)
    assert same_weights(model, straight)
    meta = json.loads((entry / ckpt.CONFIG).read_text())
    assert meta["processes"] == 1 and meta["format"] == ckpt.CHECKPOINT_FORMAT and meta["bncompare"]


def test_second_process_waits_for_the_one_training_then_loads(tmp_path, monkeypatch):
    import fcntl
    import os
    import threading

    cfg = TrainConfig(**{**CFG.to_dict(), "eval_every": 0, "steps": 3})
    model, history = train(GRAPH, PRIOR, cfg, progress=False)
    entry = ckpt.cache_entry(GRAPH, PRIOR, cfg, tmp_path)
    entry.mkdir(parents=True)
    fd = os.open(entry / ckpt.TRAIN_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" is training this model
    got = {}
    waiting = threading.Thread(target=lambda: got.update(r=trained_model(GRAPH, PRIOR, cfg, tmp_path, progress=False)))
    waiting.start()
    waiting.join(1.0)
    assert waiting.is_alive() and not (entry / LOG_CSV).exists()  # it waits instead of training too
    key, signature = ckpt.run_fingerprint(GRAPH, PRIOR, cfg), ckpt.graph_signature(GRAPH)
    for step in ckpt.kept_steps(cfg):  # what that process's training keeps along the way (the entry is whole)
        save_checkpoint(entry / ckpt.STEPS / str(step), model, {"cache_key": key, "graph": signature, "step": step})
    save_checkpoint(entry, model, {"cache_key": key, "graph": signature, "history": history})
    monkeypatch.setattr(ckpt, "train", lambda *a, **k: pytest.fail("trained a model another process had trained"))
    os.close(fd)  # that process is done
    waiting.join(30)
    assert same_weights(got["r"][0], model) and got["r"][1] == history


# ----- the global batch over processes ------------------------------------------------------------

def test_one_process_keeps_the_single_process_split_and_stream():
    for b, k in [(16, 4), (7, 3), (5, 1)]:
        cfg = TrainConfig(batch_size=b, length_groups=k)
        assert rank_groups(b, k, 0, 1) == group_sizes(cfg)
    assert stream_seed(3, STREAM_TASKS, 0) == stream_seed(3, STREAM_TASKS)
    assert len({stream_seed(3, STREAM_TASKS, r) for r in range(4)}) == 4


@pytest.mark.parametrize("batch, groups, world", [(16, 4, 2), (16, 3, 2), (16, 2, 4), (9, 4, 3), (4, 1, 4)])
def test_processes_share_the_global_batch(batch, groups, world):
    parts = [rank_groups(batch, groups, r, world) for r in range(world)]
    assert sum(map(sum, parts)) == batch and all(parts) and all(min(p) >= 1 for p in parts)
    assert sum(map(len, parts)) == max(groups, world)  # one context length per group


def test_global_batch_smaller_than_the_process_count_is_one_line():
    with pytest.raises(BNError, match="batch_size=2 is the global batch.*process count \\(4\\)"):
        rank_groups(2, 1, 0, 4)


# ----- the training log ----------------------------------------------------------------------------

def test_log_csv_has_every_scalar_and_lines_go_to_the_log(uninterrupted, caplog, tmp_path):
    folder, _, history = uninterrupted
    rows = list(csv.DictReader(open(folder / LOG_CSV)))
    assert list(rows[0]) == columns(CFG.eval_lengths) and len(rows) == CFG.steps
    for key in ("loss", "bayes_loss", "lr", "steps_per_s", "seconds"):
        assert all(float(r[key]) > 0 for r in rows[1:]), key
    evals = [r for r in rows if r["eval_tv"]]
    assert [int(r["step"]) for r in evals] == [0, 5, 10, 13] and all(float(r["eval_tv@12"]) > 0 for r in evals)
    assert float(rows[3]["loss"]) == pytest.approx(history[3]["loss"], rel=1e-5)
    # stderr is no terminal under pytest: a plain line every log_every steps (and at each held-out check)
    with caplog.at_level(logging.INFO, logger="bncompare.transformer.train"):
        train(GRAPH, PRIOR, CFG, progress=True, run=TrainRun(tmp_path, log_every=4))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["0/14", "4/14", "5/14", "8/14", "10/14", "12/14", "13/14"]
    assert "steps/s" in lines[1] and "held-out TV" in lines[2] and "bayes" in lines[1]
    start = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training on")]
    assert start and "batch 8" in start[0] and "lr 0.003" in start[0]


def test_tensorboard_events_when_installed(tmp_path):
    if not tensorboard_available():
        pytest.skip("tensorboard is not installed (optional)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(GRAPH, PRIOR, CFG, progress=False, run=TrainRun(tmp_path))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "bayes_loss", "lr", "eval_tv", "steps_per_s"} <= tags
    assert len(acc.Scalars("loss")) == CFG.steps


# ----- portable, versioned checkpoints -----------------------------------------------------------

@pytest.fixture
def saved(tmp_path, uninterrupted):
    _, model, _ = uninterrupted
    save_checkpoint(tmp_path / "ck", model, {"graph": ckpt.graph_signature(GRAPH)})
    return tmp_path / "ck", model


def test_cuda_checkpoint_loads_on_a_cpu_only_machine(saved, monkeypatch):
    """Weights written from CUDA tensors (the storage location is recorded as cuda:0) load here."""
    folder, model = saved
    real_tag = torch.serialization.location_tag
    monkeypatch.setattr(torch.serialization, "location_tag", lambda s: "cuda:0")
    torch.save(model.state_dict(), folder / ckpt.WEIGHTS)
    monkeypatch.setattr(torch.serialization, "location_tag", real_tag)
    meta = json.loads((folder / ckpt.CONFIG).read_text())
    meta["weights_sha256"] = ckpt._sha256(folder / ckpt.WEIGHTS)
    (folder / ckpt.CONFIG).write_text(json.dumps(meta))
    if not torch.cuda.is_available():  # the file really names CUDA: a plain load fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(folder / ckpt.WEIGHTS, weights_only=True)
    loaded, _ = load_checkpoint(folder, GRAPH)
    assert same_weights(loaded, model) and next(loaded.parameters()).device.type == "cpu"


def _edit_meta(folder, **changes):
    meta = json.loads((folder / ckpt.CONFIG).read_text())
    for k, v in changes.items():
        if k.startswith("model."):
            meta["model"][k[6:]] = v
        else:
            meta[k] = v
    (folder / ckpt.CONFIG).write_text(json.dumps(meta))


@pytest.mark.parametrize("change, expect", [
    ({"format": 99, "bncompare": "9.0.0"}, "written by bncompare 9.0.0 in checkpoint format 99; this bncompare"),
    ({"model.qk_init": 0.5, "bncompare": "0.0.9"}, "written by bncompare 0.0.9, whose model has settings this "
                                                    "bncompare .* does not know: \\['qk_init'\\]"),
    ({"model.d_ff": 48, "bncompare": "0.0.8"}, "weights do not fit .*has shape.*written by bncompare 0.0.8"),
])
def test_checkpoint_from_another_version_says_why(saved, change, expect):
    folder, _ = saved
    _edit_meta(folder, **change)
    with pytest.raises(BNError, match=expect) as err:
        load_checkpoint(folder, GRAPH)
    assert "\n" not in str(err.value)


def test_checkpoint_without_version_fields_still_loads(saved):
    """What bncompare wrote before it recorded versions loads as before."""
    folder, model = saved
    meta = json.loads((folder / ckpt.CONFIG).read_text())
    for k in ("format", "bncompare", "torch"):
        meta.pop(k)
    (folder / ckpt.CONFIG).write_text(json.dumps(meta))
    assert same_weights(load_checkpoint(folder, GRAPH)[0], model)
