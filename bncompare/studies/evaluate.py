"""Every metric of one cell (estimator, N), as tidy frames: columns episode, node, metric, value.

:func:`evaluate_cell` walks the cell's batches of episodes; for each batch it fits
and times the estimator, then asks pure functions for their rows:
:func:`conditional_rows` (errors at the query's parents), :func:`agreement_rows`
(against the estimator it mirrors), :func:`fidelity_rows` (joint or Monte Carlo
distances) and :func:`attention_rows` (estimators tagged ``has_attention``).
Calibration pools the whole cell: :func:`calibration_rows` turns the bin sums of
every episode into cell rows (``episode = CELL``): the reliability diagram and ECE.
The numbers come from :mod:`bncompare.metrics`; their statistics are made later,
by :func:`bncompare.metrics.summary.cell_summary`.

Those are the rows of a discrete network. What is measured depends on the kind of
variables, so :data:`METRIC_SETS` gives one :class:`MetricSet` per kind
(``Graph.variables``); linear-Gaussian rows are in :mod:`bncompare.studies.evaluate_gaussian`, those of an
autoregressive process in :mod:`bncompare.studies.evaluate_autoregressive`.
The loop of :func:`evaluate_cell` is the same for both.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bncompare.metrics.conditional import conditional_errors, tv, unseen_mask
from bncompare.metrics.joint import exact_joint, monte_carlo, n_joint_states
from bncompare.metrics.scores import brier, calibration_sums, ece_with_se, log_loss
from bncompare.metrics.summary import CELL
from bncompare.networks.graph import Graph
from bncompare.runtime import resolve_device
from bncompare.studies.frames import COLUMNS, per_node, scalar
from bncompare.studies.protocol import SUB_GENERATED, SUB_TRUE_MC, Batch, Episodes, fit_groups
from bncompare.studies.spec import EstimatorSpec, StudySpec


def timing_rows(episodes: np.ndarray, t0: float, t1: float, t2: float) -> list[pd.DataFrame]:
    """Wall-clock cost per context: fit from t0 to t1, predict from t1 to t2."""
    B = len(episodes)
    return [scalar("fit_seconds_per_context", episodes, np.full(B, (t1 - t0) / B)),
            scalar("predict_seconds_per_context", episodes, np.full(B, (t2 - t1) / B)),
            scalar("seconds_per_context", episodes, np.full(B, (t2 - t0) / B))]


def floored(probs: list[torch.Tensor], zero_below: float) -> list[torch.Tensor]:
    """Probabilities below ``zero_below`` (an estimator's declared floor) as 0: its KL and log-loss follow the
    zero convention of the rule it computes instead of being finite only because of the floor."""
    return [torch.where(p < zero_below, 0.0, p) for p in probs] if zero_below > 0 else probs


def conditional_rows(graph: Graph, batch: Batch, probs: list[torch.Tensor]) -> list[pd.DataFrame]:
    """Conditional TV and KL at the query's parent values, the share of infinite KL and of unseen configurations."""
    ids, names = batch.episodes, graph.names
    err = conditional_errors(graph, batch.cpts, batch.queries, probs)  # (B, Q, M) each
    inf = torch.isinf(err["cond_kl"]).to(torch.float64)
    if batch.graphs is None:
        unseen = unseen_mask(graph, batch.contexts, batch.queries).to(torch.float64)
    else:  # unseen on each episode's own parents
        unseen = torch.cat([unseen_mask(g, batch.contexts[b : b + 1], batch.queries[b : b + 1])
                            for b, g in enumerate(batch.graphs)]).to(torch.float64)
    return [per_node(names, "cond_tv", ids, err["cond_tv"].mean(1), err["cond_tv"].mean((1, 2))),
            # an infinite KL anywhere makes the episode's mean infinite: reported, not clipped
            per_node(names, "cond_kl", ids, err["cond_kl"].mean(1), err["cond_kl"].mean((1, 2))),
            per_node(names, "cond_kl_inf_frac", ids, inf.mean(1), inf.mean((1, 2))),
            per_node(names, "unseen_frac", ids, unseen.mean(1), unseen.mean((1, 2)))]


def score_rows(graph: Graph, batch: Batch, probs: list[torch.Tensor]) -> list[pd.DataFrame]:
    """Proper scores of each node's prediction against the value the query row has: the held-out log-loss
    (``query_nll``, nats per query target; infinite where the value was ruled out, with its share) and the
    Brier score. Needs no truth, only the observed rows: the headline score on real data."""
    x = batch.queries
    nll = torch.stack([log_loss(p, x[..., m]) for m, p in enumerate(probs)], -1)  # (B, Q, M)
    bs = torch.stack([brier(p, x[..., m]) for m, p in enumerate(probs)], -1)
    inf = torch.isinf(nll).to(torch.float64)
    ids, names = batch.episodes, graph.names
    return [per_node(names, "query_nll", ids, nll.mean(1), nll.mean((1, 2))),
            per_node(names, "query_nll_inf_frac", ids, inf.mean(1), inf.mean((1, 2))),
            per_node(names, "brier", ids, bs.mean(1), bs.mean((1, 2)))]


def calibration_rows(names, sums: np.ndarray) -> list[pd.DataFrame]:
    """Cell rows from per-episode bin sums ``(B, M, 3, bins)``: ECE per node and overall with its bootstrap
    SE (``ece``, ``ece_sem``), and the overall reliability diagram (``calib_count@b``, ``calib_pred@b`` = mean
    forecast, ``calib_freq@b`` = observed frequency of bin b; bins of width 1/BINS)."""
    rows = []
    for j, node in enumerate(list(names) + ["all"]):
        part = sums.sum(1) if node == "all" else sums[:, j]
        value, se = ece_with_se(part)
        rows += [(node, "ece", value), (node, "ece_sem", se)]
    pooled = sums.sum((0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for b in range(pooled.shape[-1]):
            n = pooled[0, b]
            rows += [("all", f"calib_count@{b}", n), ("all", f"calib_pred@{b}", pooled[1, b] / n if n else np.nan),
                     ("all", f"calib_freq@{b}", pooled[2, b] / n if n else np.nan)]
    node, metric, value = zip(*rows)
    return [pd.DataFrame({"episode": CELL, "node": node, "metric": metric, "value": np.asarray(value, np.float64)})]


def agreement_rows(graph: Graph, batch: Batch, probs: list[torch.Tensor],
                   other: list[torch.Tensor]) -> list[pd.DataFrame]:
    """TV between two estimators' predictions per query, and their largest absolute difference."""
    gap = torch.stack([tv(p, o) for p, o in zip(probs, other)], -1)  # (B, Q, M)
    worst = torch.stack([(p - o).abs().amax((1, 2)) for p, o in zip(probs, other)], -1).amax(-1)
    return [per_node(graph.names, "agree_tv", batch.episodes, gap.mean(1), gap.mean((1, 2))),
            scalar("agree_max_abs", batch.episodes, worst)]


def fidelity_rows(est, graph: Graph, spec: StudySpec, batch: Batch, context_len: int,
                  exact: bool) -> list[pd.DataFrame]:
    """Joint TV/KL (exact) or Monte Carlo measures of ``est`` (fitted on ``batch``'s contexts)."""
    if exact:
        out = exact_joint(est, graph, batch.cpts, spec.max_exact_states)
    else:
        u = [batch.uniforms(spec.seed, context_len, sub, spec.mc_samples, graph.n_nodes)
             for sub in (SUB_GENERATED, SUB_TRUE_MC)]
        out = monte_carlo(est, graph, batch.cpts, *u)
    return [scalar(name, batch.episodes, values) for name, values in out.items()]


def attention_rows(model, graph: Graph, batch: Batch) -> list[pd.DataFrame]:
    """Attention shares of every head of every layer, per episode; rows matched on the TRUE parents
    (the episode's own DAG when it has one)."""
    from bncompare.transformer.diagnostics import attention_to_parents

    if batch.contexts.shape[1] == 0:
        return []
    # Every layer: a trained model may select parents in an early layer (the structure-agnostic one
    # does it in layer 0), so the last layer alone can miss it.
    layers = list(range(model.n_attention_layers))
    parts = []
    for b, ep in enumerate(batch.episodes):
        truth = graph if batch.graphs is None else batch.graphs[b]
        nodes = [m for m in range(truth.n_nodes) if truth.parents[m]] or None  # roots match every row
        for r in attention_to_parents(model, truth, batch.contexts[b : b + 1], batch.queries[b : b + 1], nodes,
                                      layers):
            head = f"L{r['layer']}.H{r['head']}"
            for key in ("match", "other", "sink", "self", "null", "chance"):
                parts.append(scalar(f"attn_{key}", np.array([ep]), [r[key]], node=head))
    return parts


@dataclass(frozen=True)
class MetricSet:
    """What a cell measures on networks of one kind of variables; every function returns a list of frames."""

    width: Callable  # (graph, m) -> the columns of node m's prediction
    batch_rows: Callable  # (est, graph, batch, preds) -> rows of each episode from the predictions
    fit_rows: Callable  # (est, graph, part) -> rows of the fitted estimator itself, right after its fit
    cell_sums: Callable  # (est, graph, batch, preds) -> per-episode sums pooled over the cell (np.ndarray)
    cell_rows: Callable  # (names, sums) -> rows of the whole cell (episode = CELL) from the pooled sums
    agreement_rows: Callable  # (graph, batch, preds, mirror_preds) -> rows against the mirrored estimator
    fidelity_rows: Callable  # (est, graph, spec, batch, context_len) -> joint measures of est fitted on batch


def discrete_batch_rows(est, graph: Graph, batch: Batch, probs: list[torch.Tensor]) -> list[pd.DataFrame]:
    scored = floored(probs, est.zero_below_)
    return conditional_rows(graph, batch, scored) + score_rows(graph, batch, scored)


def discrete_cell_sums(est, graph: Graph, batch: Batch, probs: list[torch.Tensor]) -> np.ndarray:
    scored = floored(probs, est.zero_below_)
    return torch.stack([calibration_sums(p, batch.queries[..., m]) for m, p in enumerate(scored)], 1).numpy()


def discrete_fidelity_rows(est, graph: Graph, spec: StudySpec, batch: Batch, context_len: int):
    return fidelity_rows(est, graph, spec, batch, context_len, n_joint_states(graph) <= spec.max_exact_states)


DISCRETE = MetricSet(lambda graph, m: graph.cards[m], discrete_batch_rows, lambda *_: [], discrete_cell_sums,
                     calibration_rows, agreement_rows, discrete_fidelity_rows)


def _gaussian() -> MetricSet:
    from bncompare.studies import evaluate_gaussian as g  # imported when a Gaussian study needs it

    return MetricSet(g.width, g.batch_rows, g.fit_rows, g.cell_sums, g.cell_rows, g.agreement_rows, g.fidelity_rows)


def _autoregressive() -> MetricSet:
    from bncompare.studies import evaluate_autoregressive as a

    return MetricSet(a.width, a.batch_rows, a.fit_rows, a.cell_sums, a.cell_rows, a.agreement_rows, a.fidelity_rows)


METRIC_SETS = {"discrete": lambda: DISCRETE, "gaussian": _gaussian, "autoregressive": _autoregressive}  # by variables


def metric_set(graph: Graph) -> MetricSet:
    """The measures of a cell on ``graph``, by the kind of its variables."""
    return METRIC_SETS[graph.variables]()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def evaluate_cell(episodes: Episodes, est, espec: EstimatorSpec, context_len: int, mirror=None) -> pd.DataFrame:
    """All per-episode metrics of ``est`` (already prepared) at context length ``context_len``.

    ``mirror`` (a fast estimator) adds the agreement metrics on the same episodes.
    """
    graph, spec = episodes.graph, episodes.spec
    metrics = metric_set(graph)
    device = resolve_device(spec.device)
    n_eps = spec.episodes if espec.subset is None else min(espec.subset, spec.episodes)
    parts: list[pd.DataFrame] = []
    attention_left = spec.attention_episodes if est.tags.has_attention else 0
    pooled: list[np.ndarray] = []  # per-episode sums the whole cell pools (discrete: calibration bins)
    # Rows are made per batch; fits per fit group (the batch itself unless episodes have their own DAGs).
    for batch in episodes.batches(context_len, n_eps, spec.batch_size):
        preds, other = _empty(metrics, graph, batch), _empty(metrics, graph, batch)
        for fit_graph, part in fit_groups(batch, graph, est.tags.graph_agnostic):
            at = torch.as_tensor(np.searchsorted(batch.episodes, part.episodes))
            ctx, qry = part.contexts.to(device), part.queries.to(device)
            _sync(device)
            t0 = time.perf_counter()
            est.fit(fit_graph, ctx)
            _sync(device)
            t1 = time.perf_counter()
            for m, p in enumerate(est.predict(qry)):
                preds[m][at] = p.to("cpu", torch.float64)
            _sync(device)
            t2 = time.perf_counter()
            parts += timing_rows(part.episodes, t0, t1, t2) + metrics.fit_rows(est, fit_graph, part)
            if mirror is not None:
                mirror.fit(fit_graph, ctx)
                for m, p in enumerate(mirror.predict(qry)):
                    other[m][at] = p.to("cpu", torch.float64)

            # joint measures on the first ``fidelity_episodes`` episodes only
            limit = spec.fidelity_episodes
            k = part.size if limit is None else int((part.episodes < limit).sum())
            if k > 0:
                if k < part.size:
                    est.fit(fit_graph, ctx[:k])  # predictions for the kept contexts only
                parts += metrics.fidelity_rows(est, graph, spec, part if k == part.size else part.head(k),
                                               context_len)

            if attention_left > 0:
                k = min(attention_left, part.size)
                attention_left -= k
                parts += attention_rows(est.model_, graph, part.head(k))
        parts += metrics.batch_rows(est, graph, batch, preds)
        pooled.append(metrics.cell_sums(est, graph, batch, preds))
        if mirror is not None:
            parts += metrics.agreement_rows(graph, batch, preds, other)
    if pooled:
        parts += metrics.cell_rows(graph.names, np.concatenate(pooled))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def _empty(metrics: MetricSet, graph: Graph, batch: Batch) -> list[torch.Tensor]:
    """Per-node (B, Q, width) tensors that the fit groups fill in."""
    B, Q = batch.queries.shape[:2]
    return [torch.full((B, Q, metrics.width(graph, m)), float("nan"), dtype=torch.float64)
            for m in range(graph.n_nodes)]
