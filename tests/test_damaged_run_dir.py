"""Damaged run folders: a damaged cell is named and recomputed, other damaged files are rewritten."""
import gzip
import json
import logging

import pandas as pd
import pytest

from bncompare.reports.data import load_run, read_results
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study

COUNTING = ["graph=chain-5", "estimators=counting", "episodes=32",
            "context_lens=[2,20]", "queries=4", "progress=false", "report=false"]


def numbers(out):
    r = read_results(out / "results.csv")
    r = r[~r["metric"].str.contains("seconds")]
    return r.sort_values(["estimator", "context_len", "node", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "run"
    run_study(compose(COUNTING), out)
    return out


def _copy(finished, tmp_path):
    import shutil

    work = tmp_path / "run"
    shutil.copytree(finished, work, ignore=shutil.ignore_patterns(".bncompare.lock"))
    return work


def _random_bytes(path):
    path.write_bytes(bytes(range(256)) * 3)


def _half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_columns(path):
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b""), _half, _random_bytes, _wrong_columns],
                         ids=["empty", "half", "random", "wrong_columns"])
def test_damaged_cell_is_named_and_recomputed(finished, tmp_path, caplog, damage):
    work = _copy(finished, tmp_path)
    cell = sorted((work / "cells").glob("*.csv.gz"))[1]
    damage(cell)
    with caplog.at_level(logging.WARNING):
        run_study(compose(COUNTING), work)
    assert any(cell.name in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
    last = json.loads((work / "meta.json").read_text())["runs"][-1]
    assert last["cells_computed"] == 1
    pd.testing.assert_frame_equal(numbers(work), numbers(finished))  # same seed, same numbers


@pytest.mark.parametrize("text", ['{"runs": [{"star', "[1, 2, 3]", "null", '{"runs": 5}'])
def test_damaged_meta_is_rewritten(finished, tmp_path, text):
    work = _copy(finished, tmp_path)
    (work / "meta.json").write_text(text)
    run_study(compose(COUNTING), work)
    meta = json.loads((work / "meta.json").read_text())
    assert meta["runs"][-1]["cells_computed"] == 0 and meta["graph"] == "chain-5"


def test_damaged_training_history_is_rewritten(tmp_path, caplog):
    cfg = compose(["study=smoke", "graph=chain-5", "context_lens=[2]", "progress=false", "report=false"])
    cfg["estimators"] = {k: cfg["estimators"][k] for k in ("bayes", "trained")}
    cfg["tv_reference"] = None
    out = run_study(cfg, tmp_path / "run")
    history = out / "extras" / "history_trained.csv"
    good = pd.read_csv(history)
    history.write_bytes(b"\x00\xff garbage \x13\n\x01,\x02,\x03\n")
    with caplog.at_level(logging.WARNING):
        run_study(cfg, out)
    assert any("history_trained.csv" in r.getMessage() for r in caplog.records)
    pd.testing.assert_frame_equal(pd.read_csv(history), good)
    assert "trained" in load_run(out)[0].histories


def test_stale_cells_beside_a_damaged_cell_and_meta_are_logged_as_ignored(finished, tmp_path, caplog):
    # Two stale cell files (another run's keys), a damaged cell and a damaged meta.json: only the damaged cell is
    # computed, and the log says no more than that (the stale files are ignored, untouched).
    work = _copy(finished, tmp_path)
    cells = sorted((work / "cells").glob("*.csv.gz"))
    stale = [work / "cells" / (c.name.rsplit("__", 1)[0] + "__000000000000.csv.gz") for c in cells[:2]]
    for c, s in zip(cells, stale):
        s.write_bytes(c.read_bytes())
    _half(cells[2])
    (work / "meta.json").write_text('{"runs": 5}')
    before = {s: s.read_bytes() for s in stale}
    with caplog.at_level(logging.INFO, logger="bncompare"):
        run_study(compose(COUNTING), work)
    assert json.loads((work / "meta.json").read_text())["runs"][-1]["cells_computed"] == 1
    assert {s: s.read_bytes() for s in stale} == before
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "computed again" in m and "damaged cell file" not in m], said
    assert any("2 stale cell files" in m and "ignored" in m and "cells computed now: 1" in m for m in said), said
