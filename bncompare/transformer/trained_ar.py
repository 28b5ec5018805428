"""The project's softmax transformer trained to forecast the next state of an autoregressive process::

    est = TrainedARTransformer({"steps": 3000})
    est.prepare(ar_graph(5), ARPrior("commuting"), seed=0)  # trains on the prior's sequences, or loads the cache
    est.fit(graph, prefixes).predict(queries)  # list over coordinates of (B, Q, 3): (inf, forecast, 0)
    est.history_                               # the training curve

As for the other trained models, ``prepare`` trains (once per study and seed; cached, resumable) and
``fit`` only stores the prefixes.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import AREstimator, Tags
from bncompare.networks.graph import Graph
from bncompare.transformer.ar_tokens import ARLayout, encode_ar
from bncompare.transformer.checkpoint import graph_signature, kept_step, model_at_step, pending_entry, trained_model
from bncompare.transformer.model import InContextTransformer
from bncompare.transformer.train_ar import ARTrainConfig, preset


class ARTransformerEstimator(AREstimator):
    """Any autoregressive :class:`InContextTransformer` as an estimator: ``fit`` stores the prefixes, ``predict``
    encodes them (:mod:`ar_tokens`, positions scaled by ``horizon``) and runs the model in chunks of prefixes."""

    name = "transformer_ar"
    tags = Tags(family="trained", variables="autoregressive", point_forecast=True)

    def __init__(self, model: InContextTransformer, horizon: int, batch_size: int = 256, name: str | None = None):
        self.model = model
        self.horizon = horizon
        self.batch_size = batch_size
        if name:
            self.name = name

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        layout = ARLayout(graph.n_nodes)
        if layout.d_in != self.model.cfg.d_in or layout.d_out != self.model.cfg.d_out:
            raise BNError(f"{self.name}: the model forecasts states of dimension {self.model.cfg.d_out}, this "
                          f"process has d={graph.n_nodes}: it was built for another process")
        if contexts.shape[1] < 1:
            raise BNError(f"{self.name}: a prefix needs at least one state, got t=0")
        self.contexts_ = contexts
        self.forecast_ = None
        return self

    @torch.no_grad()
    def _forecast(self) -> torch.Tensor:
        """(B, d) float64: the forecast of s_{t+1} for each stored prefix (computed once per fit)."""
        if self.forecast_ is None:
            param = next(self.model.parameters())
            ctx = self.contexts_.to(param.device)
            t = ctx.shape[1]
            self.model.eval()
            parts = [self.model(encode_ar(ctx[s : s + self.batch_size], self.horizon, param.dtype), t)[:, 0]
                     for s in range(0, ctx.shape[0], self.batch_size)]
            self.forecast_ = torch.cat(parts).double().cpu()
        return self.forecast_

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)  # their shape only: their values are never read
        f = self._forecast()
        Q = queries.shape[1]
        out = []
        for m in nodes:
            loc = f[:, m, None].expand(-1, Q)
            out.append(torch.stack([torch.full_like(loc, math.inf), loc, torch.zeros_like(loc)], -1))
        return out


class TrainedARTransformer(AREstimator):
    """The project's softmax transformer (:class:`InContextTransformer`: sink, context rows, one query token,
    several layers, full attention among the context rows) trained to forecast s_{t+1} from a prefix
    s_1 .. s_t of the study prior's sequences, by the squared error (:mod:`train_ar`).

    Tokens (:mod:`ar_tokens`): one per state with the pair (s_tau, s_{tau-1}) and positional features; one
    query token with s_t. The readout is a linear head of width d: the forecast. A point forecaster: its
    scale is 0. Nothing is computed for it (``computed_parts`` is empty): the token features (the pair
    and the positions) are the only code between the prefix and the network.
    """

    name = "transformer_ar_trained"
    tags = Tags(family="trained", variables="autoregressive", has_history=True, one_structure=True,
                point_forecast=True)
    computed_parts: tuple[str, ...] = ()

    def __init__(self, train_cfg: ARTrainConfig | dict | None = None, cache_dir=None, progress: bool = True,
                 batch_size: int = 256, at_fraction: float | None = None, preset: str = "default"):
        self.train_cfg = train_cfg
        self.preset = preset  # a training preset (train_ar.PRESETS); train_cfg overrides it
        self.cache_dir = cache_dir
        self.progress = progress
        self.batch_size = batch_size
        # None: the trained model; f in (0, 1): the same training's weights at the kept step nearest f x steps
        self.at_fraction = at_fraction

    def config(self, seed: int = 0) -> ARTrainConfig:
        """The ARTrainConfig this estimator trains with for ``seed``."""
        cfg = self.train_cfg
        if cfg is None:
            cfg = ARTrainConfig.from_dict(preset(self.preset))
        elif isinstance(cfg, dict):
            cfg = ARTrainConfig.from_dict({**preset(self.preset), **cfg})
        elif not isinstance(cfg, ARTrainConfig):
            raise BNError(f"{self.name}: train_cfg must be an ARTrainConfig, a dict or None, got {type(cfg).__name__}")
        return replace(cfg, seed=int(seed))

    def get_params(self) -> dict:
        """The settings, with ``train_cfg`` as the full config it trains with (defaults included, seed aside)."""
        params = super().get_params()
        params["train_cfg"] = {k: v for k, v in self.config(0).to_dict().items() if k != "seed"}
        return params

    def pending_training(self, graph: Graph, prior, seed: int = 0) -> str | None:
        """The cache entry ``prepare`` would train into, or None when its model is cached already."""
        return pending_entry(graph, prior, self.config(seed), self.cache_dir)

    def prepare(self, graph: Graph, prior, seed: int = 0):
        if not isinstance(graph, Graph):
            raise BNError(f"{self.name}: prepare needs a Graph, got {type(graph).__name__}")
        if graph.variables != "autoregressive":
            raise BNError(f"{self.name}: prepare needs a Graph with variables='autoregressive', "
                          f"got {graph.variables!r}")
        cfg = self.config(seed)
        self.model_, self.history_ = trained_model(graph, prior, cfg, self.cache_dir, self.progress)
        if self.at_fraction is not None and self.at_fraction != 1:
            step = kept_step(cfg, self.at_fraction)
            self.model_ = model_at_step(graph, prior, cfg, step, self.cache_dir)
            self.steps_ = step
            self.history_ = []
        self.prepared_graph_ = graph
        self.estimator_ = ARTransformerEstimator(self.model_, cfg.n_context_max, batch_size=self.batch_size,
                                                 name=self.name)
        return self

    def fit(self, graph, contexts):
        if not hasattr(self, "estimator_"):
            raise BNError(f"{self.name}: call prepare(graph, prior, seed) before fit; it trains or loads the model")
        if isinstance(graph, Graph) and graph_signature(graph) != graph_signature(self.prepared_graph_):
            raise BNError(f"{self.name}: fit got graph {graph!r} but the model was prepared for "
                          f"{self.prepared_graph_!r}")
        self.estimator_.fit(graph, contexts)
        self.graph_, self.n_contexts_ = self.estimator_.graph_, self.estimator_.n_contexts_
        return self

    def predict(self, queries, nodes=None):
        if not hasattr(self, "graph_"):
            raise BNError(f"{self.name}: call fit before predict")
        return self.estimator_.predict(queries, nodes)
