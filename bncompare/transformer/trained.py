"""The trained transformer behind the common estimator interface::

    est = TrainedTransformer({"steps": 3000})
    est.prepare(graph, DirichletPrior(1.0), seed=0)   # trains, or loads the cached model
    est.fit(graph, contexts).predict_proba(queries)
    est.history_                                      # the training curve

``prepare`` is where the training happens (once per study and seed); ``fit``
only stores the contexts, as for any in-context estimator.

``recipe`` puts a named set of settings (:data:`RECIPES`) on top of ``train_cfg``, keeping its budget
(steps, batch, width, context lengths): ``"paper"`` is the paper's plain architecture (a linear head,
ReLU MLP, full attention, fixed scale; nothing computed), ``"paper_mle"`` the same trained to imitate
the context's MLE, as the paper's public code does. What a model computes rather than learns follows
from the settings it ends up with (``tags.computed``).
"""
from __future__ import annotations

from dataclasses import replace

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, SettingsTags, Tags
from bncompare.networks.graph import Graph
from bncompare.transformer.checkpoint import graph_signature, kept_step, model_at_step, pending_entry, trained_model
from bncompare.transformer.estimator import TransformerEstimator
from bncompare.transformer.model import TransformerConfig
from bncompare.transformer.readouts import READOUTS
from bncompare.transformer.train import TrainConfig

# Named settings put over a train_cfg (the model's under "model"). "paper" is the recipe before the
# learning benchmark (docs/levers.md, the `paper` lever): the paper's plain architecture and length schedule.
PAPER = dict(model=dict(context_attention="full", mlp="relu", query_view="prefix", attn_scale="fixed", n_head=4,
                        output="logits", match_scores=False),
             length_groups=1, loss_weight_power=0.0, context_sampling="loguniform")
RECIPES = {
    "default": {},
    "paper": PAPER,
    "paper_mle": {**PAPER, "loss": "mle"},  # the paper's public code's target: imitate the context's MLE
}


def computed_parts(model: TransformerConfig) -> tuple[str, ...]:
    """What a model of these settings computes rather than learns (``Tags.computed``): its readout's parts,
    then the encoder's and the attention's; () when its answer is learned end to end."""
    parts = READOUTS[model.output].computed(model)
    if model.query_view == "parents":
        parts += ("parents-only queries: the encoder shows a query only its target's parents, read from the graph",)
    if model.attn_scale == "log_n":
        parts += ("log-n attention scale: every logit multiplied by the log of the number of keys",)
    return parts


def with_recipe(cfg: TrainConfig, recipe: str) -> TrainConfig:
    """``cfg`` with the settings of ``RECIPES[recipe]`` over it."""
    if recipe not in RECIPES:
        raise BNError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
    over = RECIPES[recipe]
    rest = {k: v for k, v in over.items() if k != "model"}
    return replace(cfg, **rest, model=replace(cfg.model, **over.get("model", {})))


class TrainedTransformer(Estimator):
    name = "transformer_trained"
    tags = SettingsTags(Tags(family="trained", has_attention=True, has_history=True, one_structure=True),
                        computed_parts(TrainConfig().model))

    def __init__(self, train_cfg: TrainConfig | dict | None = None, cache_dir=None, progress: bool = True,
                 batch_size: int = 256, at_fraction: float | None = None, recipe: str = "default"):
        self.train_cfg = train_cfg
        self.cache_dir = cache_dir
        self.progress = progress
        self.batch_size = batch_size
        # None: the trained model; f in (0, 1): the same training's weights at the kept step nearest f x steps
        self.at_fraction = at_fraction
        self.recipe = recipe  # a key of RECIPES, put over train_cfg

    def config(self, seed: int = 0) -> TrainConfig:
        """The TrainConfig this estimator trains with for ``seed``."""
        cfg = self.train_cfg
        if cfg is None:
            cfg = TrainConfig()
        elif isinstance(cfg, dict):
            cfg = TrainConfig.from_dict(cfg)
        elif not isinstance(cfg, TrainConfig):
            raise BNError(f"{self.name}: train_cfg must be a TrainConfig, a dict or None, got {type(cfg).__name__}")
        return replace(with_recipe(cfg, self.recipe), seed=int(seed))

    def model_computed_parts(self) -> tuple[str, ...]:
        """What the model it trains computes rather than learns (``tags.computed``), from its settings."""
        return computed_parts(self.config(0).model)

    def get_params(self) -> dict:
        """The settings, with ``train_cfg`` as the full TrainConfig it trains with (defaults included, seed aside)."""
        params = super().get_params()
        params["train_cfg"] = {k: v for k, v in self.config(0).to_dict().items() if k != "seed"}
        return params

    def training_task(self, graph: Graph, prior):
        """The (graph, prior) the model trains on: the study's own, for this estimator."""
        return graph, prior

    def pending_training(self, graph: Graph, prior, seed: int = 0) -> str | None:
        """The cache entry ``prepare`` would train into, or None when its model is cached already."""
        train_graph, train_prior = self.training_task(graph, prior)
        return pending_entry(train_graph, train_prior, self.config(seed), self.cache_dir)

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
        return super().predict_proba(queries, nodes)

    def _predict_proba(self, queries, nodes):
        return self.estimator_._predict_proba(queries, nodes)

    def _generate(self, x, u):
        self.estimator_._generate(x, u)
