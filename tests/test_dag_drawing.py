"""The DAG page: arrowheads on every edge; node numbers and a node table on networks too wide for names."""
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from bncompare.networks import load_network  # noqa: E402
from bncompare.networks.io import load_bif  # noqa: E402
from bncompare.reports.dag import draw_dag, uses_numbers  # noqa: E402
from bncompare.reports.study_pages import node_table_pages  # noqa: E402

ANDES = Path(__import__("pgmpy").__file__).parent / "utils" / "example_models" / "andes.bif.gz"


def _drawn(graph):
    fig, ax = plt.subplots()
    draw_dag(ax, graph)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_arrowstyle().__class__.__name__
              == "CurveFilledB"]
    labels = [t.get_text() for t in ax.texts]
    plt.close(fig)
    return arrows, labels


def test_tree7_has_an_arrowhead_per_edge_and_names():
    graph = load_network("tree-7").graph
    arrows, labels = _drawn(graph)
    assert len(arrows) == sum(len(p) for p in graph.parents) == 6
    assert not uses_numbers(graph) and labels == list(graph.names)


def test_andes_is_drawn_with_numbers_and_a_node_table(tmp_path):
    graph = load_bif(ANDES).graph
    assert graph.n_nodes > 200
    arrows, labels = _drawn(graph)
    assert len(arrows) == sum(len(p) for p in graph.parents)
    assert uses_numbers(graph) and labels == [str(m + 1) for m in range(graph.n_nodes)]
    with PdfPages(tmp_path / "dag.pdf") as pdf:
        node_table_pages(pdf, SimpleNamespace(graph="andes"), graph)
        assert pdf.get_pagecount() == -(-graph.n_nodes // 45)
