"""The one-layer linear transformer on augmented tokens as autoregressive estimators (:mod:`linear_attention`)::

    est = ConstructedLinearTF(horizon=50).prepare(graph, prior)   # the one-GD-step weights at the optimal step
    est = TrainedLinearTF(horizon=50).prepare(graph, prior, seed)  # trains (or loads the cached layer)
    est.fit(graph, contexts).predict(queries)  # list over coordinates of (B, Q, 3): (inf, forecast, 0)

Both are point forecasters: the forecast of ``s_{t+1}`` from the prefix ``s_1 .. s_t`` is the layer's output at
position t; ``transition_`` is the linear map the layer applies to ``s_t`` (``eta A_t`` for the constructed one;
for a trained layer also a part of the forecast may come from the query's ``s_{t-1}``, which it leaves out).
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.autoregressive import optimal_step
from bncompare.estimators.base import AREstimator, Tags
from bncompare.networks.graph import Graph
from bncompare.transformer.linear_attention import (
    STREAM_TEST,
    HeldOut,
    LinearAttention,
    LinearTrainConfig,
    constructed_layer,
    gd_weights,
    map_distance,
    prediction_map,
    stream_seed,
    trained_linear,
)

N_TEST = 4096  # held-out sequences behind artifacts_["test_err"]


def _check_prepare(name: str, graph, prior) -> None:
    if not isinstance(graph, Graph) or graph.variables != "autoregressive":
        raise BNError(f"{name}: prepare needs the Graph of an autoregressive process (ar_graph), got {graph!r}")
    if getattr(prior, "variables", None) != "autoregressive":
        raise BNError(f"{name}: prepare needs an ARPrior, got {type(prior).__name__}")


def _check_horizon(name: str, horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise BNError(f"{name}: horizon (the longest prefix T) must be an integer >= 1, got {horizon!r}")
    return horizon


class _LinearLayerEstimator(AREstimator):
    """Fit stores the forecast of the last position of each prefix; predict repeats it for every query row."""

    def _layer_for(self, graph: Graph) -> LinearAttention:
        raise NotImplementedError

    def fit(self, graph, contexts):
        layer = self._layer_for(graph)
        contexts = self._start_fit(graph, contexts)
        if contexts.shape[1] < 1:
            raise BNError(f"{self.name}: a context needs at least one state, got shape {tuple(contexts.shape)}")
        with torch.no_grad():
            f, W = layer.last(contexts.to(layer.W_PV.device))
        self.forecast_ = f.double().cpu()
        self.transition_ = W.double().cpu()
        return self

    def predict(self, queries, nodes=None):
        queries, nodes = self._check_queries(queries, nodes)  # shape only: the values are never read
        B, Q = queries.shape[:2]
        out = []
        for m in nodes:
            loc = self.forecast_[:, m, None].expand(B, Q)
            out.append(torch.stack([torch.full((B, Q), float("inf"), dtype=torch.float64), loc,
                                    torch.zeros(B, Q, dtype=torch.float64)], -1))
        return out


class ConstructedLinearTF(_LinearLayerEstimator):
    """The linear layer with the closed-form weights of one GD step from W = 0 (forecast ``eta A_t s_t``);
    ``step=None`` takes the optimal step for the prior (``optimal_step(prior, d, horizon)``, in ``prepare``)."""

    name = "ar_constructed_linear"
    tags = Tags(family="constructed", variables="autoregressive", point_forecast=True)

    def __init__(self, horizon: int = 50, step: float | None = None):
        self.horizon = horizon
        self.step = step

    def prepare(self, graph, prior, seed: int = 0):
        _check_prepare(self.name, graph, prior)
        horizon = _check_horizon(self.name, self.horizon)
        self.step_ = float(self.step) if self.step is not None else optimal_step(prior, graph.n_nodes, horizon)
        self.layer_ = constructed_layer(graph.n_nodes, self.step_)
        return self

    def _layer_for(self, graph):
        if not isinstance(graph, Graph):
            raise BNError(f"{self.name}: fit needs a Graph, got {type(graph).__name__}")
        layer = getattr(self, "layer_", None)
        if layer is None or layer.d != graph.n_nodes:
            if self.step is None:
                raise BNError(f"{self.name}: call prepare(graph, prior) before fit (it computes the optimal step), "
                              "or give step")
            self.step_ = float(self.step)
            self.layer_ = layer = constructed_layer(graph.n_nodes, self.step_)
        return layer


class TrainedLinearTF(_LinearLayerEstimator):
    """The linear layer trained on the prior's sequences as in Sander et al. (:func:`linear_attention.train_linear`;
    cached). ``artifacts_`` holds the weights next to the one-GD-step solution at the optimal step, the prediction
    maps, their distance and the held-out error per t (see :mod:`linear_attention` for the definitions)."""

    name = "ar_trained_linear"
    tags = Tags(family="trained", variables="autoregressive", one_structure=True, point_forecast=True,
                has_history=True, has_artifacts=True)

    def __init__(self, horizon: int = 50, steps: int = 1000, batch_size: int = 1024, lr: float = 1e-2,
                 decay_fraction: float = 0.5, lr_final: float = 0.01, init_std: float = 1e-2,
                 eval_every: int = 100, n_eval: int = 1024, free: str = "all", device: str = "cpu", cache_dir=None,
                 progress: bool = True):
        self.horizon = horizon
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.decay_fraction = decay_fraction
        self.lr_final = lr_final
        self.init_std = init_std
        self.eval_every = eval_every
        self.n_eval = n_eval
        self.free = free
        self.device = device
        self.cache_dir = cache_dir
        self.progress = progress

    def config(self, seed: int = 0) -> LinearTrainConfig:
        return LinearTrainConfig(horizon=self.horizon, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                 decay_fraction=self.decay_fraction, lr_final=self.lr_final, init_std=self.init_std,
                                 eval_every=self.eval_every, n_eval=self.n_eval, free=self.free, seed=int(seed),
                                 device=self.device)

    def prepare(self, graph, prior, seed: int = 0):
        _check_prepare(self.name, graph, prior)
        cfg = self.config(seed)
        d = graph.n_nodes
        eta = optimal_step(prior, d, cfg.horizon)
        layer, self.history_, self.cache_entry_ = trained_linear(prior, d, cfg, eta, self.cache_dir, self.progress)
        self.layer_, self.prepared_graph_, self.step_ = layer, graph, eta
        self.artifacts_ = artifacts(layer, prior, cfg, eta)
        return self

    def _layer_for(self, graph):
        if not hasattr(self, "layer_"):
            raise BNError(f"{self.name}: call prepare(graph, prior, seed) before fit; it trains or loads the layer")
        if not isinstance(graph, Graph) or graph.n_nodes != self.layer_.d or graph.variables != "autoregressive":
            raise BNError(f"{self.name}: fit got graph {graph!r} but the layer was trained for "
                          f"{self.prepared_graph_!r}")
        return self.layer_


def _nested(x: torch.Tensor) -> list:
    return x.detach().double().cpu().tolist()


def artifacts(layer: LinearAttention, prior, cfg: LinearTrainConfig, eta: float) -> dict:
    """The JSON-able weights, maps, map distance and held-out errors per t of a trained layer (test stream)."""
    d = layer.d
    W_PV_gd, W_KQ_gd = gd_weights(d, eta)
    test = HeldOut(prior, d, cfg.horizon, eta, N_TEST, stream_seed(cfg.seed, STREAM_TEST), least_squares=False)
    forecasts = test.forecasts(layer)
    err = ((forecasts - test.sequences[:, 1:]) ** 2).sum(-1).mean(0)
    return {"W_KQ": _nested(layer.W_KQ), "W_PV": _nested(layer.W_PV), "W_KQ_gd": _nested(W_KQ_gd),
            "W_PV_gd": _nested(W_PV_gd), "map_learned": _nested(prediction_map(layer.W_PV, layer.W_KQ)),
            "map_gd": _nested(prediction_map(W_PV_gd, W_KQ_gd)),
            "map_distance": map_distance(layer.W_PV.detach(), layer.W_KQ.detach(), W_PV_gd, W_KQ_gd), "step": eta,
            "forecast_distance": test.forecast_distance(forecasts),
            "test_err": {t + 1: float(e) for t, e in enumerate(err)},
            "test_gd_err": {t + 1: float(e) for t, e in enumerate(test.gd_err)}}
