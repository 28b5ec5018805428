"""Memory a study will need, estimated from its settings before anything is allocated.

Each estimate is a rough upper bound of the largest tensors one step holds (the
batch of episodes, CPTs, queries and predictions, the exact joint, Monte Carlo
samples, the transformers' activations and attention). A study whose estimate
exceeds the limit is refused with one line naming the amount and the setting to
lower. The limit is 80% of this machine's RAM, or ``$BNCOMPARE_MEMORY_GB``.
"""
from __future__ import annotations

import math
import os

from bncompare.errors import BNError
from bncompare.metrics.joint import n_joint_states
from bncompare.networks.graph import Graph
from bncompare.studies.protocol import BLOCK
from bncompare.studies.spec import StudySpec

F64 = 8
TRANSFORMER_KINDS = ("constructed", "trained", "transformer_agnostic")


def memory_limit() -> int:
    """Bytes a study may plan to hold at once."""
    if os.environ.get("BNCOMPARE_MEMORY_GB"):
        try:
            return int(float(os.environ["BNCOMPARE_MEMORY_GB"]) * 2**30)
        except ValueError:
            raise BNError(f"BNCOMPARE_MEMORY_GB must be a number, got {os.environ['BNCOMPARE_MEMORY_GB']!r}") from None
    return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimates(spec: StudySpec, graph: Graph) -> list[tuple[str, int, str]]:
    """(what, bytes, the setting to lower) for the big allocations of ``spec`` on ``graph``."""
    B = min(max(1, spec.batch_size // BLOCK) * BLOCK, -(-spec.episodes // BLOCK) * BLOCK)  # episodes per batch
    M, N, Q = graph.n_nodes, max(spec.context_lens), spec.queries
    cpt = sum(c * k for c, k in zip(graph.n_configs, graph.cards))
    out = [
        ("the contexts of a batch", 4 * B * N * M * F64, "context_lens or batch_size"),
        ("the queries and predictions of a batch", 4 * B * Q * sum(graph.cards) * F64, "queries or batch_size"),
        ("the CPTs of a batch (truth, counts, estimates)", 4 * B * cpt * F64,
         "the graph's size (graph.options.card, parents) or batch_size"),
        ("the Monte Carlo fidelity samples", 4 * B * spec.mc_samples * M * F64, "fidelity.mc_samples"),
    ]
    states = n_joint_states(graph)
    if states <= spec.max_exact_states:
        fid = B if spec.fidelity_episodes is None else max(1, min(B, spec.fidelity_episodes))
        out.append(("the exact joint distribution", 4 * fid * states * (M + 2) * F64, "fidelity.max_exact_states"))
    kinds = {e.kind: e for e in spec.estimators}
    if any(k in kinds for k in TRANSFORMER_KINDS):
        width = max(64, M + 2 * sum(graph.cards) + max(graph.cards) + 8)  # the construction's residual stream
        T = N + Q * M + 1
        out.append(("a transformer's attention over a batch", 2 * B * 4 * T * T * 4 + 16 * B * T * width * 4,
                    "context_lens, queries or batch_size"))
    for kind in ("trained", "transformer_agnostic"):
        if kind in kinds:
            out.append(_training(kinds[kind].params.get("train_cfg") or {}, M, N))
    return out


def _training(cfg: dict, M: int, N: int) -> tuple[str, int, str]:
    from bncompare.transformer.train import TrainConfig

    base = TrainConfig()
    model = cfg.get("model") if hasattr(cfg.get("model"), "get") else {}  # a bad one: TrainConfig reports it
    get = lambda k: _num(cfg.get(k, getattr(base, k)))
    get_model = lambda k: _num(cfg.get(k, model.get(k, getattr(base.model, k))))  # flat, or under model
    T = get("n_context_max") + get("n_queries") * M + 1
    batch = get("batch_size")
    d, layers, heads, ff = get_model("d_model"), get_model("n_layer"), get_model("n_head"), get_model("d_ff")
    params = layers * (4 * d * d + 2 * d * ff) * 4 * 4  # weights, grads, two Adam moments (float32)
    acts = layers * batch * T * (12 * d + 2 * ff + 2 * heads * T) * 4
    return "training the transformer", params + acts, "context_lens (transformer.train.n_context_max), " \
        "transformer.train.batch_size or transformer.train.d_model"


def _num(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0  # TrainConfig itself reports a bad value


def check_budget(spec: StudySpec, graph: Graph) -> None:
    """Refuse a study that would need more memory than this machine allows, before allocating any of it."""
    limit = memory_limit()
    for what, need, knob in estimates(spec, graph):
        if need > limit:
            raise BNError(f"{what} would need ~{_size(need)}, more than the {_size(limit)} allowed here "
                          f"(set BNCOMPARE_MEMORY_GB to change it): lower {knob}")


def _size(n: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
    i = min(len(units) - 1, int(math.log(max(n, 1), 1024)))
    return f"{n / 1024**i:.3g} {units[i]}" if i < len(units) - 1 else f"{n:.3g} B"
