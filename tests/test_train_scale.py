"""Training at scale: the readout, the encoding and the embedding pick slots by index rather than by dense
products with 0/1 matrices, and give the numbers the products gave (bit for bit on small graphs, which the
shipped reference tables compare to 1e-9)."""
import math

import pytest
import torch
import torch.nn.functional as F

from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.transformer.encoding import Layout, encode, onehots
from bncompare.transformer.model import InContextTransformer, TransformerConfig
from bncompare.transformer.readouts import MixtureReadout
from bncompare.transformer.train import TrainConfig, train


def product_forward(self, h, h_seen, tokens, n_context: int):
    """MixtureReadout.forward as it was: slots expanded and picked by products with the 0/1 slot maps."""
    values, rows, queries = self.layout.values, Layout.context_rows(n_context), Layout.query_rows(n_context)
    q, k = self.q(h), self.k(self.norm_k(h_seen))
    scale = self.log_temp.exp() / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-1, -2)) * scale
    if self.gain is not None:
        shown = tokens[:, queries, values] * (self.gain(h) @ self.node_of_slot)
        scores = scores + F.pad(shown @ tokens[:, rows, values].transpose(-1, -2), (1, 0))
    w = torch.softmax(scores, -1)
    target = tokens[:, queries, self.layout.targets]
    seen = w[..., 1:] @ tokens[:, rows, values]
    from_rows = (seen * (target @ self.node_of_slot)) @ self.state_of_slot
    prior = self.prior(h).masked_fill(~(target @ self.valid.to(target.dtype)).bool(), float("-inf"))
    probs = from_rows + w[..., :1] * torch.softmax(prior, -1)
    return torch.log(probs.clamp_min(1e-30)), w[:, None]


def test_mixture_training_is_bitwise_the_products_training(monkeypatch):
    # the default recipe on tree-7, as the reference tables train it (fewer steps)
    cfg = TrainConfig(steps=40, eval_every=0)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        new, _ = train(get_graph("tree-7"), DirichletPrior(1.0), cfg, progress=False)
        monkeypatch.setattr(MixtureReadout, "forward", product_forward)
        old, _ = train(get_graph("tree-7"), DirichletPrior(1.0), cfg, progress=False)
    new, old = new.state_dict(), old.state_dict()
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in new)


def test_mixture_forward_and_gradients_match_the_products_on_mixed_cards():
    graph = get_graph("alarm")  # cards 2 to 4, 37 nodes
    cfg = TransformerConfig(d_model=16, n_head=2, d_ff=32).for_layout(Layout(graph.cards))
    model = InContextTransformer(cfg, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = sample(graph, DirichletPrior(1.0).sample(graph, 3, gen), 30, gen)
    tokens = encode(graph, x[:, :25], x[:, 25:], range(graph.n_nodes))

    def run():
        model.zero_grad()
        out = model(tokens, 25)
        out.masked_fill(out < -60, 0).sum().backward()  # the states a node lacks (log 1e-30) left out
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out, grads = run()
    MixtureReadout.forward, kept = product_forward, MixtureReadout.forward
    try:
        out_old, grads_old = run()
    finally:
        MixtureReadout.forward = kept
    assert torch.equal(out, out_old)
    for g, g_old in zip(grads, grads_old):
        torch.testing.assert_close(g, g_old, rtol=1e-6, atol=1e-9)


def loop_encode(graph, contexts, queries, nodes, dtype=torch.float32, view="prefix"):
    """encode as it was: the query tokens filled one target node at a time."""
    layout = Layout(graph.cards)
    B, N, M = contexts.shape
    Q, T = queries.shape[1], len(nodes)
    sink = torch.zeros(B, 1, layout.d_in, dtype=dtype)
    sink[..., layout.sink_flag] = 1
    ctx = torch.zeros(B, N, layout.d_in, dtype=dtype)
    ctx[..., : layout.n_onehot] = onehots(layout, contexts, dtype)
    qry = torch.zeros(B, Q, T, layout.d_in, dtype=dtype)
    x_q = onehots(layout, queries, dtype)
    for j, m in enumerate(nodes):
        if view == "parents":
            for p in graph.parents[m]:
                lo = layout.offsets[p]
                qry[:, :, j, lo : lo + layout.cards[p]] = x_q[..., lo : lo + layout.cards[p]]
        else:
            qry[:, :, j, : layout.offsets[m]] = x_q[..., : layout.offsets[m]]
        qry[:, :, j, layout.query_flag] = 1
        qry[:, :, j, layout.target(m)] = 1
    return torch.cat([sink, ctx, qry.reshape(B, Q * T, layout.d_in)], 1)


@pytest.mark.parametrize("name", ["chain-2", "tree-7", "asia", "alarm"])
@pytest.mark.parametrize("view", ["prefix", "parents"])
def test_encode_gives_the_loops_tokens(name, view):
    graph = get_graph(name)
    gen = torch.Generator().manual_seed(2)
    x = sample(graph, DirichletPrior(1.0).sample(graph, 2, gen), 9, gen)
    M = graph.n_nodes
    for nodes, dtype in [(range(M), torch.float32), ([M - 1, 0, M // 2, M - 1], torch.float64)]:
        new = encode(graph, x[:, :6], x[:, 6:], nodes, dtype, view)
        old = loop_encode(graph, x[:, :6], x[:, 6:], nodes, dtype, view)
        assert new.dtype == old.dtype and torch.equal(new, old)


def test_onehots_are_the_per_node_one_hots():
    graph = get_graph("alarm")  # cards 2 to 4
    layout = Layout(graph.cards)
    gen = torch.Generator().manual_seed(3)
    x = sample(graph, DirichletPrior(1.0).sample(graph, 2, gen), 7, gen)
    old = torch.cat([F.one_hot(x[..., m], c) for m, c in enumerate(graph.cards)], -1).to(torch.float64)
    assert torch.equal(onehots(layout, x, torch.float64), old)
    into = torch.full((2, 7, layout.d_in), 5.0)  # written into a strided view: its slots only, stale values cleared
    onehots(layout, x, torch.float32, out=into[..., : layout.n_onehot])
    assert torch.equal(into[..., : layout.n_onehot], old.float()) and (into[..., layout.n_onehot :] == 5).all()


@pytest.mark.parametrize("m", [0, 5, 36])
def test_a_one_target_readout_gives_the_products_numbers(m):
    # generation asks one node per call: the readout weighs that node's slots alone, with the same bits
    graph = get_graph("alarm")
    cfg = TransformerConfig(d_model=16, n_head=2, d_ff=32).for_layout(Layout(graph.cards))
    model = InContextTransformer(cfg, seed=0).eval()
    gen = torch.Generator().manual_seed(4)
    x = sample(graph, DirichletPrior(1.0).sample(graph, 3, gen), 30, gen)
    tokens = encode(graph, x[:, :25], x[:, 25:], [m])
    with torch.no_grad():
        out = model(tokens, 25)
        MixtureReadout.forward, kept = product_forward, MixtureReadout.forward
        try:
            out_old = model(tokens, 25)
        finally:
            MixtureReadout.forward = kept
    assert torch.equal(out, out_old)


def test_the_held_out_check_in_chunks_gives_the_numbers_of_one_pass():
    # a munin-sized check held every task's tokens at once (3.5 GB); by a training group's tasks at a time
    from bncompare.transformer.train import HeldOut, build_model

    graph = get_graph("alarm")
    cfg = TrainConfig(d_model=16, n_head=2, d_ff=32, eval_tasks=10, eval_lengths=(3, 20), batch_size=8)
    model = build_model(graph, cfg)
    held = HeldOut(graph, DirichletPrior(1.0), cfg)
    assert held.chunk == 2  # 8 contexts in 4 length groups
    chunked = held(model, torch.device("cpu"), False)
    held.chunk = cfg.eval_tasks
    assert chunked == held(model, torch.device("cpu"), False)
