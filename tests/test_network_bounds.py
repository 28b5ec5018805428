"""Tiny network files that would hang or exhaust memory are refused before anything is built.

Each load runs in a forked child with a time and memory limit, so a regression fails the
test instead of hanging the suite or the machine."""
import gzip
import multiprocessing
import os
import resource
import subprocess
import sys

import pytest

from bncompare.errors import BNError
from bncompare.networks.graph import MAX_CARD, Graph
from bncompare.networks.io import MAX_FILE_BYTES, load_bif, load_spec

SECONDS = 10
BIF = """network rain { }
variable Rain { type discrete [ 2 ] { no, yes }; }
probability ( Rain ) { table 0.8, 0.2; }
"""


def _child(queue, fn, args):
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * 2**30, resource.RLIM_INFINITY))  # 2 GB more, at most
    try:
        fn(*args)
        queue.put(("ok", ""))
    except BNError as e:
        queue.put(("BNError", str(e)))
    except BaseException as e:  # noqa: BLE001  anything else is the failure this test looks for
        queue.put((type(e).__name__, str(e)[:200]))


def bounded(fn, *args) -> tuple[str, str]:
    """(outcome, message) of ``fn(*args)`` in a forked child that may take SECONDS and 2 GB."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue, fn, args))
    child.start()
    child.join(SECONDS)
    if child.is_alive():
        child.kill()
        child.join()
        return "hung", f"still running after {SECONDS} s"
    return queue.get(timeout=5) if not queue.empty() else ("died", f"exit code {child.exitcode}")


def refused(fn, *args, match: str) -> None:
    outcome, message = bounded(fn, *args)
    assert outcome == "BNError", (outcome, message)
    assert match in message and "\n" not in message, message


ALIAS_BOMB_STATES = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
) + "nodes:\n  Rain: {states: *i}\n"
ALIAS_BOMB_CPT = ALIAS_BOMB_STATES.replace("states: *i", "cpt: *i")


@pytest.mark.parametrize("name, text", [("states.yaml", ALIAS_BOMB_STATES), ("cpt.yaml", ALIAS_BOMB_CPT)])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, name, text):
    assert len(text) < 1024
    (tmp_path / name).write_text(text)
    refused(load_spec, tmp_path / name, match="YAML alias")


@pytest.mark.parametrize("name, text", [
    ("huge.yaml", "nodes:\n  Rain: {card: 1000000000000000000}\n"),
    ("huge.json", '{"nodes": {"Rain": {"card": 1000000000000000000}}}'),
    ("inf.json", '{"nodes": {"Rain": {"card": 1e400}}}'),
])
def test_a_huge_card_is_refused_before_states_are_built(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    outcome, message = bounded(load_spec, tmp_path / name)
    assert outcome == "BNError", (outcome, message)
    assert "card" in message


def test_a_graph_refuses_a_huge_card():
    with pytest.raises(BNError, match=f"limit of {MAX_CARD} states"):
        Graph.from_edges(["A"], [], 10**18)


@pytest.mark.parametrize("name, load", [("net.json", load_spec), ("net.yaml", load_spec), ("net.bif", load_bif)])
def test_a_link_to_dev_zero_is_not_read(tmp_path, name, load):
    os.symlink("/dev/zero", tmp_path / name)
    refused(load, tmp_path / name, match="not a regular file")


@pytest.mark.parametrize("name, load", [("net.bif", load_bif), ("net.yaml", load_spec), ("net.json", load_spec)])
def test_a_fifo_is_not_opened_for_reading(tmp_path, name, load):
    os.mkfifo(tmp_path / name)
    refused(load, tmp_path / name, match="not a regular file")


def test_a_big_file_and_a_gzip_bomb_are_refused(tmp_path):
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    refused(load_spec, tmp_path / "big.yaml", match="larger than")
    (tmp_path / "bomb.bif.gz").write_bytes(gzip.compress(BIF.encode() + b" " * (MAX_FILE_BYTES + 1)))
    assert (tmp_path / "bomb.bif.gz").stat().st_size < 100_000
    refused(load_bif, tmp_path / "bomb.bif.gz", match="larger than")


@pytest.mark.parametrize("name, text", [
    ("deep.json", '{"nodes": {"Rain": {"cpt": ' + "[" * 100_000 + "]" * 100_000 + "}}}"),
    ("deep.yaml", "nodes:\n  Rain: {cpt: " + "[" * 100_000 + "]" * 100_000 + "}\n"),
    ("deep-ok-for-python.yaml", "nodes:\n  Rain: {cpt: " + "[" * 200 + "]" * 200 + "}\n"),
])
def test_deep_nesting_is_one_line(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    refused(load_spec, tmp_path / name, match="nested too deeply")


def test_the_study_command_refuses_a_fifo_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "net.bif")
    done = subprocess.run(
        [sys.executable, "-m", "bncompare.studies.run", "graph=file", f"graph.options.path={tmp_path / 'net.bif'}",
         f"out_dir={tmp_path / 'out'}", "report=false"],
        capture_output=True, text=True, timeout=120)  # startup under load takes ~15 s; a hang is forever
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a regular file" in lines[0], done.stderr


def test_the_study_command_refuses_a_huge_card_in_one_line(tmp_path):
    (tmp_path / "net.yaml").write_text("nodes:\n  Rain: {card: 1000000000000000000}\n")
    done = subprocess.run(
        [sys.executable, "-m", "bncompare.studies.run", "graph=file", f"graph.options.path={tmp_path / 'net.yaml'}",
         "graph.options.truth=prior", f"out_dir={tmp_path / 'out'}", "report=false"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "card" in lines[0], done.stderr
