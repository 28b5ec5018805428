"""The one interface every estimator implements.

Like scikit-learn: the constructor takes settings only, ``fit`` learns, and
learned state lives in attributes ending in ``_``::

    est.prepare(graph, prior)                 # once per study (trains a transformer; no-op otherwise)
    est = MLE().fit(graph, contexts)          # contexts: (B, N, M) long, B contexts of N rows
    probs = est.predict_proba(queries)        # queries: (B, Q, M) -> list over nodes of (B, Q, d_m)
    est.cpts_                                 # full CPTs (list of (B, n_configs, d_m)) or None

``predict(queries, nodes)`` is the one call every family answers: each node's predictive
distribution in the layout of the graph's variables. Discrete: ``(B, Q, d_m)`` probabilities
(the same as ``predict_proba``). Linear-Gaussian (:class:`GaussianEstimator`, contexts and
queries are float rows): ``(B, Q, 3)`` Student-t parameters ``(df, loc, scale)``, ``df = inf``
a Normal (:mod:`bncompare.networks.gaussian`); ``network_`` is then the fitted network as a
parameter batch (one ``(B, k_m + 2)`` tensor per node), or None when the estimator has none.

Autoregressive processes (:class:`AREstimator`, ``variables="autoregressive"``): a context is the
prefix ``s_1 .. s_t`` of one sequence, ``(B, t, d)`` float; ``predict`` gives, for each coordinate,
the predictive of the NEXT state ``s_{t+1}``, ``(B, Q, 3)`` ``(df, loc, scale)``, the same for every
query row (a query row holds the true next state: it is never read). ``transition_`` is the
fitted W, ``(B, d, d)``, or None when the estimator has none.

``predict_proba(queries, nodes)`` returns, for each requested node ``m``, the
estimator's predictive distribution of ``x_m`` given the query's values on the
nodes before ``m`` (in topological order). Values at ``m`` and later are ignored.
An estimator that knows the graph uses only the parents; one that does not
(naive, structure-agnostic transformer) may use the whole prefix.

An estimator implements ``_predict_proba(queries, nodes)``: the same answer for queries that
``predict_proba`` has validated (a long tensor of valid states, node indices in range). Generation
(:func:`bncompare.estimators.generate.generate`) validates its own samples once and calls it, or an
estimator's ``_generate``, directly. One that overrides the public ``predict_proba`` instead still works
everywhere, paying its validation on every call.

Every estimator declares what it is (``tags``, a :class:`Tags`) and its settings
(``get_params()``, read from the ``__init__`` signature as in scikit-learn), so a
study and its report read declarations instead of inspecting objects.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from bncompare.errors import BNError
from bncompare.networks.autoregressive import check_states
from bncompare.networks.gaussian import GaussianBatch, check_real_data
from bncompare.networks.graph import Graph, check_data
from bncompare.networks.network import CPTBatch
from bncompare.networks.sampling import draw_categorical


@dataclass(frozen=True)
class Tags:
    """What an estimator is and can do; class-level, so known before anything is fitted."""

    family: str = "counting"  # counting | library | constructed | trained: how it gets its answer
    variables: str = "discrete"  # the kind of network variables it fits (Graph.variables): discrete | gaussian
    graph_agnostic: bool = False  # never uses the parents, only the prefix of earlier variables
    has_attention: bool = False  # after fit, ``model_`` is an InContextTransformer (attention diagnostics)
    has_history: bool = False  # after prepare, ``history_`` is its training curve (a list of per-step dicts)
    reference_for: str | None = None  # the loss it minimizes in expectation when its prior is the truth's
    one_structure: bool = False  # prepared (trained) for the study graph's structure: fits no other DAG
    optimal_under: str | None = None  # the kind of CPT prior (as in prior.kind) under which it does so
    floors_are_zeros: bool = False  # computes a rule with exact zeros up to a tiny floor: after fit, predicted
    # probabilities below ``zero_below_`` are that rule's zeros, and the metrics count them as 0 (KL convention)
    point_forecast: bool = False  # predicts a value, not a distribution (its predicted scale means nothing):
    # scored on the error of its location only, never on a log-loss
    has_artifacts: bool = False  # after prepare, ``artifacts_`` is a JSON-able dict the report draws
    # (e.g. a trained model's weight matrices); the study writes it to artifacts/<name>.json
    # the parts of a trained model's answer that code computes rather than weights learn, one short phrase each
    # (its first word names it in a legend); () for a model learned end to end. A trained estimator derives it
    # from its model's settings (:class:`SettingsTags`), so it can never disagree with what it trains.
    computed: tuple[str, ...] = ()

    def structure_note(self) -> str:
        """What a trained model hard-wires, as a label suffix: '[computed: a, b]' (the parts' first words) or
        '[learned end to end]'; '' for an estimator that is not trained."""
        if self.family != "trained":
            return ""
        if not self.computed:
            return "[learned end to end]"
        return "[computed: " + ", ".join(part.split()[0] for part in self.computed) + "]"


class SettingsTags:
    """The ``tags`` of an estimator whose ``computed`` parts follow from its settings: the class reads
    ``base`` (with the parts its default settings give), an instance the same with the parts its own settings
    give (``estimator.model_computed_parts()``), so a changed setting changes the declaration with it."""

    def __init__(self, base: Tags, default_parts: tuple[str, ...] = ()):
        self.base = replace(base, computed=tuple(default_parts))

    def __get__(self, est, owner=None) -> Tags:
        if est is None:
            return self.base
        return replace(self.base, computed=tuple(est.model_computed_parts()))


class Estimator:
    name: str = "estimator"
    tags: Tags = Tags()
    cpts_: CPTBatch | None = None
    zero_below_: float = 0.0  # see Tags.floors_are_zeros; 0 for every estimator that gives exact zeros itself

    @classmethod
    def param_names(cls) -> list[str]:
        """The settings: the keyword arguments of ``__init__`` (no ``*args``/``**kwargs``)."""
        if cls.__init__ is object.__init__:
            return []
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        """The settings this estimator was built with, each stored under its ``__init__`` name."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params) -> Estimator:
        """Change settings (names as in ``get_params``) and return the estimator. It is rebuilt through
        ``__init__``, so the new values are checked as a constructor checks them, and whatever it had
        prepared or fitted is dropped (it was for the old settings)."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise BNError(f"{self.name}: unknown settings {unknown}; its settings are {self.param_names()}")
        fresh = type(self)(**{**self.get_params(), **params})
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
        return self

    def clone(self) -> Estimator:
        """A new, unfitted estimator with the same settings (copied: no setting is shared with this one)."""
        import copy

        return type(self)(**copy.deepcopy(self.get_params()))

    def optimal_prior(self) -> dict | None:
        """The CPT prior, as a study's ``prior`` gives it (``{"kind", "params"}``), under which this estimator
        minimizes ``tags.reference_for``; None when it is no reference. Only under that exact prior is it optimal."""
        return None

    def prepare(self, graph: Graph, prior, seed: int = 0) -> Estimator:
        """Learn whatever depends only on the task distribution, once per study.

        A no-op for estimators that learn everything in context; the trained
        transformer trains (or loads its cached model) here. ``prior`` is the
        CPT prior the study's tasks are drawn from.
        """
        return self

    def pending_training(self, graph: Graph, prior, seed: int = 0) -> str | None:
        """What ``prepare`` would train (a key naming the training, e.g. its cache entry), or None when it
        trains nothing or loads a finished model: lets a study price itself before anything runs."""
        return None

    def fit(self, graph: Graph, contexts: torch.Tensor) -> Estimator:
        raise NotImplementedError

    def predict_proba(self, queries: torch.Tensor, nodes: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Validate the queries (fitted? states in range? shape? node indices?), then answer them."""
        queries, nodes = self._check_queries(queries, nodes)
        return self._predict_proba(queries, nodes)

    def _predict_proba(self, queries: torch.Tensor, nodes: list[int]) -> list[torch.Tensor]:
        """The answer to queries already validated by ``_check_queries``: what an estimator implements.

        An estimator that implements only the public ``predict_proba`` (one written against the interface
        before this method existed) is answered through it, so it still generates, validating each call."""
        if type(self).predict_proba is Estimator.predict_proba:
            raise NotImplementedError(f"{type(self).__name__} implements neither _predict_proba nor predict_proba")
        return self.predict_proba(queries, nodes)

    def _generate(self, x: torch.Tensor, u: torch.Tensor) -> None:
        """Fill ``x`` (validated states, (B, n, M)) in topological order: ``x_m`` is the inverse-CDF draw from
        ``u[..., m]`` of the predictive given the columns drawn before it. One prediction per node by default;
        an estimator that can carry work from node to node (the naive prefix MLE) does it here."""
        for m in range(x.shape[-1]):  # x[..., m:] are not drawn yet; the prediction of x_m ignores them
            probs = self._predict_proba(x, [m])[0].to(u.device)
            x[..., m] = draw_categorical(probs, u[..., m])

    def predict(self, queries: torch.Tensor, nodes: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Each requested node's predictive distribution in its family's layout (see the module docstring)."""
        return self.predict_proba(queries, nodes)

    # ----- shared helpers -------------------------------------------------
    read_data = staticmethod(check_data)  # validates contexts and queries of this estimator's variables

    def _start_fit(self, graph: Graph, contexts) -> torch.Tensor:
        if not isinstance(graph, Graph):
            raise BNError(f"{self.name}: fit needs a Graph, got {type(graph).__name__}")
        contexts = self.read_data(graph, contexts, "context")
        if contexts.dim() != 3:
            raise BNError(f"context must have shape (B, N, M), got {tuple(contexts.shape)}")
        self.graph_ = graph
        self.n_contexts_ = contexts.shape[0]
        return contexts

    def _check_queries(self, queries, nodes) -> tuple[torch.Tensor, list[int]]:
        if not hasattr(self, "graph_"):
            raise BNError(f"{self.name}: call fit before predict")
        g = self.graph_
        queries = self.read_data(g, queries, "query")
        if queries.dim() != 3 or queries.shape[0] != self.n_contexts_:
            raise BNError(
                f"queries must have shape (B={self.n_contexts_}, Q, {g.n_nodes}), got {tuple(queries.shape)}"
            )
        nodes = list(range(g.n_nodes)) if nodes is None else [int(m) for m in nodes]
        for m in nodes:
            if not 0 <= m < g.n_nodes:
                raise BNError(f"target node index {m} out of range 0..{g.n_nodes - 1}")
        return queries, nodes

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({settings})"


class TableEstimator(Estimator):
    """An estimator that ends up with full CPTs; predictions are CPT look-ups."""

    def _predict_proba(self, queries, nodes):
        queries = queries.to(self.cpts_[0].device)
        batch = torch.arange(queries.shape[0], device=queries.device)[:, None]
        return [self.cpts_[m][batch, self.graph_.config_index(queries, m)] for m in nodes]


class GaussianEstimator(Estimator):
    """An estimator of a linear-Gaussian network: float contexts, Student-t (or Normal) predictions."""

    tags = Tags(variables="gaussian")
    network_: GaussianBatch | None = None
    read_data = staticmethod(check_real_data)

    def predict_proba(self, queries, nodes=None):
        raise BNError(f"{self.name}: a linear-Gaussian prediction is a density, not a table; call predict")


class AREstimator(Estimator):
    """An estimator of an autoregressive process: fit on prefixes ``(B, t, d)``, predict the next state.

    ``predict(queries, nodes)`` returns, for each requested coordinate m, ``(B, Q, 3)``: the Normal
    (``df = inf``) or Student-t predictive ``(df, loc, scale)`` of ``s_{t+1, m}``, repeated for the Q
    query rows, whose values (the true next state) are never read. A point forecaster
    (``tags.point_forecast``) puts its forecast in ``loc`` and 0 in ``scale``.
    """

    tags = Tags(variables="autoregressive")
    transition_: torch.Tensor | None = None  # (B, d, d): the fitted W, or None when the estimator has none
    read_data = staticmethod(check_states)

    def predict_proba(self, queries, nodes=None):
        raise BNError(f"{self.name}: the prediction of a next state is a density, not a table; call predict")
