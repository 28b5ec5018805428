"""Training at scale: the readout, the encoding and the embedding pick slots by index rather than by dense
products with 0/1 matrices, and give the numbers the products gave (bit for bit on small graphs, which the
shipped reference tables compare to 1e-9)."""
import math

import torch
import torch.nn.functional as F

from bncompare.networks import DirichletPrior, get_graph, sample
from bncompare.transformer.encoding import Layout, encode
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
