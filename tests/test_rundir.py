"""The run directory module: names kept as text, damaged files named, each cell read once, one loaded-run class,
the graph as plain data, and a folder lock that names its holder and dies with it."""
import gzip
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from bncompare import rundir
from bncompare.errors import BNError
from bncompare.networks.families import get_graph
from bncompare.networks.graph import Graph
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.store import OUTPUTS

COUNTING = ["graph=chain-5", "estimators=counting", "episodes=16", "context_lens=[2,20]", "queries=2",
            "progress=false", "report=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return run_study(compose(COUNTING), tmp_path_factory.mktemp("rundir") / "run")


def test_graph_to_dict_is_graph_json_and_round_trips():
    # parents listed out of node order: the CPT layout follows the given order, and so must the record
    g = Graph.from_edges(["A", "B", "C"], [("A", "C"), ("B", "C")], [2, 3, 2], {"C": ["B", "A"]})
    assert g.to_dict() == {"names": ["A", "B", "C"], "cards": [2, 3, 2], "parents": [[], [], ["B", "A"]]}
    for graph in (g, get_graph("general-7"), get_graph("tree-7", card=3)):
        assert Graph.from_dict(graph.to_dict()) == graph


def test_graph_json_of_a_run_is_its_graph(finished):
    assert rundir.read_json(finished / rundir.GRAPH) == get_graph("chain-5").to_dict()


def test_names_stay_text(tmp_path):
    # a node called NA, an estimator called 1, a metric called nan: names, never numbers or missing values
    frame = pd.DataFrame({"graph": ["g", "g"], "seed": [0, 0], "estimator": ["1", "mle"], "context_len": [2, 2],
                          "node": ["NA", "all"], "metric": ["nan", "cond_tv"], "mean": [0.5, float("inf")],
                          "sem": [float("nan"), 0.1], "n": [3, 3]})
    path = rundir.write_table(tmp_path / rundir.RESULTS, frame)
    back = rundir.read_results(path)
    assert list(back["estimator"]) == ["1", "mle"] and list(back["node"]) == ["NA", "all"]
    assert list(back["metric"]) == ["nan", "cond_tv"]
    assert back["mean"].iloc[1] == float("inf") and pd.isna(back["sem"].iloc[0])
    gz = rundir.write_table(tmp_path / "cell.csv.gz", frame[["seed", "node", "metric", "mean"]].set_axis(
        rundir.CELL_COLUMNS, axis=1))
    assert list(rundir.read_cell(gz)["node"]) == ["NA", "all"]


@pytest.mark.parametrize("name, text, expect", [
    (rundir.META, "[1, 2]", "is damaged (not a JSON object)"),
    (rundir.TRUTH, '{"kind": ', "is damaged ("),
    (rundir.CONFIG, "a: [1, 2\n", "is damaged ("),
    (rundir.CONFIG, "- 1\n- 2\n", "is damaged (not a mapping of settings)"),
])
def test_damaged_json_and_yaml_are_named(tmp_path, name, text, expect):
    path = tmp_path / name
    path.write_text(text)
    reader = rundir.read_config if name == rundir.CONFIG else rundir.read_json
    with pytest.raises(rundir.DamagedFile) as e:
        reader(path)
    assert str(path) in str(e.value) and expect in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, BNError)
    assert reader(tmp_path / "missing") == {}


@pytest.mark.parametrize("data, expect", [(b"", "is not a cell file"), (gzip.compress(b"a,b\n1,2\n"), "has columns"),
                                          (gzip.compress(b"episode,node,metric,value\n"), "has no rows"),
                                          (b"\x1f\x8b\x08garbage", "is not a cell file")])
def test_damaged_cell_is_named(tmp_path, data, expect):
    path = tmp_path / rundir.cell_name("mle", 2, "abc")
    path.write_bytes(data)
    with pytest.raises(rundir.DamagedFile, match=expect):
        rundir.read_cell(path)


def test_each_finished_cell_is_read_once(finished, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "run"
    shutil.copytree(finished, work, ignore=shutil.ignore_patterns(".bncompare.*"))
    reads = []
    real = rundir.read_cell
    monkeypatch.setattr(rundir, "read_cell", lambda path: reads.append(path.name) or real(path))
    run_study(compose(COUNTING), work)  # everything is done and the tables are current: no cell is parsed
    assert reads == []
    (work / OUTPUTS).unlink()  # no record of what the tables came from: a resume reads the cells, computes none
    run_study(compose(COUNTING), work)
    cells = sorted(p.name for p in (work / rundir.CELLS).glob("*.csv.gz"))
    assert sorted(reads) == cells and len(cells) == 2 * 5  # 5 counting estimators at 2 lengths, each read once
    assert rundir.read_results(work / rundir.RESULTS).equals(rundir.read_results(finished / rundir.RESULTS))
    reads.clear()
    run_study(compose(COUNTING), tmp_path / "fresh")  # a new run computes every cell and reads none back
    assert reads == []


def test_one_class_for_a_loaded_run(finished):
    from bncompare.reports.compare import single_run
    from bncompare.reports.data import Run, load, read_run

    run = read_run(finished)
    assert isinstance(run, Run) and (run.graph, run.seed, run.study) == ("chain-5", 0, "default")
    assert run.dag == get_graph("chain-5") and set(run.estimators) == set(run.results["estimator"])
    assert isinstance(single_run(finished), Run) and isinstance(load(finished).runs[0], Run)


def test_the_folder_lock_names_its_holder_and_dies_with_it(tmp_path):
    from bncompare.files import lock_dir

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from bncompare.files import lock_dir
        lock_dir({str(out)!r}, "the holding test process")
        print("locked", flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BNError) as e:
            lock_dir(out)
        assert f"pid {holder.pid}" in str(e.value) and "the holding test process" in str(e.value)
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        holder.wait(timeout=30)
    assert lock_dir(out) == out.resolve()  # free again; this process now holds it
    assert lock_dir(out) == out.resolve()  # and taking it twice is a no-op


@pytest.mark.parametrize("text", ['{"names": ["A", "B"]}', '{"names": ["A"], "cards": [2], "parents": [["A"]]}'])
def test_a_damaged_graph_json_is_one_line(finished, tmp_path, text):
    import shutil

    from bncompare.reports.data import read_run

    work = tmp_path / "run"
    shutil.copytree(finished, work, ignore=shutil.ignore_patterns(".bncompare.*"))
    (work / rundir.GRAPH).write_text(text)
    with pytest.raises(BNError, match="graph.json is damaged") as e:
        read_run(work)
    assert "\n" not in str(e.value)
