"""The readouts: chosen from one table (readouts.READOUTS) and nowhere else, each building and answering."""
import ast
from pathlib import Path

import pytest
import torch

import bncompare
from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.transformer.encoding import Layout, encode
from bncompare.transformer.model import InContextTransformer, TransformerConfig
from bncompare.transformer.readouts import READOUTS, Readout

PACKAGE = Path(bncompare.__file__).parent
TABLE = PACKAGE / "transformer" / "readouts.py"
READOUT_SETTINGS = {"output", "evidence_rounds"}  # the settings that name or imply a readout
# the table and what readouts.py derives from it
TABLE_NAMES = {"READOUTS", "TRAINED_OUTPUTS", "GAUSSIAN_OUTPUTS", "AR_OUTPUTS"}


def _names_a_readout_setting(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in READOUT_SETTINGS
               or isinstance(n, ast.Name) and n.id in READOUT_SETTINGS for n in ast.walk(node))


def _names_a_kind(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value in READOUTS for n in ast.walk(node))


def _looks_up_the_table(test: ast.AST) -> bool:
    """``cfg.output in READOUTS`` (or a set the table derives): asks the table, decides nothing by hand."""
    return isinstance(test, ast.Compare) and all(isinstance(c, ast.Name) and c.id in TABLE_NAMES
                                                 for c in test.comparators)


def readout_choices(source: str) -> list[int]:
    """Lines that decide on the readout kind: a comparison of a readout setting with a kind, or a branch
    on a readout setting (``if cfg.evidence_rounds:``) other than a look-up in the table."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and _names_a_readout_setting(node) and _names_a_kind(node):
            lines.append(node.lineno)
        elif (isinstance(node, (ast.If, ast.IfExp, ast.While)) and _names_a_readout_setting(node.test)
              and not _looks_up_the_table(node.test)):
            lines.append(node.lineno)
    return lines


def test_no_module_chooses_a_readout_outside_the_table():
    found = {str(path.relative_to(PACKAGE)): readout_choices(path.read_text())
             for path in sorted(PACKAGE.rglob("*.py")) if path != TABLE}
    assert {path: lines for path, lines in found.items() if lines} == {}


@pytest.mark.parametrize("source", [
    "if cfg.output == 'mixture':\n    pass\n",
    "x = 1 + (self.cfg.output in ('logits', 'probs'))\n",
    "if self.cfg.evidence_rounds:\n    pass\n",
    "head = A() if cfg.output != 'evidence' else B()\n",
])
def test_the_check_sees_a_choice_by_hand(source):
    assert readout_choices(source)


def test_the_check_lets_other_code_pass():
    assert not readout_choices("readout = READOUTS[cfg.output]\nif w is not None:\n    pass\nmode = 'mixture'\n"
                               "if cfg.output not in TRAINED_OUTPUTS:\n    pass\n")


def _config(kind: str, graph) -> TransformerConfig:
    return TransformerConfig(d_model=16, n_head=2, d_ff=32, output=kind, match_scores=kind == "mixture",
                             evidence_rounds=2).for_layout(Layout(graph.cards))


@pytest.mark.parametrize("kind", sorted(k for k, r in READOUTS.items() if r.variables == "discrete"))
def test_every_readout_builds_and_answers_every_query(kind):  # the Gaussian ones: tests/test_gaussian_trained.py
    graph = get_graph("chain-4", card=3)
    model = InContextTransformer(_config(kind, graph), seed=0).eval()
    assert isinstance(model.readout_module, READOUTS[kind]) and isinstance(model.readout_module, Readout)
    gen = torch.Generator().manual_seed(0)
    cpts = DirichletPrior(1.0).sample(graph, 2, gen)
    contexts, queries = sample(graph, cpts, 9, gen), sample(graph, cpts, 3, gen)
    tokens = encode(graph, contexts, queries, range(graph.n_nodes))
    with torch.no_grad():
        out, weights = model(tokens, 9, return_weights=True)
        alone = model(tokens, 9)
    n_queries = 3 * graph.n_nodes
    assert out.shape == (2, n_queries, 3) and torch.equal(out, alone)
    assert len(weights) == model.n_attention_layers == 2 + READOUTS[kind].attention_layers
    assert all(w.shape[:1] == (2,) and w.shape[2] == n_queries for w in weights)
    if READOUTS[kind].attention_layers:  # the readout's weights on [sink, rows, "itself"]
        assert weights[-1].shape == (2, 1, n_queries, 1 + 9 + 1)
    probs = model.probabilities(out[..., :3])
    assert torch.allclose(probs.sum(-1), torch.ones(2, n_queries)) if kind != "probs" else probs.shape == out.shape


def test_the_linear_readouts_keep_the_checkpoints_key():
    graph = get_graph("chain-3")
    for kind in ("logits", "probs"):
        keys = set(InContextTransformer(_config(kind, graph)).state_dict())
        assert {"head.weight", "head.bias"} <= keys and not any(k.startswith("readout.") for k in keys)
