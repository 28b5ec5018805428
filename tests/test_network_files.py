"""Network files that could load as the wrong network: every bad file is a one-line BNError, never a guess."""
import gzip

import pytest

from bncompare.errors import BNError
from bncompare.networks.graph import Graph
from bncompare.networks.io import load_bif, load_spec

BIF = """network rain { }
variable Rain { type discrete [ 2 ] { no, yes }; }
variable Wet { type discrete [ 2 ] { dry, wet }; }
probability ( Rain ) { table 0.8, 0.2; }
probability ( Wet | Rain ) { (no) 0.9, 0.1; (yes) 0.2, 0.8; }
"""


def test_a_good_bif_file_and_text_load(tmp_path):
    (tmp_path / "rain.bif").write_text(BIF)
    (tmp_path / "rain.bif.gz").write_bytes(gzip.compress(BIF.encode()))
    for source in (BIF, tmp_path / "rain.bif", str(tmp_path / "rain.bif"), tmp_path / "rain.bif.gz"):
        assert load_bif(source).graph.names == ("Rain", "Wet")


def test_a_path_with_braces_is_a_path(tmp_path):
    folder = tmp_path / "networks"
    folder.mkdir()
    (folder / "{rain}.bif").write_text(BIF)
    assert load_bif(str(folder / "{rain}.bif")).graph.n_nodes == 2  # used to parse the path as BIF: 0 nodes
    with pytest.raises(BNError, match="not found"):
        load_bif(str(folder / "{snow}.bif"))


@pytest.mark.parametrize("content, match", [
    ("network empty { }\n", "no variables"),
    (b"network x { }\nvariable A { type discrete [ 2 ] { a, \xff }; }\n", "not UTF-8"),
    ("hello\nworld\n", "not a BIF network"),
])
def test_bad_bif_files(tmp_path, content, match):
    path = tmp_path / "bad.bif"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BNError, match=match):
        load_bif(path)


def test_a_folder_is_not_a_network(tmp_path):
    for load in (load_bif, load_spec):
        with pytest.raises(BNError, match="is a folder"):
            load(tmp_path)


GOOD = "nodes:\n  Rain: {states: [no, yes]}\n  Wet: {parents: [Rain], cpt: [[0.9, 0.1], [0.2, 0.8]]}\n"


@pytest.mark.parametrize("name, text, match", [
    ("dup.yaml", "nodes:\n  Rain: {card: 2}\n  Rain: {card: 3}\n", "duplicate key 'Rain'"),
    ("dup.json", '{"nodes": {"Rain": {"card": 2}, "Rain": {"card": 3}}}', "duplicate key 'Rain'"),
    ("card.yaml", "nodes:\n  Rain: {card: 2.7}\n", "card must be a whole number"),
    ("card.json", '{"nodes": {"Rain": {"card": "two"}}}', "card must be a whole number"),
    ("states.yaml", "nodes:\n  Rain: {states: [no, no]}\n", "duplicate state names"),
    ("ragged.yaml", "nodes:\n  Rain: {cpt: [[0.5, 0.5]]}\n  Wet: {parents: [Rain], cpt: [[0.9, 0.1], [0.2]]}\n",
     "not a table of 2 rows x 2 numbers"),
    ("text.yaml", "nodes:\n  Rain: {cpt: [[a, b]]}\n", "not a table"),
    ("broken.yaml", "nodes:\n  Rain: {card: [2\n", "not valid YAML"),
    ("broken.json", '{"nodes": {"Rain": ', "not valid JSON"),
    ("wide.yaml", "nodes:\n" + "".join(f"  P{i}: {{card: 2}}\n" for i in range(64))
     + "  C: {parents: [" + ", ".join(f"P{i}" for i in range(64)) + "]}\n", "CPT of 3.69e\\+19 entries"),
])
def test_bad_spec_files(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(BNError, match=match):
        load_spec(tmp_path / name)


def test_non_utf8_spec(tmp_path):
    (tmp_path / "latin.yaml").write_bytes(GOOD.replace("yes", "s\xed").encode("latin-1"))
    with pytest.raises(BNError, match="not UTF-8"):
        load_spec(tmp_path / "latin.yaml")
    (tmp_path / "good.yaml").write_text(GOOD)
    assert load_spec(tmp_path / "good.yaml").state_names == (("no", "yes"), ("0", "1"))


def test_row_count_never_overflows():
    with pytest.raises(BNError, match="CPT of"):
        Graph.from_edges([f"P{i}" for i in range(40)] + ["C"], [(f"P{i}", "C") for i in range(40)], 2)


@pytest.mark.parametrize("extra, match", [
    ("probability ( Rain ) { table 0.3, 0.7; }\n", "two probability blocks for 'Rain'"),
    ("probability(Wet|Rain){ (no) 0.5, 0.5; (yes) 0.5, 0.5; }\n", "two probability blocks for 'Wet'"),
    ("variable Wet { type discrete [ 2 ] { dry, wet }; }\n", "two variable blocks for 'Wet'"),
])
def test_a_bif_block_given_twice_is_refused(extra, match):
    with pytest.raises(BNError, match=match):
        load_bif(BIF + extra)
    assert load_bif(BIF + "// probability ( Rain ) { table 0.3, 0.7; }\n").cpts[0].tolist() == [[0.8, 0.2]]
