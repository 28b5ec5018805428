"""The evaluation protocol: paired draws, and every metric of one cell.

Episodes. An episode is one (true CPT set, context of N rows, Q query rows)
triple. Episodes are drawn in blocks of ``BLOCK``; block ``k`` of context length
``N`` uses its own generator, seeded from ``(seed, EVAL_STREAM, N, k)``. So:

- every estimator sees exactly the same episodes (paired comparison);
- the numbers do not depend on the compute batch size, and a slow estimator
  that runs on the first ``subset`` episodes sees the same first episodes as
  the others;
- the held-out CPT draws never coincide with the trained transformer's
  training tasks, which come from ``SeedSequence([seed, stream])`` streams
  with stream in {0, 1, 2} (``bncompare.transformer.train``), a different
  entropy pool from ours.

Truth (a "task source", see :class:`TaskSource`). Synthetic graphs draw fresh
CPTs from the prior for each episode; real networks keep their bundled CPTs as
the truth of every episode; real data (``graph=sachs_data``) takes contexts from
a split's pool rows and queries from its held-out rows, whose CPTs are the truth.

Cell. A cell is (estimator, N) over the study's episodes (or the estimator's
subset). :func:`evaluate_cell` returns one tidy row per episode, node and metric.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bncompare.metrics.conditional import conditional_errors, tv, unseen_mask
from bncompare.metrics.joint import exact_joint, monte_carlo, n_joint_states
from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch
from bncompare.networks.sampling import sample
from bncompare.studies.spec import EstimatorSpec, StudySpec

BLOCK = 32
EVAL_STREAM = 104_729  # tags the evaluation seed stream (training uses streams 0, 1, 2)
SUB_DATA, SUB_GENERATED, SUB_TRUE_MC = 0, 1, 2


def block_seed(seed: int, context_len: int, block: int, sub: int = SUB_DATA) -> int:
    return int(np.random.SeedSequence([seed, EVAL_STREAM, context_len, block, sub]).generate_state(1, np.uint64)[0] >> 1)


# ----- task sources ------------------------------------------------------------------
# A task source makes the episodes of one block: the true CPTs, the contexts and the queries.
# The runner and the estimators never know which kind they got.

class TaskSource:
    """Base: draw CPTs (``draw``), then contexts and queries from them (synthetic sampling)."""

    fixed = False

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        raise NotImplementedError

    def block(self, graph: Graph, n: int, context_len: int, n_queries: int, k: int, gen: torch.Generator):
        """(cpts, contexts (n, N, M), queries (n, Q, M)) of block ``k``, drawn with ``gen``."""
        cpts = self.draw(graph, n, gen)
        return cpts, sample(graph, cpts, context_len, gen), sample(graph, cpts, n_queries, gen)


class PriorTruth(TaskSource):
    """Fresh CPTs from the prior for every episode (synthetic families)."""

    def __init__(self, prior):
        self.prior = prior

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        return self.prior.sample(graph, n, gen)


class FixedTruth(TaskSource):
    """The same CPTs in every episode (a real network's bundled CPTs)."""

    fixed = True

    def __init__(self, cpts: CPTBatch, network=None):
        self.cpts = [torch.as_tensor(c, dtype=torch.float64) for c in cpts]
        self.network = network  # the BayesNet, when there is one (for the prior-distance note)

    def draw(self, graph: Graph, n: int, gen: torch.Generator) -> CPTBatch:
        return [c.expand(n, -1, -1) for c in self.cpts]


class SplitTruth(TaskSource):
    """Real rows with a held-out reference (e.g. Sachs): no sampling from a model at all.

    Block ``k`` uses split ``k mod len(splits)``: its truth is the split's reference CPTs
    (fitted on the held-out rows only), its contexts are distinct rows of the split's pool
    and its queries distinct held-out rows. Whole blocks cycle over the splits, so with
    ``episodes`` a multiple of 32 x splits every split weighs the same.
    """

    fixed = False

    def __init__(self, splits):
        self.splits = list(splits)
        self.network = self.splits[0].reference

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
        return cpts, contexts, split.draw_queries(n, n_queries, gen)

    def describe(self) -> str:
        s = self.splits[0]
        return (f"Truth: held-out reference CPTs of {len(self.splits)} random splits (block k uses split k mod "
                f"{len(self.splits)}); each fitted on {s.holdout.shape[0]} held-out rows, Dirichlet smoothing "
                f"{s.smoothing:g}. Contexts: distinct rows of the {s.pool.shape[0]}-row pool (disjoint); "
                f"queries: held-out rows.")


# ----- episodes -----------------------------------------------------------------------

@dataclass
class Batch:
    episodes: np.ndarray  # global episode indices
    blocks: list[int]  # the blocks it is made of (for the Monte Carlo generators)
    cpts: CPTBatch
    contexts: torch.Tensor  # (B, N, M)
    queries: torch.Tensor  # (B, Q, M)

    @property
    def size(self) -> int:
        return len(self.episodes)

    def head(self, k: int) -> "Batch":
        return Batch(self.episodes[:k], self.blocks, [c[:k] for c in self.cpts], self.contexts[:k], self.queries[:k])

    def uniforms(self, seed: int, context_len: int, sub: int, n: int, M: int) -> torch.Tensor:
        """(B, n, M) uniforms, drawn per block from the block's own stream: episode e always gets the same ones."""
        parts = [torch.rand(BLOCK, n, M, generator=torch.Generator().manual_seed(block_seed(seed, context_len, k, sub)),
                            dtype=torch.float64) for k in self.blocks]
        return torch.cat(parts)[: self.size]


class Episodes:
    """Draws blocks of episodes on demand and keeps those of the current context length."""

    def __init__(self, graph: Graph, truth, spec: StudySpec):
        self.graph, self.truth, self.spec = graph, truth, spec
        self._cache: dict[tuple[int, int], tuple] = {}

    def block(self, context_len: int, k: int):
        key = (context_len, k)
        if key not in self._cache:
            if any(n != context_len for n, _ in self._cache):
                self._cache.clear()  # one context length at a time: memory stays small
            gen = torch.Generator().manual_seed(block_seed(self.spec.seed, context_len, k))
            self._cache[key] = self.truth.block(self.graph, BLOCK, context_len, self.spec.queries, k, gen)
        return self._cache[key]

    def batches(self, context_len: int, n_episodes: int, batch_size: int):
        """Batches covering episodes 0..n_episodes-1 in order, about ``batch_size`` episodes each."""
        per_batch = max(1, batch_size // BLOCK)
        n_blocks = -(-n_episodes // BLOCK)
        for first in range(0, n_blocks, per_batch):
            ks = list(range(first, min(first + per_batch, n_blocks)))
            parts = [self.block(context_len, k) for k in ks]
            cpts = [torch.cat([p[0][m] for p in parts]) for m in range(self.graph.n_nodes)]
            contexts = torch.cat([p[1] for p in parts])
            queries = torch.cat([p[2] for p in parts])
            ids = np.arange(first * BLOCK, first * BLOCK + contexts.shape[0])
            keep = int((ids < n_episodes).sum())
            yield Batch(ids, ks, cpts, contexts, queries).head(keep)


# ----- one cell ----------------------------------------------------------------------

def _device(spec: StudySpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Rows:
    """Collects per-episode values and turns them into a tidy frame."""

    def __init__(self, node_names: tuple[str, ...]):
        self.names = list(node_names)
        self.parts: list[pd.DataFrame] = []

    def per_node(self, metric: str, episodes: np.ndarray, values: torch.Tensor, overall: torch.Tensor) -> None:
        """values (B, M) per node and overall (B,) for node 'all'."""
        v = torch.cat([values, overall[:, None]], 1).cpu().numpy()
        B, K = v.shape
        self.parts.append(pd.DataFrame({
            "episode": np.repeat(episodes, K), "node": np.tile(self.names + ["all"], B),
            "metric": metric, "value": v.reshape(-1),
        }))

    def scalar(self, metric: str, episodes: np.ndarray, values, node: str = "all") -> None:
        v = np.asarray(values.cpu() if torch.is_tensor(values) else values, dtype=np.float64).reshape(-1)
        self.parts.append(pd.DataFrame({"episode": episodes, "node": node, "metric": metric, "value": v}))

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=["episode", "node", "metric", "value"])
        return pd.concat(self.parts, ignore_index=True)


def evaluate_cell(episodes: Episodes, est, espec: EstimatorSpec, context_len: int, mirror=None) -> pd.DataFrame:
    """All per-episode metrics of ``est`` (already prepared) at context length ``context_len``.

    Columns: episode, node, metric, value. ``mirror`` (a fast estimator) adds the
    agreement metrics ``agree_tv`` and ``agree_max_abs`` on the same episodes.
    """
    graph, spec = episodes.graph, episodes.spec
    device = _device(spec)
    n_eps = spec.episodes if espec.subset is None else min(espec.subset, spec.episodes)
    exact = n_joint_states(graph) <= spec.max_exact_states
    rows = Rows(graph.names)
    attention_left = spec.attention_episodes
    for batch in episodes.batches(context_len, n_eps, spec.batch_size):
        ids, B = batch.episodes, batch.size
        ctx, qry = batch.contexts.to(device), batch.queries.to(device)
        _sync(device)
        t0 = time.perf_counter()
        est.fit(graph, ctx)
        _sync(device)
        t1 = time.perf_counter()
        probs = [p.to("cpu", torch.float64) for p in est.predict_proba(qry)]
        _sync(device)
        t2 = time.perf_counter()
        rows.scalar("fit_seconds_per_context", ids, np.full(B, (t1 - t0) / B))
        rows.scalar("predict_seconds_per_context", ids, np.full(B, (t2 - t1) / B))
        rows.scalar("seconds_per_context", ids, np.full(B, (t2 - t0) / B))

        err = conditional_errors(graph, batch.cpts, batch.queries, probs)  # (B, Q, M) each
        rows.per_node("cond_tv", ids, err["cond_tv"].mean(1), err["cond_tv"].mean((1, 2)))
        # an infinite KL anywhere makes the episode's mean infinite: reported, not clipped
        rows.per_node("cond_kl", ids, err["cond_kl"].mean(1), err["cond_kl"].mean((1, 2)))
        inf = torch.isinf(err["cond_kl"]).to(torch.float64)
        rows.per_node("cond_kl_inf_frac", ids, inf.mean(1), inf.mean((1, 2)))
        unseen = unseen_mask(graph, batch.contexts, batch.queries).to(torch.float64)
        rows.per_node("unseen_frac", ids, unseen.mean(1), unseen.mean((1, 2)))

        if mirror is not None:
            mirror.fit(graph, ctx)
            other = [p.to("cpu", torch.float64) for p in mirror.predict_proba(qry)]
            gap = torch.stack([tv(p, o) for p, o in zip(probs, other)], -1)  # (B, Q, M)
            rows.per_node("agree_tv", ids, gap.mean(1), gap.mean((1, 2)))
            worst = torch.stack([(p - o).abs().amax((1, 2)) for p, o in zip(probs, other)], -1).amax(-1)
            rows.scalar("agree_max_abs", ids, worst)

        _fidelity(episodes, est, batch, context_len, exact, rows, ctx)

        if attention_left > 0:
            k = min(attention_left, B)
            attention_left -= k
            _attention(est, graph, batch.head(k), rows)
    return rows.frame()


def _fidelity(episodes: Episodes, est, batch: Batch, context_len: int, exact: bool, rows: Rows, ctx) -> None:
    """Joint TV/KL (exact) or Monte Carlo measures, on the first ``fidelity_episodes`` episodes."""
    graph, spec = episodes.graph, episodes.spec
    limit = spec.fidelity_episodes
    k = batch.size if limit is None else int((batch.episodes < limit).sum())
    if k == 0:
        return
    part = batch if k == batch.size else batch.head(k)
    if k < batch.size:
        est.fit(graph, ctx[:k])  # predictions for the kept contexts only
    if exact:
        out = exact_joint(est, graph, part.cpts, spec.max_exact_states)
    else:
        u = [part.uniforms(spec.seed, context_len, sub, spec.mc_samples, graph.n_nodes)
             for sub in (SUB_GENERATED, SUB_TRUE_MC)]
        out = monte_carlo(est, graph, part.cpts, *u)
    for name, values in out.items():
        rows.scalar(name, part.episodes, values)


def _attention(est, graph: Graph, batch: Batch, rows: Rows) -> None:
    """Attention shares of a transformer estimator's heads (every layer), per head and episode."""
    model = getattr(est, "model_", None)
    if not isinstance(model, torch.nn.Module) or batch.contexts.shape[1] == 0:
        return
    from bncompare.transformer.diagnostics import attention_to_parents

    nodes = [m for m in range(graph.n_nodes) if graph.parents[m]] or None  # roots match every row
    # Every layer: a trained model may select parents in an early layer (the structure-agnostic one
    # does it in layer 0), so the last layer alone can miss it. Matching uses the study's TRUE parents.
    layers = list(range(len(model.blocks))) if hasattr(model, "blocks") else None
    for b, ep in enumerate(batch.episodes):
        for r in attention_to_parents(model, graph, batch.contexts[b : b + 1], batch.queries[b : b + 1], nodes,
                                      layers):
            head = f"L{r['layer']}.H{r['head']}"
            for key in ("match", "other", "sink", "self", "null", "chance"):
                rows.scalar(f"attn_{key}", np.array([ep]), [r[key]], node=head)
