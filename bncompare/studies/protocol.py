"""The evaluation protocol: paired draws of episodes, in blocks.

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

What an episode's truth is (fresh prior draws, a real network's CPTs, real
rows with a held-out reference, a fresh DAG per episode) is the task source's business
(:mod:`bncompare.studies.truth`); what is measured on a cell is
:mod:`bncompare.studies.evaluate`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bncompare.networks.graph import Graph
from bncompare.networks.network import CPTBatch
from bncompare.studies.spec import StudySpec

BLOCK = 32
EVAL_STREAM = 104_729  # tags the evaluation seed stream (training uses streams 0, 1, 2)
SUB_DATA, SUB_GENERATED, SUB_TRUE_MC = 0, 1, 2


def block_seed(seed: int, context_len: int, block: int, sub: int = SUB_DATA) -> int:
    entropy = [seed, EVAL_STREAM, context_len, block, sub]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


# ----- episodes -----------------------------------------------------------------------

@dataclass
class Batch:
    episodes: np.ndarray  # global episode indices
    blocks: list[int]  # the blocks it is made of (for the Monte Carlo generators)
    cpts: CPTBatch
    contexts: torch.Tensor  # (B, N, M)
    queries: torch.Tensor  # (B, Q, M)
    graphs: list[Graph] | None = None  # each episode's own DAG, when the truth draws one per episode

    @property
    def size(self) -> int:
        return len(self.episodes)

    def head(self, k: int) -> Batch:
        return self.select(torch.arange(min(k, self.size)))

    def select(self, index: torch.Tensor) -> Batch:
        """The episodes at positions ``index`` (same blocks, so their Monte Carlo draws stay theirs)."""
        graphs = None if self.graphs is None else [self.graphs[i] for i in index.tolist()]
        return Batch(self.episodes[index.numpy()], self.blocks, [c[index] for c in self.cpts],
                     self.contexts[index], self.queries[index], graphs)

    def uniforms(self, seed: int, context_len: int, sub: int, n: int, M: int) -> torch.Tensor:
        """(B, n, M) uniforms, drawn per block from the block's own stream: episode e always gets the same ones."""
        parts = [torch.rand(BLOCK, n, M, generator=torch.Generator().manual_seed(block_seed(seed, context_len, k, sub)),
                            dtype=torch.float64) for k in self.blocks]
        return torch.cat(parts)[torch.as_tensor(self.episodes - self.blocks[0] * BLOCK)]


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
            graphs = None if parts[0][3] is None else [g for p in parts for g in p[3]]
            ids = np.arange(first * BLOCK, first * BLOCK + contexts.shape[0])
            keep = int((ids < n_episodes).sum())
            yield Batch(ids, ks, cpts, contexts, queries, graphs).head(keep)


def fit_groups(batch: Batch, graph: Graph, graph_agnostic: bool) -> list[tuple[Graph, Batch]]:
    """What an estimator is fitted on: (graph, episodes) pairs.

    Usually the whole batch on the study graph. When every episode carries its own DAG, an
    estimator that uses the parents is fitted once per distinct DAG on that DAG's episodes;
    a graph-agnostic one still sees the whole batch (it never reads the parents).
    """
    if batch.graphs is None or graph_agnostic:
        return [(graph, batch)]
    groups: dict[Graph, list[int]] = {}
    for i, g in enumerate(batch.graphs):
        groups.setdefault(g, []).append(i)
    return [(g, batch.select(torch.tensor(ix))) for g, ix in groups.items()]
