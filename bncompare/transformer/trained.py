"""The trained transformer behind the common estimator interface::

    est = TrainedTransformer({"steps": 3000})
    est.prepare(graph, DirichletPrior(1.0), seed=0)   # trains, or loads the cached model
    est.fit(graph, contexts).predict_proba(queries)
    est.history_                                      # the training curve

``prepare`` is where the training happens (once per study and seed); ``fit``
only stores the contexts, as for any in-context estimator.
"""
from __future__ import annotations

from dataclasses import replace

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, Tags
from bncompare.networks.graph import Graph
from bncompare.transformer.checkpoint import graph_signature, kept_step, model_at_step, trained_model
from bncompare.transformer.estimator import TransformerEstimator
from bncompare.transformer.train import TrainConfig


class TrainedTransformer(Estimator):
    name = "transformer_trained"
    tags = Tags(family="trained", has_attention=True, has_history=True, one_structure=True)

    def __init__(self, train_cfg: TrainConfig | dict | None = None, cache_dir=None, progress: bool = True,
                 batch_size: int = 256, at_fraction: float | None = None):
        self.train_cfg = train_cfg
        self.cache_dir = cache_dir
        self.progress = progress
        self.batch_size = batch_size
        # None: the trained model; f in (0, 1): the same training's weights at the kept step nearest f x steps
        self.at_fraction = at_fraction

    def config(self, seed: int = 0) -> TrainConfig:
        """The TrainConfig this estimator trains with for ``seed``."""
        cfg = self.train_cfg
        if cfg is None:
            cfg = TrainConfig()
        elif isinstance(cfg, dict):
            cfg = TrainConfig.from_dict(cfg)
        elif not isinstance(cfg, TrainConfig):
            raise BNError(f"{self.name}: train_cfg must be a TrainConfig, a dict or None, got {type(cfg).__name__}")
        return replace(cfg, seed=int(seed))

    def get_params(self) -> dict:
        """The settings, with ``train_cfg`` as the full TrainConfig it trains with (defaults included, seed aside)."""
        params = super().get_params()
        params["train_cfg"] = {k: v for k, v in self.config(0).to_dict().items() if k != "seed"}
        return params

    def training_task(self, graph: Graph, prior):
        """The (graph, prior) the model trains on: the study's own, for this estimator."""
        return graph, prior

    def check_graph(self, graph: Graph) -> None:
        """Refuse to fit a graph the model was not prepared for."""
        if graph_signature(graph) != graph_signature(self.prepared_graph_):
            raise BNError(f"{self.name}: fit got graph {graph!r} "
                          f"but the model was prepared for {self.prepared_graph_!r}")

    def prepare(self, graph: Graph, prior, seed: int = 0):
        if not isinstance(graph, Graph):
            raise BNError(f"{self.name}: prepare needs a Graph, got {type(graph).__name__}")
        train_graph, train_prior = self.training_task(graph, prior)
        cfg = self.config(seed)
        self.model_, self.history_ = trained_model(train_graph, train_prior, cfg, self.cache_dir, self.progress)
        if self.at_fraction is not None and self.at_fraction != 1:
            step = kept_step(cfg, self.at_fraction)
            self.model_ = model_at_step(train_graph, train_prior, cfg, step, self.cache_dir)
            self.steps_ = step
            self.history_ = []  # the training curve is the finished model's (its own estimator draws it)
        self.prepared_graph_ = graph
        self.estimator_ = TransformerEstimator(self.model_, batch_size=self.batch_size, name=self.name)
        return self

    def fit(self, graph, contexts):
        if not hasattr(self, "estimator_"):
            raise BNError(f"{self.name}: call prepare(graph, prior, seed) before fit; it trains or loads the model")
        if isinstance(graph, Graph):
            self.check_graph(graph)
        self.estimator_.fit(graph, contexts)
        self.graph_, self.n_contexts_ = self.estimator_.graph_, self.estimator_.n_contexts_
        return self

    def predict_proba(self, queries, nodes=None):
        if not hasattr(self, "graph_"):
            raise BNError(f"{self.name}: call fit before predict_proba")
        return self.estimator_.predict_proba(queries, nodes)
