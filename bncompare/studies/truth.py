"""Where a study's truth comes from: a registry of task sources, one per kind of problem.

A task source makes the episodes of one block: the true CPTs, the contexts and
the queries. The protocol and the estimators never know which kind they got.

- :class:`PriorTruth` (synthetic families, or any network with ``graph.options.truth=prior``):
  fresh CPTs from the prior in every episode, on the network's structure and cardinalities.
- :class:`FixedTruth` (real networks and ``graph=file``, ``truth=bundled``, the default):
  the network's own CPTs in every episode.
- :class:`FreshDAGTruth` (``graph=random_dags``): a fresh random DAG and CPTs per episode.
- :class:`SplitTruth` (real data, ``graph=sachs_data``): contexts are rows of a
  split's pool, queries its held-out rows, and the truth is the reference CPTs
  fitted on the held-out rows only.
- :class:`SequenceTruth` (``graph=autoregressive``): a fresh W per episode; the context is the
  prefix s_1..s_t of its sequence, the query the next state s_(t+1).

:func:`build_problem` picks the source: a name in :data:`SOURCES` first (``sachs_data``,
``file`` for the user's own BIF/YAML/JSON network), then a real network, else a
synthetic family drawn from the prior. ``truth.json`` records which truth was used.
"""
from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable
from pathlib import Path

import torch

from bncompare.errors import BNError
from bncompare.networks.families import get_graph, is_real, load_network
from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch
from bncompare.networks.priors import RandomDAGPrior
from bncompare.networks.variables import sample_rows
from bncompare.studies.protocol import BLOCK
from bncompare.studies.spec import StudySpec


class TaskSource:
    """Base: draw CPTs (``draw``), then contexts and queries from them (synthetic sampling)."""

    kind = "prior"
    truth = "prior"  # what truth.json and the title page call it: prior | bundled | held-out rows
    headline = "cond_tv"  # the metric the report leads with (distance to a known truth)
    per_episode_graphs = False  # True: every episode has its own DAG (protocol.fit_groups)
    fingerprint = None  # a hash of the file the truth comes from, when there is one (part of every cell's key)
    reference_network = None  # a BayesNet whose CPTs are the truth, when there is one (prior-distance note)
    reference_label = ""  # how the report names that network in the prior-distance note

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        raise NotImplementedError

    def block(self, graph: Graph, n: int, context_len: int, n_queries: int, k: int, gen: torch.Generator):
        """(cpts, contexts (n, N, M), queries (n, Q, M), graphs) of block ``k``, drawn with ``gen``;
        ``graphs`` lists each episode's own DAG, or is None when all share the study graph."""
        cpts = self.draw(graph, n, gen)
        return cpts, sample_rows(graph, cpts, context_len, gen), sample_rows(graph, cpts, n_queries, gen), None

    def describe(self, graph: Graph, prior) -> str:
        """A few lines for the report's DAG page: what the truth of an episode is."""
        raise NotImplementedError


class PriorTruth(TaskSource):
    """Fresh CPTs from the prior for every episode (synthetic families)."""

    def __init__(self, prior, structure_of: str = ""):
        self.prior = prior
        self.structure_of = structure_of  # "the sachs network": its structure, not its CPTs

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        return self.prior.sample(graph, n, gen)

    def describe(self, graph: Graph, prior) -> str:
        if self.structure_of:
            return "\n".join(["Truth (truth=prior): the structure", f"of {self.structure_of} with a fresh",
                              f"CPT set per episode, rows ~ {prior.describe()};", "its own CPTs are not used."])
        return f"Truth: a fresh CPT set per episode, rows ~ {prior.describe()}."


class FixedTruth(TaskSource):
    """The same CPTs in every episode (a real network's bundled CPTs)."""

    kind = "fixed"
    truth = "bundled"

    def __init__(self, cpts: CPTBatch, network=None):
        self.cpts = [torch.as_tensor(c, dtype=torch.float64) for c in cpts]
        self.reference_network = network

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        return [c.expand(n, *c.shape[1:]) for c in self.cpts]

    def describe(self, graph: Graph, prior) -> str:
        real = torch.cat([c.reshape(-1) for c in self.cpts])
        draws = prior.sample(graph, 200, torch.Generator().manual_seed(0))
        fake = torch.cat([c.reshape(-1) for c in draws])
        smallest = torch.stack([torch.cat([c[i].reshape(-1) for c in draws]).min() for i in range(200)]).median()

        def share(x, cond):
            return f"{float(cond(x).double().mean()):.1%}"

        return "\n".join([
            "Truth (truth=bundled): the network's", "own CPTs in every episode. The trained",
            f"transformer learns from {prior.describe()}.", "Real CPTs vs draws from that prior:",
            f"  min entry: {real.min():.2g} vs {float(smallest):.2g} (median)",
            f"  entries < 0.01: {share(real, lambda x: x < 0.01)} vs {share(fake, lambda x: x < 0.01)}",
            f"  entries > 0.99: {share(real, lambda x: x > 0.99)} vs {share(fake, lambda x: x > 0.99)}"])


class GaussianPriorTruth(PriorTruth):
    """Fresh linear-Gaussian parameters from the prior for every episode."""

    def describe(self, graph: Graph, prior) -> str:
        where = f"the structure of {self.structure_of}, " if self.structure_of else ""
        return textwrap.fill(f"Truth (truth=prior): {where}fresh parameters per episode from {prior.describe()}.",
                             48)


class FixedGaussianTruth(FixedTruth):
    """A linear-Gaussian network's own parameters in every episode."""

    def describe(self, graph: Graph, prior) -> str:
        weights = torch.cat([c[0, 1:-1] for c in self.cpts])
        sigmas = torch.stack([c[0, -1] for c in self.cpts])
        spread = (f"|weight| median {float(weights.abs().median()):.2g}, max {float(weights.abs().max()):.2g}; "
                  if weights.numel() else "")
        return textwrap.fill(f"Truth (truth=bundled): the network's own parameters in every episode ({spread}"
                             f"sigma {float(sigmas.min()):.2g} to {float(sigmas.max()):.2g}). The trained "
                             f"transformer learns from {prior.describe()}.", 48)


# The task source of a network's own parameters (bundled) or of prior draws, by the kind of its variables.
FIXED_TRUTH = {"discrete": FixedTruth, "gaussian": FixedGaussianTruth}
PRIOR_TRUTH = {"discrete": PriorTruth, "gaussian": GaussianPriorTruth}


class SplitTruth(TaskSource):
    """Real rows with a held-out reference (e.g. Sachs): no sampling from a model at all.

    Block ``k`` uses split ``k mod len(splits)``: its truth is the split's reference CPTs
    (fitted on the held-out rows only), its contexts are distinct rows of the split's pool
    and its queries distinct held-out rows. Whole blocks cycle over the splits, so with
    ``episodes`` a multiple of 32 x splits every split weighs the same.
    """

    kind = "split"
    truth = "held-out rows"
    headline = "query_nll"  # no known truth: the held-out log-loss of the query rows is the proper score
    reference_label = "split-0 held-out reference: "

    def __init__(self, splits):
        self.splits = list(splits)
        self.reference_network = self.splits[0].reference

    @property
    def pool_size(self) -> int:
        return min(s.pool.shape[0] for s in self.splits)

    @property
    def holdout_size(self) -> int:
        return min(s.holdout.shape[0] for s in self.splits)

    def split_of(self, episode: int):
        return self.splits[(int(episode) // BLOCK) % len(self.splits)]

    def block(self, graph: Graph, n: int, context_len: int, n_queries: int, k: int, gen: torch.Generator):
        split = self.splits[k % len(self.splits)]
        cpts = [torch.as_tensor(c, dtype=torch.float64)[None].expand(n, -1, -1) for c in split.reference.cpts]
        if context_len == 0:
            contexts = torch.zeros(n, 0, graph.n_nodes, dtype=torch.long)
        else:
            contexts = split.draw_contexts(n, context_len, gen)
        return cpts, contexts, split.draw_queries(n, n_queries, gen), None

    def describe(self, graph: Graph, prior) -> str:
        s = self.splits[0]
        return textwrap.fill(
            f"Truth: held-out reference CPTs of {len(self.splits)} random splits (block k uses split k mod "
            f"{len(self.splits)}); each fitted on {s.holdout.shape[0]} held-out rows, Dirichlet smoothing "
            f"{s.smoothing:g}. Contexts: distinct rows of the {s.pool.shape[0]}-row pool (disjoint); "
            f"queries: held-out rows.", 48)


class FreshDAGTruth(TaskSource):
    """A fresh random DAG and fresh CPTs in every episode (``graph=random_dags``).

    The study graph is the complete graph of the layout (every earlier node a parent). The
    truth's CPTs are written on it, so the truth at a query's prefix is the DAG's conditional
    at its parents, and every metric reads the same tables. Each episode also carries its own
    DAG: an estimator that uses the parents is fitted on it (``protocol.fit_groups``).
    """

    kind = "fresh_dag"
    per_episode_graphs = True

    def __init__(self, dag_prior: RandomDAGPrior):
        self.prior = dag_prior

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        return self.prior.sample(graph, n, gen)

    def block(self, graph: Graph, n: int, context_len: int, n_queries: int, k: int, gen: torch.Generator):
        cpts, adj = self.prior.sample(graph, n, gen, return_parents=True)
        dags = [Graph(graph.names, graph.cards, tuple(tuple(int(i) for i in a[:, m].nonzero().flatten())
                                                     for m in range(graph.n_nodes))) for a in adj]
        return cpts, sample_rows(graph, cpts, context_len, gen), sample_rows(graph, cpts, n_queries, gen), dags

    def describe(self, graph: Graph, prior) -> str:
        return textwrap.fill(f"Truth: a fresh DAG and CPT set per episode, {self.prior.describe()}. Estimators "
                             "that use the parents are given each episode's true DAG.", 48)


# ----- the registry ----------------------------------------------------------------------

SACHS_DATA_OPTIONS = {"method", "splits", "holdout_frac", "smoothing"}


def sachs_data_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """The real Sachs rows: splits seeded by the study seed, truth = each split's held-out reference."""
    from bncompare.realdata.sachs import sachs_data, sachs_graph, sachs_splits

    unknown = sorted(set(options) - SACHS_DATA_OPTIONS)
    if unknown:
        raise BNError(f"graph 'sachs_data': unknown options {unknown}; allowed: {sorted(SACHS_DATA_OPTIONS)}")
    graph = sachs_graph()
    splits = sachs_splits(sachs_data(str(options.get("method", "hartemink"))), n_splits=options.get("splits", 5),
                          holdout_frac=float(options.get("holdout_frac", 0.5)), seed=spec.seed,
                          smoothing=float(options.get("smoothing", 0.5)), graph=graph)
    truth = SplitTruth(splits)
    if max(spec.context_lens) > truth.pool_size:
        raise BNError(f"context length {max(spec.context_lens)} exceeds the Sachs context pool of "
                      f"{truth.pool_size} rows; lower context_lens or graph.options.holdout_frac")
    if spec.queries > truth.holdout_size:
        raise BNError(f"queries={spec.queries} exceeds the {truth.holdout_size} held-out Sachs rows")
    return graph, truth


TRUTHS = ("bundled", "prior")  # graph.options.truth of a network with CPTs


def _truth_option(options: dict, name: str, choices=TRUTHS) -> str:
    truth = options.get("truth", choices[0])
    if truth not in choices:
        raise BNError(f"graph {name!r}: graph.options.truth must be one of {', '.join(choices)}; got {truth!r}")
    return truth


def network_truth(net, truth: str, prior, what: str) -> TaskSource:
    """The network's own CPTs (bundled), or fresh prior draws on its structure (prior)."""
    graph = net if isinstance(net, Graph) else net.graph
    if truth == "prior":
        return PRIOR_TRUTH[graph.variables](prior, structure_of=what)
    return FIXED_TRUTH[graph.variables](net.parameter_batch(), net)


def real_network_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """A real network: its bundled CPTs as the truth of every episode, or (truth=prior) fresh prior draws."""
    name = spec.graph["name"]
    unknown = sorted(set(options) - {"truth"})
    if unknown:
        raise BNError(f"graph {name!r} is a real network and takes only the option 'truth', got {unknown}")
    truth = _truth_option(options, name)
    net = load_network(name)
    return net.graph, network_truth(net, truth, prior, f"the {name} network")


def load_file_network(path, truth: str):
    """The user's network file: BIF, XMLBIF, UAI, NET, XDSL (:func:`bncompare.networks.io.load_file`) or a
    YAML/JSON spec -> a BayesNet (a GaussianNet for a spec with ``variables: gaussian``), or (truth=prior) only
    the Graph of a spec (no parameter is read or drawn). With truth=bundled every node needs its parameters (a
    CPT, or intercept, weights and sigma) in the file."""
    from bncompare.networks.gaussian_io import gaussian_spec_structure, load_gaussian_spec, spec_variables
    from bncompare.networks.io import file_format, load_file, load_spec, parse_spec_text, read_text, spec_structure

    path = Path(path)
    if file_format(path) != "spec":
        return load_file(path)
    data = parse_spec_text(read_text(path, "network spec"), path.suffix == ".json", path)
    if spec_variables(data) == "gaussian":
        if truth == "prior":
            return gaussian_spec_structure(data)
        missing = [str(n) for n, body in data["nodes"].items() if not isinstance(body, dict) or "sigma" not in body]
        if missing:
            raise BNError(f"{path}: nodes {missing} have no parameters (intercept, weights, sigma); give them all "
                          "or use graph.options.truth=prior")
        return load_gaussian_spec(data)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if truth == "prior":
        return spec_structure(data)[0]
    if isinstance(nodes, dict):
        missing = [str(n) for n, body in nodes.items() if not isinstance(body, dict) or "cpt" not in body]
        if missing:
            raise BNError(f"{path}: nodes {missing} have no cpt; give every CPT or use graph.options.truth=prior")
    return load_spec(data)


def with_network(config: dict, network, folder) -> dict:
    """``config`` studying ``network`` (a BayesNet or a pgmpy model, from Python): the network is written
    as ``<folder>/network.json`` and read back by ``graph=file`` (results name it ``file-network``), so it
    is keyed, recorded and checked as a user's file is. ``graph.options.truth`` is kept if set."""
    import json

    from bncompare.networks.io import as_bayes_net, to_spec

    net = as_bayes_net(network)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "network.json"
    path.write_text(json.dumps(to_spec(net)))  # floats as repr: the CPTs round trip exactly
    truth = ((config.get("graph") or {}).get("options") or {}).get("truth", "bundled")
    return {**config, "graph": {"name": "file", "options": {"path": str(path), "truth": truth}}}


def file_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """``graph=file graph.options.path=my.bif``: the user's own network (truth=bundled|prior)."""
    unknown = sorted(set(options) - {"path", "truth"})
    if unknown:
        raise BNError(f"graph 'file': unknown options {unknown}; allowed: path, truth")
    if not options.get("path"):
        raise BNError("graph=file needs graph.options.path=<your .bif, .xmlbif, .uai, .net, .xdsl, .yaml or .json "
                      "file>")
    truth = _truth_option(options, "file")
    path = Path(str(options["path"])).expanduser()
    net = load_file_network(path, truth)
    source = network_truth(net, truth, prior, f"{path.name}")
    from bncompare.networks.io import read_bytes

    source.fingerprint = hashlib.sha256(read_bytes(path, "network file")).hexdigest()[:16]  # an edited file: new study
    return (net if isinstance(net, Graph) else net.graph), source


def synthetic_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """A named family (chain, tree, random, ...): fresh CPTs from the prior in every episode."""
    name = spec.graph["name"]
    options = dict(options)
    _truth_option(options, name, choices=("prior",))  # a family has no CPTs of its own
    options.pop("truth", None)
    try:
        graph = get_graph(name, **options)
    except TypeError as e:
        raise BNError(f"bad graph options {options} for {name!r}: {e}") from None
    return graph, PRIOR_TRUTH[graph.variables](prior)


RANDOM_DAGS_OPTIONS = {"n", "card", "p", "max_parents", "truth"}


def random_dags_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """``graph=random_dags``: a fresh Erdos-Renyi DAG (edge probability ~ U[p]) and CPTs per episode."""
    unknown = sorted(set(options) - RANDOM_DAGS_OPTIONS)
    if unknown:
        raise BNError(f"graph 'random_dags': unknown options {unknown}; allowed: {sorted(RANDOM_DAGS_OPTIONS)}")
    _truth_option(options, "random_dags", choices=("prior",))
    if prior.dirichlet_alpha is None:
        raise BNError(f"graph 'random_dags' draws Dirichlet CPT rows; the prior {prior.describe()} is not Dirichlet")
    p = options.get("p", (0.2, 1.0))
    lo, hi = (float(p[0]), float(p[1])) if isinstance(p, (list, tuple)) else (float(p), float(p))
    max_parents = options.get("max_parents", 4)
    dag_prior = RandomDAGPrior(lo, hi, prior.dirichlet_alpha, None if max_parents is None else int(max_parents))
    return get_graph("complete", n=int(options.get("n", 7)), card=int(options.get("card", 2))), FreshDAGTruth(dag_prior)


class SequenceTruth(TaskSource):
    """In-context autoregression: per episode a fresh transition W from the process's law (an
    :class:`~bncompare.networks.autoregressive.ARPrior`), the prefix s_1..s_t of its sequence as the
    context (t = the context length) and the next state s_(t+1) as the one query (a prefix has one next
    state: the study's ``queries`` setting does not apply)."""

    kind = "sequence"
    headline = "next_err"  # the squared error of the predicted next state

    def __init__(self, prior):
        self.prior = prior

    def block(self, graph: Graph, n: int, context_len: int, n_queries: int, k: int, gen: torch.Generator):
        params = self.prior.sample(graph, n, gen)
        states = self.prior.sequences(params, context_len + 1, gen)
        return params, states[:, :context_len], states[:, context_len:], None

    def describe(self, graph: Graph, prior) -> str:
        return textwrap.fill(f"Truth: a fresh sequence per episode, {prior.describe()}; the context is its "
                             "prefix s_1..s_t, the query the next state s_(t+1).", 48)


def autoregressive_source(spec: StudySpec, options: dict, prior) -> tuple[Graph, TaskSource]:
    """``graph=autoregressive``: sequences of a d-dimensional process (``graph.options.d``, from process.d)."""
    from bncompare.networks.autoregressive import ar_graph

    unknown = sorted(set(options) - {"d"})
    if unknown:
        raise BNError(f"graph 'autoregressive': unknown options {unknown}; allowed: d (set it as process.d)")
    if "d" not in options:
        raise BNError("graph 'autoregressive' needs graph.options.d, the state dimension (set it as process.d)")
    return ar_graph(options["d"]), SequenceTruth(prior)


# Graph names with their own task source; other names are real networks or synthetic families.
SOURCES: dict[str, Callable] = {"sachs_data": sachs_data_source, "file": file_source,
                                "random_dags": random_dags_source, "autoregressive": autoregressive_source}


def build_problem(spec: StudySpec):
    """(graph, truth, prior) of a study; ``prior`` is the training prior, the truth draws from ``spec.truth_prior``."""
    name, options = spec.graph["name"], spec.graph["options"]
    prior, truth_prior = spec.built_prior, spec.built_truth_prior
    source = SOURCES.get(name) or (real_network_source if is_real(name) else synthetic_source)
    graph, truth = source(spec, options, truth_prior)
    if graph.variables != spec.variables:
        hint = {"gaussian": "variables=gaussian prior=nig", "discrete": "variables=discrete prior=dirichlet"}.get(
            graph.variables, "graph=autoregressive")
        raise BNError(f"graph {graph_label(spec)!r} holds {graph.variables} variables, but the study's are "
                      f"{spec.variables}; add {hint}")
    if spec.eval_prior is not None and truth.truth != "prior":
        raise BNError(f"eval_prior sets the prior the truth is drawn from, but graph={name}'s truth is "
                      f"{truth.truth} (not drawn from a prior); drop eval_prior, or use graph.options.truth=prior")
    return graph, truth, prior


def graph_label(spec: StudySpec) -> str:
    """The graph's name in results.csv: a user's file is ``file-<stem>`` so that two files stay apart."""
    if spec.graph["name"] == "file" and spec.graph["options"].get("path"):
        return "file-" + Path(str(spec.graph["options"]["path"])).name.split(".")[0]
    return spec.graph["name"]


def prior_distance(truth: TaskSource, prior) -> str | None:
    """How far a real network's CPTs (or a real-data reference) sit from the Dirichlet training prior."""
    if truth.reference_network is None or prior.dirichlet_alpha is None:
        return None
    from bncompare.realdata.prior_fit import describe

    return truth.reference_label + describe(truth.reference_network, prior.dirichlet_alpha)
