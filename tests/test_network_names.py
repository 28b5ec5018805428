"""Node names that results use for something else are refused in one line, in every reader."""
import subprocess
import sys

import pytest

from bncompare.errors import BNError
from bncompare.networks.graph import OVERALL, RESERVED_NAMES, Graph
from bncompare.networks.io import load_bif, load_spec

SPEC = (f"nodes:\n  Rain: {{states: [no, yes], cpt: [[0.8, 0.2]]}}\n"
        f"  {OVERALL}: {{parents: [Rain], cpt: [[0.9, 0.1], [0.2, 0.8]]}}\n")
BIF = f"""network rain {{ }}
variable Rain {{ type discrete [ 2 ] {{ no, yes }}; }}
variable {OVERALL} {{ type discrete [ 2 ] {{ dry, wet }}; }}
probability ( Rain ) {{ table 0.8, 0.2; }}
probability ( {OVERALL} | Rain ) {{ (no) 0.9, 0.1; (yes) 0.2, 0.8; }}
"""


def test_the_overall_name_is_reserved():
    assert OVERALL == "all" and OVERALL in RESERVED_NAMES
    with pytest.raises(BNError, match="node name 'all' is reserved"):
        Graph.from_edges(["A", OVERALL], [("A", OVERALL)])


def test_every_reader_refuses_a_reserved_node_name(tmp_path):
    (tmp_path / "net.yaml").write_text(SPEC)
    with pytest.raises(BNError, match="reserved"):
        load_spec(tmp_path / "net.yaml")
    with pytest.raises(BNError, match="reserved"):
        load_bif(BIF)


@pytest.mark.parametrize("truth", ["bundled", "prior"])
def test_a_study_refuses_a_node_named_all_in_one_line(tmp_path, truth):
    (tmp_path / "net.yaml").write_text(SPEC)
    done = subprocess.run(
        [sys.executable, "-m", "bncompare.studies.run", "graph=file", f"graph.options.path={tmp_path / 'net.yaml'}",
         f"graph.options.truth={truth}", "study=smoke", "estimators=counting", "context_lens=[2]", "report=false",
         f"out_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "reserved" in lines[0], done.stderr
