"""Generation at scale: validated once, the naive prefix MLE carried from node to node, and the samples the
same bits as the public per-node loop (one ``predict_proba(x, [m])`` per node) for every estimator kind."""
import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators import MLE, NaiveMLE
from bncompare.estimators.base import Estimator
from bncompare.estimators.generate import generate
from bncompare.networks import DirichletPrior, Graph, check_data, draw_categorical, get_graph, sample
from bncompare.studies import registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_TRAIN = {"steps": 3, "eval_every": 0, "d_model": 16, "n_head": 2, "d_ff": 32, "n_context_max": 20,
              "batch_size": 4}
FAST = {  # settings that fit in a second or two (as in test_contract)
    "pyro_nuts": {"num_samples": 4, "warmup_steps": 4, "plate_size": 2},
    "pyro_svi": {"steps": 5, "num_draws": 5, "plate_size": 2},
    "trained": {"train_cfg": TINY_TRAIN, "progress": False},
    "transformer_agnostic": {"train_cfg": TINY_TRAIN, "progress": False},
}
DISCRETE = sorted(k for k in registry.KINDS if registry.factory(k).tags.variables == "discrete")
MIXED = Graph(("A", "B", "C", "D", "E", "F"), (3, 2, 4, 2, 3, 5),
              ((), (0,), (0, 1), (2,), (1, 2, 3), (0, 4)))


def data(graph, B=3, N=15, n=40, seed=0):
    """Contexts from skewed CPTs (unseen configurations occur) and uniforms for n samples."""
    gen = torch.Generator().manual_seed(seed)
    contexts = sample(graph, DirichletPrior(0.4).sample(graph, B, gen), N, gen)
    return contexts, torch.rand(B, n, graph.n_nodes, generator=gen, dtype=torch.float64)


def per_node_loop(est, u):
    """The samples of the public interface: one validated predict_proba(x, [m]) per node."""
    x = torch.zeros(u.shape, dtype=torch.long)
    for m in range(u.shape[-1]):
        x[..., m] = draw_categorical(est.predict_proba(x, [m])[0].to(u.device), u[..., m])
    return x


@pytest.mark.parametrize("kind", DISCRETE)
def test_every_kind_generates_the_samples_of_the_per_node_loop(kind, tmp_path):
    graph = get_graph("tree-5")  # binary: every discrete kind applies
    params = dict(FAST.get(kind, {}))
    if kind in ("trained", "transformer_agnostic"):
        params["cache_dir"] = tmp_path
    est = registry.build(kind, params).prepare(graph, DirichletPrior(1.0), seed=0)
    contexts, u = data(graph)
    est.fit(graph, contexts)
    assert torch.equal(generate(est, u.shape[1], u=u), per_node_loop(est, u))


class OnlyPublic(Estimator):
    """A third-party estimator written against the public interface only: it overrides predict_proba."""

    name = "only_public"

    def fit(self, graph, contexts):
        self.inner_ = MLE().fit(graph, contexts)
        self.graph_, self.n_contexts_ = graph, self.inner_.n_contexts_
        return self

    def predict_proba(self, queries, nodes=None):
        return self.inner_.predict_proba(queries, nodes)


def test_an_estimator_that_only_overrides_predict_proba_still_generates():
    contexts, u = data(MIXED)
    est = OnlyPublic().fit(MIXED, contexts)
    assert torch.equal(generate(est, u.shape[1], u=u), generate(est.inner_, u.shape[1], u=u))
    with pytest.raises(BNError, match="out of range"):
        est.predict_proba(torch.zeros(3, 2, MIXED.n_nodes, dtype=torch.long), [6])


class CountingChecks(MLE):
    """MLE that counts how often its queries are validated."""

    checks = 0

    @staticmethod
    def read_data(graph, x, what="data"):
        CountingChecks.checks += what == "query"
        return check_data(graph, x, what)


def test_generate_validates_its_samples_once():
    contexts, u = data(MIXED, n=20)
    est = CountingChecks().fit(MIXED, contexts)
    CountingChecks.checks = 0
    generate(est, 20, u=u, chunk_size=8)  # three chunks, six nodes: still one validation
    assert CountingChecks.checks == 1
    per_node_loop(est, u)
    assert CountingChecks.checks == 1 + MIXED.n_nodes  # the public interface validates every call


@pytest.mark.parametrize("graph", [get_graph("general-7"), MIXED], ids=["general-7", "mixed-cards"])
@pytest.mark.parametrize("N", [0, 1, 4, 30])
def test_naive_generation_carries_the_prefix_match_and_gives_the_same_samples(graph, N):
    contexts, u = data(graph, B=4, N=N, n=50, seed=N)
    est = NaiveMLE().fit(graph, contexts)
    want = per_node_loop(est, u)
    assert torch.equal(generate(est, 50, u=u), want)
    assert torch.equal(generate(est, 50, u=u, chunk_size=7), want)
    if N:  # the whole-prefix MLE resamples context rows
        rows = [{tuple(r) for r in contexts[b].tolist()} for b in range(4)]
        assert all(tuple(r) in rows[b] for b in range(4) for r in want[b].tolist())


@pytest.mark.parametrize(("output", "view"), [("mixture", "prefix"), ("mixture", "parents"), ("logits", "prefix"),
                                              ("logits", "parents"), ("evidence", "prefix")])
def test_a_transformer_generates_the_loops_samples_in_chunks(view, output):
    # tokens updated from node to node, in chunks of contexts (2 of 3) and of query rows (16 of 40): the
    # samples of the per-node loop, bit for bit, on mixed cardinalities
    from bncompare.transformer import InContextTransformer, TransformerConfig, TransformerEstimator
    from bncompare.transformer.encoding import Layout

    cfg = TransformerConfig(d_model=16, n_head=2, d_ff=32, query_view=view, output=output,
                            match_scores=output == "mixture")
    model = InContextTransformer(cfg.for_layout(Layout(MIXED.cards)), seed=1)
    est = TransformerEstimator(model, batch_size=2, max_query_tokens=16)
    contexts, u = data(MIXED, n=40)
    est.fit(MIXED, contexts)
    x = generate(est, u.shape[1], u=u)
    assert torch.equal(x, per_node_loop(est, u))
    assert len(est.context_states_) == 2  # each chunk of contexts' states computed once, for every node
