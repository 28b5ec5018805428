"""graph=file reads every format pgmpy writes, and a study takes a network object from Python."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bncompare.errors import BNError
from bncompare.networks import load_network, to_pgmpy
from bncompare.networks.io import load_file

DOCS = Path(__file__).resolve().parents[1] / "docs" / "own_network.md"
TINY = ["study=smoke", "estimators=counting", "context_lens=[2]", "report=false"]


def write(net, path: Path) -> Path:
    from pgmpy.readwrite import NETWriter, UAIWriter, XMLBIFWriter

    writer = {".xmlbif": XMLBIFWriter, ".uai": UAIWriter, ".net": NETWriter}[path.suffix]
    writer(to_pgmpy(net)).write(str(path))
    return path


@pytest.mark.parametrize("suffix", [".xmlbif", ".uai", ".net"])
def test_pgmpy_formats_load_the_same_network(tmp_path, suffix):
    asia = load_network("asia")
    got = load_file(write(asia, tmp_path / f"asia{suffix}"))

    def tables(net):  # UAI keeps no names and may reorder parents: compare every table's entries as a multiset
        return sorted((c.shape, tuple(np.round(np.sort(c, axis=None), 6))) for c in net.cpts)

    assert got.graph.n_nodes == asia.graph.n_nodes and len(got.graph.edges) == len(asia.graph.edges)
    assert tables(got) == tables(asia)
    if suffix != ".uai":
        assert sorted(got.graph.edges) == sorted(asia.graph.edges)


@pytest.mark.parametrize("name, text, match", [
    ("huge.uai", "BAYES\n1\n1000000000000000000\n1\n1 0\n\n2\n0.5 0.5\n", "above the limit"),
    ("bad.xdsl", "<smile>", "could not parse XDSL"),
    ("net.txt", "", "use one of"),
])
def test_bad_files_in_other_formats_are_one_line(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(BNError, match=match):
        load_file(tmp_path / name)


def test_a_fifo_in_another_format_is_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "net.uai")
    with pytest.raises(BNError, match="not a regular file"):
        load_file(tmp_path / "net.uai")


def run(tmp_path, *overrides):
    done = subprocess.run([sys.executable, "-m", "bncompare.studies.run", *TINY, f"out_dir={tmp_path / 'out'}",
                           *overrides], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_csv(tmp_path / "out" / "results.csv")


@pytest.mark.parametrize("suffix", [".xmlbif", ".uai"])
def test_an_xmlbif_and_a_uai_file_run_in_a_study(tmp_path, suffix):
    path = write(load_network("asia"), tmp_path / f"asia{suffix}")
    results = run(tmp_path, "graph=file", f"graph.options.path={path}")
    assert set(results["graph"]) == {"file-asia"} and len(results)


def test_a_pgmpy_model_runs_in_a_study_from_python(tmp_path):
    from bncompare.studies.run import compose
    from bncompare.studies.runner import run_study

    model = to_pgmpy(load_network("cancer"))
    out = run_study(compose(TINY), tmp_path / "out", network=model)
    results = pd.read_csv(out / "results.csv")
    assert set(results["graph"]) == {"file-network"}
    assert set(results["node"]) >= {"Pollution", "Smoker", "Cancer", "all"}


def test_the_docs_yaml_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    commands = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks and "graph=file graph.options.path=my.bif" in commands[0]
    for i, block in enumerate(blocks):
        (tmp_path / f"my{i}.yaml").write_text(block)
        results = run(tmp_path / str(i), "graph=file", f"graph.options.path={tmp_path / f'my{i}.yaml'}")
        assert len(results)
