"""A study's settings, validated: plain dataclasses built from the (resolved) Hydra config.

Every problem is a :class:`BNError` with a one-line message naming the setting,
so the command line can print it and exit with code 2.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bncompare.errors import BNError

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # estimator names become file names
# Every top-level key a study config may have: anything else (a typo, +nosuchkey=5) is refused, not ignored.
TOP_LEVEL = {"seed", "device", "context_lens", "episodes", "queries", "batch_size", "reference", "fidelity",
             "diagnostics", "study_name", "out_dir", "report", "progress", "graph", "prior", "transformer",
             "estimators", "tv_reference", "eval_prior"}


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    kind: str
    params: dict = field(default_factory=dict)
    subset: int | None = None  # run on the first `subset` episodes of each cell only (slow baselines)
    context_lens: tuple[int, ...] | None = None  # run only at these of the study's lengths (None = all)
    mirrors: str | None = None  # the fast estimator this one should agree with
    label: str | None = None  # legend text (defaults to the name)
    budget_of: str | None = None  # this is that estimator at another compute budget (joined on the cost page)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": self.params, "subset": self.subset,
                "context_lens": list(self.context_lens) if self.context_lens else None,
                "mirrors": self.mirrors}


@dataclass(frozen=True)
class StudySpec:
    graph: dict  # {"name": ..., "options": {...}}
    prior: dict  # {"kind": ..., "params": {...}}: the training prior (what the trained transformer learns from)
    seed: int
    context_lens: tuple[int, ...]
    episodes: int
    queries: int
    batch_size: int
    estimators: tuple[EstimatorSpec, ...]
    reference: str | None = None  # the KL (log-loss) reference: excess of every metric but cond_tv
    tv_reference: str | None = None  # the conditional-TV reference (None: the KL reference, not TV-optimal)
    max_exact_states: int = 2**16
    mc_samples: int = 1000
    fidelity_episodes: int | None = None
    attention_episodes: int = 10
    device: str = "auto"
    progress: bool = True
    eval_prior: dict | None = None  # the truth's CPT prior when it is not the training prior (None: the same)

    @property
    def truth_prior(self) -> dict:
        """The prior the episodes' CPTs are drawn from (when the truth is drawn from a prior at all)."""
        return self.eval_prior or self.prior

    def estimator(self, name: str) -> EstimatorSpec:
        for e in self.estimators:
            if e.name == name:
                return e
        raise BNError(f"no estimator named {name!r}; estimators are {[e.name for e in self.estimators]}")

    def references(self) -> dict[str, str]:
        """{metric: the estimator its ``<metric>_excess`` is measured against}."""
        from bncompare.metrics.summary import EXCESS_OF

        if self.reference is None:
            return {}
        return {m: (self.tv_reference if m == "cond_tv" and self.tv_reference else self.reference) for m in EXCESS_OF}

    def data_dict(self) -> dict:
        """Everything that fixes the draws and the metrics of a cell (part of every cell's key)."""
        graph = dict(self.graph, options={k: v for k, v in self.graph["options"].items()
                                          if (k, v) != ("truth", "bundled")})  # the default: same keys as before
        extra = {"eval_prior": self.eval_prior} if self.eval_prior else {}  # unset: the same keys as before
        return {**extra, "graph": graph, "prior": self.prior, "seed": self.seed, "episodes": self.episodes,
                "queries": self.queries, "max_exact_states": self.max_exact_states, "mc_samples": self.mc_samples,
                "fidelity_episodes": self.fidelity_episodes, "attention_episodes": self.attention_episodes}


# ----- validation helpers ---------------------------------------------------------

def _int(value, what: str, low: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or not math.isfinite(value) or value != int(value):
        raise BNError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise BNError(f"{what} must be >= {low}, got {value}")
    return value


def _opt_int(value, what: str, low: int | None = None) -> int | None:
    return None if value is None else _int(value, what, low)


def _dict(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BNError(f"{what} must be a mapping, got {value!r}")
    return dict(value)


def _lens(value, what: str) -> tuple[int, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise BNError(f"{what} must be a non-empty list of context lengths, e.g. [1,10,100], got {value!r}")
    out = []
    for v in value:
        n = _int(v, f"{what} entry", None)
        if n < 0:
            raise BNError(f"{what}: context length must be >= 0, got {n}")
        out.append(n)
    if len(set(out)) != len(out):
        raise BNError(f"{what} lists a context length twice: {out}")
    return tuple(sorted(out))


def _check_keys(d: dict, allowed: set, what: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise BNError(f"{what}: unknown keys {unknown}; allowed keys are {sorted(allowed)}")


def _check_transformer(tf: dict) -> None:
    from dataclasses import fields

    from bncompare.transformer.train import MODEL_SETTINGS, TrainConfig

    _check_keys(tf, {"train", "cache_dir"}, "transformer")
    _check_keys(_dict(tf.get("train"), "transformer.train"), {f.name for f in fields(TrainConfig)} | MODEL_SETTINGS,
                "transformer.train")


def estimator_specs(entries, lens: tuple[int, ...]) -> tuple[EstimatorSpec, ...]:
    """Estimator entries ``{name: {kind, params, subset, context_lens, mirrors, label}}``; null entries are dropped."""
    from bncompare.studies.registry import KINDS

    entries = _dict(entries, "estimators")
    specs = []
    for name, e in entries.items():
        if e is None:
            continue
        name = str(name)
        if not NAME.match(name):
            raise BNError(f"estimator name {name!r} may only use letters, digits, '_', '.', '-'")
        e = _dict(e, f"estimators.{name}")
        _check_keys(e, {"kind", "params", "subset", "context_lens", "mirrors", "label", "budget_of"},
                    f"estimators.{name}")
        kind = e.get("kind")
        if kind not in KINDS:
            raise BNError(f"estimators.{name}: unknown kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
        own = e.get("context_lens")
        # only where the study has them: a study over other lengths simply skips this estimator
        own = None if own is None else _lens(own, f"estimators.{name}.context_lens")
        specs.append(EstimatorSpec(
            name=name, kind=kind, params=_dict(e.get("params"), f"estimators.{name}.params"),
            subset=_opt_int(e.get("subset"), f"estimators.{name}.subset", 1), context_lens=own,
            mirrors=e.get("mirrors"), label=e.get("label"), budget_of=e.get("budget_of"),
        ))
    if not specs:
        raise BNError("no estimators to compare: the estimators config is empty")
    names = {s.name for s in specs}
    for s in specs:
        if s.budget_of == s.name:  # naming one that was dropped is fine: its other budgets still form a series
            raise BNError(f"estimators.{s.name}.budget_of cannot name itself")
        if s.mirrors is not None:
            if s.mirrors not in names:
                raise BNError(f"estimators.{s.name}.mirrors names {s.mirrors!r}, "
                              "which is not an estimator of this study")
            if s.mirrors == s.name:
                raise BNError(f"estimators.{s.name} cannot mirror itself")
    return tuple(specs)


def study_spec(cfg: dict) -> StudySpec:
    """Validate a resolved config (a plain dict, e.g. ``OmegaConf.to_container(cfg, resolve=True)``)."""
    from bncompare.networks.priors import make_prior

    _check_keys(cfg, TOP_LEVEL, "config")
    if cfg.get("graph") is None:
        raise BNError("graph is missing; choose one, e.g. graph=tree (see --help)")
    graph = _dict(cfg.get("graph"), "graph")
    if not graph.get("name"):
        raise BNError("graph.name is missing")
    _check_keys(graph, {"name", "options"}, "graph")
    graph = {"name": str(graph["name"]), "options": _dict(graph.get("options"), "graph.options")}
    prior = _dict(cfg.get("prior"), "prior")
    _check_keys(prior, {"kind", "params", "bayes_alpha"}, "prior")
    make_prior(prior.get("kind", "dirichlet"), **_dict(prior.get("params"), "prior.params"))  # valid values only
    eval_prior = _eval_prior(cfg.get("eval_prior"))
    _check_transformer(_dict(cfg.get("transformer"), "transformer"))
    lens = _lens(cfg.get("context_lens"), "context_lens")
    fid = _dict(cfg.get("fidelity"), "fidelity")
    _check_keys(fid, {"max_exact_states", "mc_samples", "episodes"}, "fidelity")
    diag = _dict(cfg.get("diagnostics"), "diagnostics")
    _check_keys(diag, {"attention_episodes"}, "diagnostics")
    device = cfg.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise BNError(f"device must be auto, cpu or cuda, got {device!r}")
    estimators = estimator_specs(cfg.get("estimators"), lens)
    names = {e.name for e in estimators}
    reference, tv_reference = cfg.get("reference"), cfg.get("tv_reference")
    if reference is None:
        tv_reference = None  # no reference, no excess errors at all
    for key, ref in (("reference", reference), ("tv_reference", tv_reference)):
        if ref is None:
            continue
        if ref not in names:
            raise BNError(f"{key} {ref!r} is not one of the estimators {sorted(names)} "
                          f"(add it, or set {key}=null)")
        e = next(e for e in estimators if e.name == ref)
        if e.subset is not None or e.context_lens is not None:
            raise BNError(f"{key} {ref!r} must run on every episode and context length (no subset)")
    return StudySpec(
        graph=graph,
        prior={"kind": prior.get("kind", "dirichlet"), "params": _dict(prior.get("params"), "prior.params")},
        seed=_int(cfg.get("seed", 0), "seed", 0),
        context_lens=lens,
        episodes=_int(cfg.get("episodes"), "episodes", 1),
        queries=_int(cfg.get("queries"), "queries", 1),
        batch_size=_int(cfg.get("batch_size"), "batch_size", 1),
        estimators=estimators,
        reference=reference,
        tv_reference=tv_reference,
        max_exact_states=_int(fid.get("max_exact_states", 2**16), "fidelity.max_exact_states", 1),
        mc_samples=_int(fid.get("mc_samples", 1000), "fidelity.mc_samples", 1),
        fidelity_episodes=_opt_int(fid.get("episodes"), "fidelity.episodes", 0),
        attention_episodes=_int(diag.get("attention_episodes", 10), "diagnostics.attention_episodes", 0),
        device=device,
        progress=bool(cfg.get("progress", True)),
        eval_prior=eval_prior,
    )


def _eval_prior(value) -> dict | None:
    """``eval_prior`` ({kind, params}) validated, or None (the truth's prior is the training prior)."""
    from bncompare.networks.priors import make_prior

    if value is None:
        return None
    value = _dict(value, "eval_prior")
    _check_keys(value, {"kind", "params"}, "eval_prior")
    if not value.get("kind"):
        raise BNError("eval_prior.kind is missing; choose eval_prior=dirichlet or eval_prior=uniform (or same)")
    params = _dict(value.get("params"), "eval_prior.params")
    make_prior(value["kind"], **params)
    return {"kind": str(value["kind"]), "params": params}
