"""Every network in pgmpy's wheel is a name (graph=<name>), and the listing shows each one's size."""
import subprocess
import sys

import pandas as pd
import pytest

from bncompare.bundled import discrete_names
from bncompare.networks.families import available, is_real, load_network
from bncompare.networks.listing import bundled_size, main

ISSUE_26 = ("barley", "hailfinder", "hepar2", "win95pts", "water", "mildew", "pathfinder", "andes", "diabetes",
            "pigs", "link", "munin")


def test_every_bundled_network_is_a_name():
    names = set(discrete_names())
    assert names >= set(ISSUE_26) | {"asia", "alarm", "sachs", "munin1", "munin4"}
    assert names <= set(available()) and all(is_real(n) for n in names)


def test_the_study_config_knows_every_bundled_name():
    from bncompare.studies.run import compose

    for name in discrete_names():
        assert compose([f"graph={name}"])["graph"] == {"name": name, "options": {"truth": "bundled"}}


@pytest.mark.parametrize("name", ["asia", "alarm", "water", "hepar2"])
def test_the_listing_scan_matches_the_loaded_network(name):
    g = load_network(name).graph
    size = bundled_size(name)
    assert (size.nodes, size.states, size.in_degree) == (g.n_nodes, max(g.cards), max(map(len, g.parents)))
    assert size.parameters == sum((c - 1) * k for c, k in zip(g.cards, g.n_configs))


def test_the_listing_prints_every_discrete_network(capsys):
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert set(discrete_names()) | {"tree", "chain", "general"} <= set(rows)
    assert rows["alarm"] == ["37", "4", "4", "509", "bundled"]  # bnlearn's figures for alarm
    assert rows["hailfinder"] == ["56", "11", "4", "2656", "bundled"]


def test_the_listing_command_is_quick():
    done = subprocess.run([sys.executable, "-m", "bncompare.networks", "--only", "bundled"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "munin" in done.stdout and "pathfinder" in done.stdout


def test_a_newly_named_network_runs_in_a_tiny_study(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bncompare.studies.run", "graph=water", "study=smoke", "estimators=counting",
         "context_lens=[2]", "report=false", f"out_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results["graph"]) == {"water"} and len(results)
