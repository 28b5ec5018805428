"""The trained transformer for linear-Gaussian networks, behind the common estimator interface::

    est = TrainedGaussianTransformer({"steps": 3000})
    est.prepare(graph, NIGPrior(), seed=0)   # trains on the prior's tasks, or loads the cached model
    est.fit(graph, contexts).predict(queries)  # list over nodes of (B, Q, 3) Student-t (df, loc, scale)
    est.history_                               # the training curve

As for the discrete :class:`TrainedTransformer`, ``prepare`` trains (once per study and seed; cached,
resumable) and ``fit`` only stores the contexts.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import GaussianEstimator, SettingsTags, Tags
from bncompare.networks.graph import Graph
from bncompare.transformer.checkpoint import graph_signature, kept_step, model_at_step, pending_entry, trained_model
from bncompare.transformer.gaussian_tokens import PREDICTION_WIDTH, GaussianLayout, encode_gaussian
from bncompare.transformer.model import InContextTransformer
from bncompare.transformer.readouts import READOUTS, ConjugateReadout
from bncompare.transformer.train_gaussian import GaussianTrainConfig, preset


class GaussianTransformerEstimator(GaussianEstimator):
    """Any Gaussian :class:`InContextTransformer` as an estimator: ``fit`` stores the contexts, ``predict``
    encodes contexts and queries (:mod:`gaussian_tokens`) and runs the model in chunks of contexts and queries."""

    name = "transformer_gaussian"

    def __init__(self, model: InContextTransformer, batch_size: int = 256, max_query_tokens: int = 256,
                 name: str | None = None):
        self.model = model
        self.batch_size = batch_size
        self.max_query_tokens = max_query_tokens
        if name:
            self.name = name

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        layout = GaussianLayout(graph.n_nodes)
        if layout.d_in != self.model.cfg.d_in or self.model.cfg.d_out != PREDICTION_WIDTH:
            raise BNError(f"{self.name}: the model reads tokens of width {self.model.cfg.d_in}, this graph's are "
                          f"{layout.d_in}: it was built for another network")
        self.contexts_ = contexts
        return self

    @torch.no_grad()
    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)
        param = next(self.model.parameters())
        device, dtype = param.device, param.dtype
        ctx, queries = self.contexts_.to(device), queries.to(device)
        B, N, _ = ctx.shape
        Q, T = queries.shape[1], len(nodes)
        q_chunk = max(1, self.max_query_tokens // T)  # queries never see each other: chunks change nothing
        self.model.eval()
        out = torch.empty(B, Q, T, PREDICTION_WIDTH, dtype=torch.float64, device=device)
        for q0 in range(0, Q, q_chunk):
            qs = queries[:, q0 : q0 + q_chunk]
            for s in range(0, B, self.batch_size):
                tokens = encode_gaussian(ctx[s : s + self.batch_size], qs[s : s + self.batch_size], nodes, dtype)
                o = self.model(tokens, N)
                out[s : s + self.batch_size, q0 : q0 + q_chunk] = o.reshape(o.shape[0], qs.shape[1], T, -1).double()
        return [out[:, :, j] for j in range(T)]


class TrainedGaussianTransformer(GaussianEstimator):
    """The project's transformer trained on linear-Gaussian tasks from the study's prior.

    Tokens are real-valued rows (:mod:`gaussian_tokens`); a query for node m shows the values of the nodes
    before m. The training loss is KL(true conditional || prediction) (:mod:`train_gaussian`).

    With the default readout (``output="conjugate"``, :class:`readouts.ConjugateReadout`) the model LEARNS,
    for each target node, which earlier nodes are its parents and the prior of its regression (per
    regressor a precision and a mean; the noise prior a, b): a linear head reads them off the final
    state of a structure token (it shows only its target's one-hot and attends to the context) after the
    transformer's embedding, attention and MLP. It COMPUTES (``computed_parts``):

    - per-node in-context moments: sums over context rows of z z' for z = (1, x_1..x_M);
    - the Normal-inverse-gamma update of each target on its moments, given the learned prior;
    - that update's Student-t posterior predictive.

    With ``output="student_t"`` nothing is computed (``computed_parts`` of that model is empty).
    """

    name = "transformer_gaussian_trained"
    # has_attention stays False: the attention diagnostics match discrete parent values
    tags = SettingsTags(Tags(family="trained", variables="gaussian", has_history=True, one_structure=True),
                        ConjugateReadout.computed_parts)
    computed_parts: tuple[str, ...] = ConjugateReadout.computed_parts  # the default model's

    def __init__(self, train_cfg: GaussianTrainConfig | dict | None = None, cache_dir=None, progress: bool = True,
                 batch_size: int = 256, at_fraction: float | None = None, preset: str = "default"):
        self.train_cfg = train_cfg
        self.preset = preset  # a training preset by network size (train_gaussian.PRESETS); train_cfg overrides it
        self.cache_dir = cache_dir
        self.progress = progress
        self.batch_size = batch_size
        # None: the trained model; f in (0, 1): the same training's weights at the kept step nearest f x steps
        self.at_fraction = at_fraction

    def config(self, seed: int = 0) -> GaussianTrainConfig:
        """The GaussianTrainConfig this estimator trains with for ``seed``."""
        cfg = self.train_cfg
        if cfg is None:
            cfg = GaussianTrainConfig.from_dict(preset(self.preset))
        elif isinstance(cfg, dict):
            cfg = GaussianTrainConfig.from_dict({**preset(self.preset), **cfg})
        elif not isinstance(cfg, GaussianTrainConfig):
            raise BNError(f"{self.name}: train_cfg must be a GaussianTrainConfig, a dict or None, "
                          f"got {type(cfg).__name__}")
        return replace(cfg, seed=int(seed))

    def get_params(self) -> dict:
        """The settings, with ``train_cfg`` as the full config it trains with (defaults included, seed aside)."""
        params = super().get_params()
        params["train_cfg"] = {k: v for k, v in self.config(0).to_dict().items() if k != "seed"}
        return params

    def model_computed_parts(self) -> tuple[str, ...]:
        """What the configured model computes rather than learns (its readout declares it; none for
        ``student_t``)."""
        return READOUTS[self.config(0).model.output].computed_parts

    def pending_training(self, graph: Graph, prior, seed: int = 0) -> str | None:
        """The cache entry ``prepare`` would train into, or None when its model is cached already."""
        return pending_entry(graph, prior, self.config(seed), self.cache_dir)

    def prepare(self, graph: Graph, prior, seed: int = 0):
        if not isinstance(graph, Graph):
            raise BNError(f"{self.name}: prepare needs a Graph, got {type(graph).__name__}")
        if graph.variables != "gaussian":
            raise BNError(f"{self.name}: prepare needs a Graph with variables='gaussian', got {graph.variables!r}")
        cfg = self.config(seed)
        self.model_, self.history_ = trained_model(graph, prior, cfg, self.cache_dir, self.progress)
        if self.at_fraction is not None and self.at_fraction != 1:
            step = kept_step(cfg, self.at_fraction)
            self.model_ = model_at_step(graph, prior, cfg, step, self.cache_dir)
            self.steps_ = step
            self.history_ = []
        self.prepared_graph_ = graph
        self.estimator_ = GaussianTransformerEstimator(self.model_, batch_size=self.batch_size, name=self.name)
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
