"""A study's settings: a typed schema of the config, and the validated :class:`StudySpec` built from it.

The schema (:class:`StudyConfig` and its parts) holds every study default, once: the command line gets
them through Hydra's config store (``study_defaults``, the base that ``conf/config.yaml`` composes on),
Python callers of :func:`study_spec` get the same ones. OmegaConf checks the types and refuses unknown
keys; :func:`study_spec` adds the checks of values and across fields, in one place. Every problem is a
:class:`BNError` with a one-line message naming the setting, so the command line can print it and exit
with code 2.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from bncompare.errors import BNError

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # estimator names become file names


# ----- the schema: the config as a user writes it, with every default ------------------------------------

@dataclass
class GraphConfig:
    name: str | None = None  # a family, a bundled network, random_dags, sachs_data or file (see --help)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PriorConfig:
    kind: str = "dirichlet"
    params: dict[str, Any] = field(default_factory=dict)
    bayes_alpha: Any = None  # the Dirichlet estimators' pseudo-count (conf/prior/*.yaml: params.alpha, checked there)


@dataclass
class EvalPriorConfig:
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EstimatorConfig:
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    subset: int | None = None  # run on the first `subset` episodes of each cell only (slow baselines)
    context_lens: list[int] | None = None  # run only at these of the study's lengths (None = all)
    mirrors: str | None = None  # the fast estimator this one should agree with
    label: str | None = None  # legend text (defaults to the name)
    budget_of: str | None = None  # this is that estimator at another compute budget (joined on the cost page)


@dataclass
class FidelityConfig:
    max_exact_states: int = 65536  # exact joint TV/KL up to this many joint states, Monte Carlo beyond
    mc_samples: int = 300  # generated (and true) samples per episode for the Monte Carlo measures
    # joint metrics on the first k episodes of each cell (None: all; a transformer's exact joint asks
    # 2^M states x M targets, ~8x its conditional cost on tree-7)
    episodes: int | None = 128


@dataclass
class DiagnosticsConfig:
    attention_episodes: int = 10  # episodes per cell for the attention diagnostic of transformer estimators


@dataclass
class ProcessConfig:
    """The autoregressive process of ``graph=autoregressive`` (``study=autoregressive``): its graph and prior
    read these (conf/graph/autoregressive.yaml, conf/prior/autoregressive.yaml); unused by other graphs."""

    d: int = 5  # the dimension of the state
    T: int = 50  # the longest prefix: sequences of T + 1 states, s_(t+1) predicted at every t = 1..T
    sigma: float = 0.0  # the noise sd of s_(t+1) = W s_t + sigma eps
    law: str = "orthogonal"  # the law of W per sequence: orthogonal (Haar) | commuting | gaussian
    start: str = "fixed"  # s_1: fixed (1/sqrt(d) in every coordinate) | gaussian (N(0, I/d))
    spectral_radius: float | None = None  # law=gaussian: scale W down to this spectral radius (null: do not)


@dataclass
class TransformerSection:
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig settings, checked against its fields
    cache_dir: str | None = None


@dataclass
class StudyConfig:
    seed: int = 0  # fixes every draw of the study (and the trained transformer's seed)
    device: str = "auto"  # auto | cpu | cuda (estimators that run on tensors use it)
    context_lens: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100, 200, 500])
    episodes: int = 500  # episodes per context length: fresh CPT set + context + queries each
    queries: int = 16  # query samples per episode; each one asks every node
    batch_size: int = 64  # episodes per vectorized call, in whole blocks of 32 (never changes the numbers)
    reference: str | None = None  # excess errors are measured against this estimator (None: no excess)
    tv_reference: str | None = None  # the conditional-TV reference (None: the one above)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    study_name: str = "default"
    out_dir: str | None = None  # conf/config.yaml: reports/<graph>/<study>-seed<seed>
    report: bool = True  # write report.pdf at the end
    progress: bool = True  # tqdm progress bars
    # refuse, before anything runs, a study whose estimated time (cells still to compute, trainings not cached;
    # bncompare.studies.timing) exceeds this many minutes: a laptop's hour; study=paper raises it
    max_minutes: float = 60.0
    variables: str = "discrete"  # discrete | gaussian | autoregressive: the kind of network (conf/variables/*.yaml)
    process: ProcessConfig | None = None  # graph=autoregressive only (conf/process/*.yaml start from its defaults)
    graph: GraphConfig = field(default_factory=GraphConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    eval_prior: EvalPriorConfig | None = None  # the truth's prior when it is not the training prior
    transformer: TransformerSection = field(default_factory=TransformerSection)
    estimators: dict[str, EstimatorConfig | None] = field(default_factory=dict)


# Set by conf/config.yaml and its groups, so left out of the command line's base.
_FROM_GROUPS = ("out_dir", "variables", "process", "graph", "prior", "eval_prior", "transformer", "estimators")


def study_defaults() -> dict:
    """The schema's defaults as a plain mapping: the base that ``conf/config.yaml`` composes on."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.structured(StudyConfig))
    return {k: v for k, v in defaults.items() if k not in _FROM_GROUPS}


# ----- the validated study -----------------------------------------------------------------------------------

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
    # a kind from outside bncompare (a plugin, a registered class): its distribution and source hash
    # (registry.user_code), part of its cells' keys, so an edited plugin recomputes its own cells
    code: dict | None = None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "params": self.params, "subset": self.subset,
               "context_lens": list(self.context_lens) if self.context_lens else None,
               "mirrors": self.mirrors}
        return out if self.code is None else dict(out, code=self.code)  # bncompare's own: the keys as before


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
    reference: str | None  # the KL (log-loss) reference: excess of every metric but cond_tv
    tv_reference: str | None  # the conditional-TV reference (None: the KL reference, not TV-optimal)
    max_exact_states: int
    mc_samples: int
    fidelity_episodes: int | None
    attention_episodes: int
    device: str
    progress: bool
    max_minutes: float  # refuse a study estimated to take longer (not part of any cell's key)
    variables: str  # discrete | gaussian | autoregressive: what the graph's nodes hold (checked against the graph)
    eval_prior: dict | None  # the truth's CPT prior when it is not the training prior (None: the same)
    # the two priors, built once (priors.make_prior); the dicts above are their config form, part of cell keys
    built_prior: Any = field(repr=False, compare=False)
    built_truth_prior: Any = field(repr=False, compare=False)

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


# ----- from a config to a StudySpec ---------------------------------------------------------------------------

def typed_config(cfg: dict) -> StudyConfig:
    """``cfg`` merged onto the schema: types converted, defaults filled in, unknown keys refused (one line)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    cfg = {k: v for k, v in cfg.items() if not (k == "graph" and v is None)}  # reported below as missing
    if isinstance(cfg.get("context_lens"), (int, float)) and not isinstance(cfg.get("context_lens"), bool):
        cfg["context_lens"] = [cfg["context_lens"]]  # one length needs no brackets
    schema = OmegaConf.structured(StudyConfig)
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, cfg))
    except ConfigKeyError as e:
        where = str(e.full_key).rpartition(".")[0] or "config"
        allowed = sorted(f.name for f in fields(e.object_type)) if is_dataclass(e.object_type) else []
        raise BNError(f"{where}: unknown keys [{str(e.key)!r}]; allowed keys are {allowed}") from None
    except OmegaConfBaseException as e:
        message = str(e).splitlines()[0]
        value = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", message)
        if value:
            kind = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}.get(value[2], value[2])
            raise BNError(f"{e.full_key} must be {kind}, got {value[1]}") from None
        raise BNError(f"{e.full_key}: {message}") from None


def _at_least(value, what: str, low: int):
    if value is not None and value < low:
        raise BNError(f"{what} must be >= {low}, got {value}")
    return value


def _minutes(value) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise BNError(f"max_minutes must be a positive number of minutes (e.g. 60), got {value!r}")
    return float(value)


def _lens(values: list[int], what: str) -> tuple[int, ...]:
    if not values:
        raise BNError(f"{what} must be a non-empty list of context lengths, e.g. [1,10,100], got {values!r}")
    for n in values:
        if n < 0:
            raise BNError(f"{what}: context length must be >= 0, got {n}")
    if len(set(values)) != len(values):
        raise BNError(f"{what} lists a context length twice: {list(values)}")
    return tuple(sorted(values))


def estimator_specs(entries: dict[str, EstimatorConfig | None]) -> tuple[EstimatorSpec, ...]:
    """The study's estimators from their typed entries; null entries (``~estimators.x``) are dropped."""
    from bncompare.studies import registry

    specs = []
    for name, e in entries.items():
        if e is None:
            continue
        if not NAME.match(name):
            raise BNError(f"estimator name {name!r} may only use letters, digits, '_', '.', '-'")
        if e.kind not in registry.kinds():
            raise BNError(f"estimators.{name}: {registry.unknown(e.kind)}")
        # only where the study has them: a study over other lengths simply skips this estimator
        own = None if e.context_lens is None else _lens(e.context_lens, f"estimators.{name}.context_lens")
        specs.append(EstimatorSpec(
            name=name, kind=e.kind, params=dict(e.params), subset=_at_least(e.subset, f"estimators.{name}.subset", 1),
            context_lens=own, mirrors=e.mirrors, label=e.label, budget_of=e.budget_of,
            code=registry.user_code(e.kind),
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


def _check_references(reference, tv_reference, estimators: tuple[EstimatorSpec, ...]) -> None:
    by_name = {e.name: e for e in estimators}
    for key, ref in (("reference", reference), ("tv_reference", tv_reference)):
        if ref is None:
            continue
        if ref not in by_name:
            raise BNError(f"{key} {ref!r} is not one of the estimators {sorted(by_name)} "
                          f"(add it, or set {key}=null)")
        if by_name[ref].subset is not None or by_name[ref].context_lens is not None:
            raise BNError(f"{key} {ref!r} must run on every episode and context length (no subset)")


PRIOR_HINT = {"gaussian": "prior=nig", "autoregressive": "graph=autoregressive (it sets prior=autoregressive)"}


def _check_variables(variables: str, prior_kind: str, prior, truth_prior) -> None:
    """The study's kind of variables is one the priors draw parameters for."""
    from bncompare.networks.graph import VARIABLES

    if variables not in VARIABLES:
        raise BNError(f"variables must be one of {', '.join(VARIABLES)}, got {variables!r}")
    for what, p in (("prior", prior), ("eval_prior", truth_prior)):
        if p and p.variables != variables:
            hint = PRIOR_HINT.get(variables, "prior=dirichlet")
            raise BNError(f"{what} {p.describe()} draws parameters of {p.variables} networks, but the study's "
                          f"variables are {variables}; use {hint}")


def check_variables_first(cfg: dict) -> None:
    """The study's variables against its prior's, before the estimators' settings read the prior's parameters
    (a Gaussian set names ``${prior.params.mean}``, which a Dirichlet prior does not have)."""
    from bncompare.networks.priors import prior_class

    variables, prior = cfg.get("variables", "discrete"), cfg.get("prior")
    kind = prior.get("kind") if isinstance(prior, dict) else None
    if isinstance(variables, str) and isinstance(kind, str):
        drawn = prior_class(kind).variables
        if drawn != variables:
            hint = PRIOR_HINT.get(variables, "prior=dirichlet")
            raise BNError(f"prior {kind} draws parameters of {drawn} networks, but the study's variables are "
                          f"{variables}; use {hint}")


def _check_train_keys(train: dict) -> None:
    from dataclasses import fields

    from bncompare.transformer.train import MODEL_SETTINGS, TrainConfig

    allowed = {f.name for f in fields(TrainConfig)} | set(MODEL_SETTINGS)
    unknown = sorted(set(train) - allowed)
    if unknown:
        raise BNError(f"transformer.train: unknown keys {unknown}; allowed keys are {sorted(allowed)}")


def study_spec(cfg: dict) -> StudySpec:
    """Validate a resolved config (a plain dict, e.g. ``OmegaConf.to_container(cfg, resolve=True)``).

    The command line validates each job's config before Hydra starts; the same config given again (when
    the job runs) is not checked a second time."""
    key = json.dumps(cfg, sort_keys=True, default=str)
    if key not in _VALIDATED:
        _VALIDATED.clear()  # one study at a time: keep the last only
        _VALIDATED[key] = _build_spec(cfg)
    return _fresh_user_code(_VALIDATED[key])


def _fresh_user_code(spec: StudySpec) -> StudySpec:
    """``spec`` with the source hashes of its plugin kinds read again (one edited since is not the cached one)."""
    from dataclasses import replace

    from bncompare.studies import registry

    now = tuple(replace(e, code=registry.user_code(e.kind)) if e.code is not None else e for e in spec.estimators)
    return spec if now == spec.estimators else replace(spec, estimators=now)


_VALIDATED: dict[str, StudySpec] = {}


def _build_spec(cfg: dict) -> StudySpec:
    from bncompare.networks.priors import make_prior

    check_variables_first(cfg)
    c = typed_config(cfg)
    if not c.graph.name:
        raise BNError("graph is missing; choose one, e.g. graph=tree (see --help)")
    if c.device not in ("auto", "cpu", "cuda"):
        raise BNError(f"device must be auto, cpu or cuda, got {c.device!r}")
    prior = {"kind": c.prior.kind, "params": dict(c.prior.params)}
    eval_prior = None
    if c.eval_prior is not None:
        if not c.eval_prior.kind:
            raise BNError("eval_prior.kind is missing; choose eval_prior=dirichlet or eval_prior=uniform (or same)")
        eval_prior = {"kind": c.eval_prior.kind, "params": dict(c.eval_prior.params)}
    built_prior = make_prior(prior["kind"], **prior["params"])  # refuses invalid values
    built_truth_prior = make_prior(eval_prior["kind"], **eval_prior["params"]) if eval_prior else built_prior
    _check_variables(c.variables, prior["kind"], built_prior, eval_prior and built_truth_prior)
    _check_train_keys(c.transformer.train)
    if c.variables == "autoregressive":  # the process's settings, refused before anything runs
        from bncompare.networks.autoregressive import ar_graph

        if "d" in c.graph.options:
            ar_graph(c.graph.options["d"])
    lens = _lens(c.context_lens, "context_lens")
    estimators = estimator_specs(c.estimators)
    tv_reference = c.tv_reference if c.reference is not None else None  # no reference, no excess errors at all
    _check_references(c.reference, tv_reference, estimators)
    return StudySpec(
        graph={"name": c.graph.name, "options": dict(c.graph.options)}, prior=prior,
        seed=_at_least(c.seed, "seed", 0), context_lens=lens, episodes=_at_least(c.episodes, "episodes", 1),
        queries=_at_least(c.queries, "queries", 1), batch_size=_at_least(c.batch_size, "batch_size", 1),
        estimators=estimators, reference=c.reference, tv_reference=tv_reference,
        max_exact_states=_at_least(c.fidelity.max_exact_states, "fidelity.max_exact_states", 1),
        mc_samples=_at_least(c.fidelity.mc_samples, "fidelity.mc_samples", 1),
        fidelity_episodes=_at_least(c.fidelity.episodes, "fidelity.episodes", 0),
        attention_episodes=_at_least(c.diagnostics.attention_episodes, "diagnostics.attention_episodes", 0),
        device=c.device, progress=c.progress, max_minutes=_minutes(c.max_minutes), variables=c.variables,
        eval_prior=eval_prior, built_prior=built_prior, built_truth_prior=built_truth_prior,
    )
