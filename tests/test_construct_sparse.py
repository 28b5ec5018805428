"""The constructed transformer built sparse and answered by families equals the dense construction it replaced."""
import math

import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators import MLE
from bncompare.estimators.generate import generate
from bncompare.networks import DirichletPrior, Graph, get_graph, sample
from bncompare.transformer import ConstructedTransformer, InContextTransformer, TransformerConfig, TransformerEstimator
from bncompare.transformer.construct import LINEARS, construct_model
from bncompare.transformer.diagnostics import attention_to_parents
from bncompare.transformer.encoding import Layout, encode
from bncompare.transformer.model import SparseLinear

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense_construction(graph: Graph, mode: str = "mle", alpha: float = 1.0, beta: float = 50.0):
    """The construction as it was written before the weights went sparse (dense d_model x d_model matrices,
    whole-graph forward passes): the reference the sparse one must reproduce."""
    lay = Layout(graph.cards)
    S, M, D = lay.n_onehot, lay.n_nodes, lay.d_out
    G, OA, OUT = lay.d_in, lay.d_in + S, lay.d_in + 2 * S
    d_model = lay.d_in + 2 * S + D
    cfg = TransformerConfig(
        d_model=d_model, n_layer=2, n_head=1, d_ff=S, norm="none", attention="softmax",
        context_attention="full", attn_scale="fixed", mlp="relu", query_view="prefix", output="probs",
        match_scores=False,
    ).for_layout(lay)
    model = InContextTransformer(cfg).to(torch.float64)
    children = [[c for c in range(M) if m in graph.parents[c]] for m in range(M)]
    n_pa = [len(pa) for pa in graph.parents]
    penalty = beta * (max(n_pa) + 1) + 1000.0
    scale = math.sqrt(d_model)
    W = {name: torch.zeros_like(p) for name, p in model.state_dict().items()}
    W["embed.weight"][:G, :G] = torch.eye(G)
    b1 = "blocks.0.mlp."
    for m in range(M):
        for v in range(graph.cards[m]):
            s = lay.offsets[m] + v
            W[b1 + "up.weight"][s, s] = 1.0
            for c in children[m]:
                W[b1 + "up.weight"][s, lay.target(c)] = 1.0
            W[b1 + "up.bias"][s] = -1.0
            W[b1 + "down.weight"][G + s, s] = 1.0
    a2 = "blocks.1.attn."
    qf, sf = lay.query_flag, lay.sink_flag
    for s in range(S):
        W[a2 + "q.weight"][s, G + s] = beta * scale
        W[a2 + "k.weight"][s, s] = 1.0
        W[a2 + "v.weight"][OA + s, s] = 1.0
    W[a2 + "q.bias"][qf] = -penalty * scale
    W[a2 + "k.weight"][qf, qf] = 1.0
    W[a2 + "k.weight"][sf, sf] = 1.0
    for m in range(M):
        d = graph.cards[m]
        sink_score = beta * n_pa[m] + math.log(alpha * d) if mode == "dirichlet" else beta * (n_pa[m] - 0.5)
        W[a2 + "q.weight"][sf, lay.target(m)] = sink_score * scale
        W[a2 + "v.weight"][OA + lay.offsets[m] : OA + lay.offsets[m] + d, sf] = 1.0 / d
    W[a2 + "proj.weight"] = torch.eye(d_model, dtype=torch.float64)
    b2 = "blocks.1.mlp."
    for m in range(M):
        for v in range(graph.cards[m]):
            s = lay.offsets[m] + v
            W[b2 + "up.weight"][s, OA + s] = 1.0
            W[b2 + "up.weight"][s, lay.target(m)] = 1.0
            W[b2 + "up.bias"][s] = -1.0
            W[b2 + "down.weight"][OUT + v, s] = 1.0
    W["head.weight"][:, OUT:] = torch.eye(D)
    model.load_state_dict(W)
    return model.eval()


# Small graphs of every shape the construction meets: roots only, chains, colliders, mixed cardinalities
# (families with the same cardinalities share one family model), a node whose parents come out of order.
GRAPHS = {
    "tree-7": get_graph("tree-7"),
    "general-7": get_graph("general-7"),
    "collider-4x3": get_graph("collider-4", card=3),
    "mixed": Graph(("A", "B", "C", "D", "E"), (2, 3, 4, 2, 3), ((), (0,), (1, 0), (2,), (3, 1, 2))),
    "roots": Graph(("A", "B"), (3, 2), ((), ())),
}


def episodes(graph, B=3, N=20, Q=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cpts = DirichletPrior(0.5).sample(graph, B, gen)
    return sample(graph, cpts, N, gen), sample(graph, cpts, Q, gen)


def max_err(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("mode", ["mle", "dirichlet"])
@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("N", [0, 2, 20])
def test_sparse_predictions_equal_the_dense_construction(name, mode, N):
    graph = GRAPHS[name]
    contexts, queries = episodes(graph, N=N)
    dense = TransformerEstimator(dense_construction(graph, mode, alpha=0.7)).fit(graph, contexts)
    est = ConstructedTransformer(mode, alpha=0.7).fit(graph, contexts)
    assert max_err(est.predict_proba(queries), dense.predict_proba(queries)) < 1e-9
    nodes = [graph.n_nodes - 1, 0, graph.n_nodes - 1]  # any subset, in any order, repeats too
    assert max_err(est.predict_proba(queries, nodes), dense.predict_proba(queries, nodes)) < 1e-9
    # the whole model (what the attention diagnostics read), written sparse or dense, computes the same
    tokens = encode(graph, contexts, queries, range(graph.n_nodes), torch.float64)
    out_d, w_d = dense.model(tokens, N, return_weights=True)
    for sparse in (True, False):
        model = construct_model(graph, mode, alpha=0.7, sparse=sparse)
        assert all(isinstance(model.get_submodule(name), SparseLinear) == sparse for name in LINEARS)
        out, w = model(tokens, N, return_weights=True)
        assert max_err([out, *w], [out_d, *w_d]) < 1e-9


@pytest.mark.parametrize("mode", ["mle", "dirichlet"])
def test_sparse_generation_equals_the_dense_construction(mode):
    graph = GRAPHS["mixed"]
    contexts, _ = episodes(graph, N=30, seed=4)
    u = torch.rand(3, 400, graph.n_nodes, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dense = TransformerEstimator(dense_construction(graph, mode)).fit(graph, contexts)
    got = generate(ConstructedTransformer(mode).fit(graph, contexts), 400, u=u, chunk_size=150)
    assert torch.equal(got, generate(dense, 400, u=u, chunk_size=150))


def test_attention_diagnostics_equal_the_dense_construction():
    graph = GRAPHS["general-7"]
    contexts, queries = episodes(graph, B=1, N=25, seed=2)
    rows = attention_to_parents(construct_model(graph, sparse=True), graph, contexts, queries, layers=[0, 1])
    want = attention_to_parents(dense_construction(graph), graph, contexts, queries, layers=[0, 1])
    assert [r.keys() for r in rows] == [r.keys() for r in want]
    for r, w in zip(rows, want):
        assert all(abs(r[k] - w[k]) < 1e-9 for k in r), (r, w)
    assert rows[1]["match"] + rows[1]["sink"] > 1 - 1e-9  # the counting head: matching rows, or the sink


def big_graph(n=1000, seed=0):
    """A munin-sized network: 1000 nodes of 2..8 states (~5k states), up to 3 parents each."""
    gen = torch.Generator().manual_seed(seed)
    cards = tuple(int(c) for c in torch.randint(2, 9, (n,), generator=gen))
    parents = []
    for m in range(n):
        k = min(m, int(torch.randint(0, 4, (1,), generator=gen)))
        parents.append(tuple(sorted(int(p) for p in torch.randperm(m, generator=gen)[:k])))
    return Graph(tuple(f"X{m}" for m in range(n)), cards, tuple(parents))


def assert_stored_sparse(model, limit: int) -> None:
    """Every linear map of the blocks is a CSR matrix, and all weights together take under ``limit`` bytes."""
    linears = [m for m in model.modules() if isinstance(m, SparseLinear)]
    assert len(linears) == 13 and all(m.weight.layout == torch.sparse_csr for m in linears)  # embed + 2 x (4 + 2)
    stored = sum(t.numel() * t.element_size() for m in linears
                 for t in (m.weight.values(), m.weight.col_indices(), m.weight.crow_indices(), m.bias))
    stored += sum(p.numel() * p.element_size() for p in model.head.parameters())  # the dense readout: d_out rows
    assert stored < limit, stored


def test_construction_of_a_munin_sized_graph_stays_sparse():
    graph = big_graph()
    model = construct_model(graph)
    assert model.cfg.d_model > 15_000  # dense, each of its d_model-wide matrices would take ~2 GB
    assert_stored_sparse(model, 20 * 2**20)  # ~5 MB
    # ... and its estimator answers nodes across the graph exactly, by families (each built when first asked for)
    contexts = (torch.rand(2, 15, graph.n_nodes, generator=torch.Generator().manual_seed(1))
                * torch.tensor(graph.cards)).long()
    nodes = list(range(0, graph.n_nodes, 10))
    got = ConstructedTransformer().fit(graph, contexts).predict_proba(contexts[:, :3], nodes)
    assert max_err(got, MLE().fit(graph, contexts).predict_proba(contexts[:, :3], nodes)) < 1e-9


def test_sparse_weights_are_refused_for_a_trained_readout():
    with pytest.raises(BNError, match="sparse weights are written, not trained") as e:
        TransformerConfig(sparse=True)  # the trained recipe's readout
    assert "\n" not in str(e.value)
    model = InContextTransformer(TransformerConfig().for_layout(Layout((2, 2))))
    assert not any(isinstance(m, SparseLinear) for m in model.modules())  # a trained model stays dense
