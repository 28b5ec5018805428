"""Run a study: config -> plan -> estimators -> metrics -> a self-describing run directory.

    from bncompare.studies.runner import run_study
    run_study(config_dict, "reports/tree-7/my-study")

``config_dict`` is the resolved Hydra config (see ``conf/config.yaml``); the
command line (:mod:`bncompare.studies.run`) is a thin layer over this function
and hands the finished directory to the report command.

:func:`run_study` takes five steps, each a function: :func:`plan_run` (the cells,
their keys, the finished ones found in the folder), :func:`write_run_manifest`
(config, graph, truth and estimators files), :func:`prepare` (train or load what
the missing cells need; on two cores the longest training goes to a second process),
:func:`run_cells` (compute, store and summarize; what waits for that process last) and
:func:`finish` (results, episodes, meta).
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bncompare.codeversion import code_version
from bncompare.errors import BNError
from bncompare.files import lock_dir, probe_writable
from bncompare.metrics.summary import cell_summary
from bncompare.runtime import resolve_device, single_thread
from bncompare.studies import background, registry
from bncompare.studies.background import Background
from bncompare.studies.budget import check_budget
from bncompare.studies.evaluate import evaluate_cell
from bncompare.studies.protocol import Episodes
from bncompare.studies.spec import StudySpec, study_spec
from bncompare.studies.store import (
    CellStore,
    artifacts_missing,
    cell_digests,
    cell_inputs,
    cell_key,
    changes,
    history_damaged,
    outputs_current,
    outputs_record,
    read_meta,
    read_outputs,
    write_artifacts,
    write_episodes,
    write_history,
    write_manifest,
    write_meta,
    write_outputs,
    write_results,
)
from bncompare.studies.timing import check_time
from bncompare.studies.truth import build_problem, graph_label, prior_distance

log = logging.getLogger(__name__)


def check_out_dir(out_dir) -> Path:
    """``out_dir`` created and writable (a probe file with a unique name), or one line."""

    if out_dir is None or not str(out_dir).strip():
        raise BNError("out_dir is empty; give the run a folder, e.g. out_dir=reports/my-study")
    out = Path(out_dir)
    try:
        probe_writable(out)
    except OSError as e:
        raise BNError(f"cannot write to out_dir {str(out)!r}: {e.strerror or e}") from None
    return out


def plan_cells(spec: StudySpec) -> list[tuple[int, str]]:
    """(context_len, estimator) in run order: by context length (the cells of one length are summarized
    together, in pairs); the references first, then the estimators others mirror."""
    refs = {spec.reference, spec.tv_reference} - {None}
    order = sorted(spec.estimators, key=lambda e: (e.name not in refs, e.mirrors is not None))
    return [(n, e.name) for n in spec.context_lens for e in order if e.context_lens is None or n in e.context_lens]


def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages that compute or draw the numbers (for meta.json)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("bncompare", "torch", "numpy", "pandas", "pgmpy", "pyro-ppl", "hydra-core", "matplotlib", "seaborn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def describe_device(spec: StudySpec) -> str:
    """The device the study runs on, as meta.json records it (the GPU's name, or the CPU and its threads)."""
    import torch

    device = resolve_device(spec.device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def estimator_records(spec: StudySpec, estimators: dict) -> dict:
    """What each estimator is, as it declares itself: kind, class, label, tags, settings, and the study's use of it."""
    from dataclasses import asdict

    def label(e) -> str:  # a trained model's label says what it hard-wires, or that it hard-wires nothing
        return " ".join(filter(None, [e.label or e.name, estimators[e.name].tags.structure_note()]))

    return {e.name: {"kind": e.kind, "class": type(estimators[e.name]).__name__, "label": label(e),
                     "tags": asdict(estimators[e.name].tags), "params": estimators[e.name].get_params(),
                     "optimal_prior": estimators[e.name].optimal_prior(),
                     "subset": e.subset, "context_lens": list(e.context_lens) if e.context_lens else None,
                     "mirrors": e.mirrors, "budget_of": e.budget_of, "reference": e.name == spec.reference,
                     "tv_reference": e.name == spec.tv_reference}
            for e in spec.estimators}


def truth_record(spec: StudySpec, graph, truth, prior) -> dict:
    """What the truth of an episode is (truth.json): its kind, the priors, and how far real CPTs are from them."""
    truth_prior = spec.built_truth_prior
    return {"kind": truth.kind, "truth": truth.truth, "prior": prior.describe(),
            "eval_prior": truth_prior.describe() if spec.eval_prior else None,
            "headline": truth.headline,
            "per_episode_dags": truth.per_episode_graphs,
            "description": truth.describe(graph, truth_prior),
            "prior_distance": prior_distance(truth, prior)}


@dataclass
class Plan:
    """What a run of the study does in its folder: every cell in run order, what keys each estimator's
    cells, and what the folder already holds (each finished cell read back once, the last meta.json)."""

    cells: list[tuple[int, str]]  # (context_len, estimator) in run order
    mirror_of: dict[str, str | None]  # estimator -> the estimator it mirrors
    inputs: dict[str, dict]  # estimator -> everything that determines its cells' numbers
    keys: dict[str, str]  # estimator -> the hash of its inputs, in its cell files' names
    code: dict  # the code version that computes the numbers (part of every input)
    # finished cells of these keys: their rows, or None for a file the last run recorded byte for byte (read on
    # demand by frame(): a rerun whose tables are current never parses it)
    found: dict[tuple[int, str], pd.DataFrame | None]
    meta: dict  # meta.json of the earlier runs in this folder ({} for a new one)
    store: CellStore | None = None
    tables_current: bool = False  # results.csv and episodes.csv.gz are what these cells give: nothing to rewrite

    @property
    def pending(self) -> list[tuple[int, str]]:
        """The cells still to compute, in run order."""
        return [c for c in self.cells if c not in self.found]

    def frame(self, cell: tuple[int, str]) -> pd.DataFrame:
        """The rows of a finished cell."""
        if self.found[cell] is None:
            n, name = cell
            frame = self.store.load(name, n, self.keys[name])
            if frame is None:  # it matched the record a moment ago: someone changed it under the run's lock
                raise BNError(f"{self.store.path(name, n, self.keys[name])} changed while the run read it; rerun")
            self.found[cell] = frame
        return self.found[cell]

    def paths(self) -> list:
        """Every cell's file, in run order."""
        return [self.store.path(name, n, self.keys[name]) for n, name in self.cells]

    def table_inputs(self, spec: StudySpec) -> dict:
        """What results.csv and episodes.csv.gz depend on beside the cells (the code that summarizes them)."""
        return {"code": self.code, "graph": graph_label(spec), "seed": spec.seed}


def build_estimators(spec: StudySpec, graph, truth) -> dict:
    """Every estimator of the study, built from its settings (nothing prepared yet); one that cannot run on
    this graph or truth is refused."""
    estimators = {e.name: registry.build(e.kind, e.params) for e in spec.estimators}
    other = [name for name, est in estimators.items() if est.tags.variables != graph.variables]
    if other:
        kinds = sorted({estimators[n].tags.variables for n in other})
        raise BNError(f"estimators {other} fit {'/'.join(kinds)} networks, but graph {graph_label(spec)!r} holds "
                      f"{graph.variables} variables; drop them (" + " ".join(f"~estimators.{n}" for n in other)
                      + f") or use estimators={graph.variables}")
    if truth.per_episode_graphs:
        fixed = [name for name, est in estimators.items() if est.tags.one_structure]
        if fixed:
            raise BNError(f"estimators {fixed} are trained for one structure, but graph={spec.graph['name']} draws "
                          f"a fresh DAG per episode; drop them (" + " ".join(f"~estimators.{n}" for n in fixed) + ")")
    return estimators


def plan_run(spec: StudySpec, estimators: dict, truth, store: CellStore, out: Path) -> Plan:
    """The cells to run and what the folder already holds; logs how much is done and why cells are redone."""
    mirror_of = {e.name: e.mirrors for e in spec.estimators}
    code = code_version()
    # the BUILT estimators' effective parameters, defaults included, key their cells
    params = {name: est.get_params() for name, est in estimators.items()}
    inputs = {e.name: cell_inputs(spec, e, params[e.name], spec.estimator(e.mirrors) if e.mirrors else None,
                                  params[e.mirrors] if e.mirrors else None, truth.fingerprint, code)
              for e in spec.estimators}
    keys = {name: cell_key(x) for name, x in inputs.items()}
    cells = plan_cells(spec)
    for e in spec.estimators:
        if not any(name == e.name for _, name in cells):
            log.warning("estimator %s runs at no context length: its context_lens %s are not among %s",
                        e.name, list(e.context_lens or []), list(spec.context_lens))
    found = {}
    record = read_outputs(out)  # the cell files the last finished run wrote its tables from, with their sha256
    recorded = dict(record.get("cells") or [])
    digests = cell_digests([store.path(name, n, keys[name]) for n, name in cells]) if recorded else []
    for cell, (file, digest) in zip(cells, digests):
        if digest is not None and recorded.get(file) == digest:
            found[cell] = None  # byte for byte what was written whole: trusted without parsing it
    for n, name in cells:
        if (n, name) in found:
            continue
        frame = store.load(name, n, keys[name])
        if frame is not None:
            found[(n, name)] = frame
    plan = Plan(cells, mirror_of, inputs, keys, code, found, read_meta(out), store)
    plan.tables_current = not plan.pending and outputs_current(out, digests, plan.table_inputs(spec), record)
    stale = store.stale({store.path(name, n, keys[name]) for n, name in cells})
    log.info("%s: %d cells, %d already done%s", out, len(cells), len(found),
             f", {len(stale)} stale cell files ignored" if stale else "")
    log.info("estimator kinds: %s", ", ".join(f"{k} ({v})" for k, v in
                                              registry.origins(e.kind for e in spec.estimators).items()))
    _log_changes(plan.meta.get("cell_inputs"), inputs, plan.pending, stale)
    return plan


def write_run_manifest(out: Path, config: dict, spec: StudySpec, graph, truth, prior, estimators: dict) -> None:
    """config.yaml, graph.json, truth.json and estimators.json: what a report needs to know of the run."""
    write_manifest(out, config, graph.to_dict(), truth_record(spec, graph, truth, prior),
                   estimator_records(spec, estimators))


# a second process costs seconds of CPU to start (an interpreter, torch): worth it for a longer training only
# (study=smoke's 60 steps, ~4 s, ran 4 s slower with one than without while another job held a core)
BACKGROUND_SECONDS = 20.0


@dataclass
class Preparation:
    """The estimators prepared so far and the seconds each took; ``later``: those waiting for the second
    process (``job``), prepared by :meth:`finish`."""

    seconds: dict[str, float]
    later: list[str]
    job: Background | None = None

    def waits(self, cell: tuple[int, str], plan: Plan) -> bool:
        """Whether the cell needs an estimator (its own or its mirror) the second process prepares."""
        name = cell[1]
        return name in self.later or plan.mirror_of[name] in self.later

    def finish(self, spec: StudySpec, estimators: dict, graph, prior, out: Path) -> None:
        """Wait for the second process, then prepare what waited for it (loading the model it trained)."""
        if self.job is not None:
            self.job.wait()
            self.job = None
        _prepare(spec, estimators, self.later, graph, prior, out, self.seconds)
        self.later = []

    def stop(self) -> None:
        """End the second process if it still runs (the study failed or was stopped)."""
        if self.job is not None:
            self.job.stop()


def to_prepare(spec: StudySpec, estimators: dict, plan: Plan, out: Path) -> list[str]:
    """The estimators to prepare (train, load), in the study's order: those the pending cells need (their own or
    their mirror), and those whose training history or artifacts file in ``out`` must be written again."""
    needed = {name for _, name in plan.pending}
    needed |= {plan.mirror_of[name] for name in needed if plan.mirror_of[name] is not None}
    needed |= {e.name for e in spec.estimators if estimators[e.name].tags.has_history and history_damaged(out, e.name)}
    needed |= {e.name for e in spec.estimators
               if estimators[e.name].tags.has_artifacts and artifacts_missing(out, e.name)}
    return [e.name for e in spec.estimators if e.name in needed]


def second_process(spec: StudySpec, estimators: dict, plan: Plan, order: list[str], graph, prior) -> list[str]:
    """What a second process prepares (its estimator first, then that one's other budgets), or [] for none: see
    :func:`_background_choice`."""
    first = _background_choice(spec, estimators, plan, order, graph, prior)
    if first is None:
        return []
    return [first] + [e.name for e in spec.estimators if e.budget_of == first and e.name in order]


def prepare(spec: StudySpec, estimators: dict, plan: Plan, graph, prior, out: Path, order: list[str],
            later: list[str]) -> Preparation:
    """Prepare ``order`` (:func:`to_prepare`) for the pending cells.

    On two cores the longest of them (the longest training, with its other budgets: ``later``, from
    :func:`second_process`) is trained by a second process while this one prepares the rest and runs their cells
    (:mod:`bncompare.studies.background`); ``later`` is prepared by ``Preparation.finish``. A damaged training
    history or a missing artifacts file is rewritten: preparing again loads the cached model."""
    prep = Preparation({}, list(later))
    if later:
        prep.job = Background.start(later[0], spec.estimator(later[0]), graph, spec.prior, spec.seed)
    try:
        _prepare(spec, estimators, [name for name in order if name not in prep.later], graph, prior, out, prep.seconds)
    except BaseException:
        prep.stop()
        raise
    return prep


def _background_choice(spec: StudySpec, estimators: dict, plan: Plan, order: list[str], graph, prior) -> str | None:
    """The estimator a second process should train: of those with a training still to run (``pending_training``)
    that are no other's budget, the one with the longest estimated training, when that is at least
    :data:`BACKGROUND_SECONDS`, there is other work to overlap with and a second core (else None)."""
    from bncompare.studies.timing import training_seconds

    if not background.enabled():
        return None
    trains = {n: training_seconds(spec.estimator(n).kind, estimators[n].get_params(), graph) for n in order
              if spec.estimator(n).budget_of is None and estimators[n].pending_training(graph, prior, spec.seed)}
    if not trains or max(trains.values()) < BACKGROUND_SECONDS:
        return None
    first = max(trains, key=trains.get)
    group = {first} | {e.name for e in spec.estimators if e.budget_of == first}
    other = [n for n in order if n not in group] + [c for c in plan.pending
                                                   if c[1] not in group and plan.mirror_of[c[1]] not in group]
    return first if other else None


def _prepare(spec: StudySpec, estimators: dict, names: list[str], graph, prior, out: Path, seconds: dict) -> None:
    """Prepare ``names`` in this process, in the study's order, adding the seconds each took to ``seconds``."""
    for e in spec.estimators:
        if e.name in names:
            est = estimators[e.name]
            t0 = time.perf_counter()
            est.prepare(graph, prior, spec.seed)
            seconds[e.name] = time.perf_counter() - t0
            if est.tags.has_history and est.history_:
                write_history(out, e.name, est.history_)
            if est.tags.has_artifacts:
                write_artifacts(out, e.name, est.artifacts_)


def run_cells(spec: StudySpec, estimators: dict, plan: Plan, episodes: Episodes, store: CellStore,
              out: Path, prep: Preparation | None = None, graph=None, prior=None) -> tuple[dict, dict]:
    """Compute and store the missing cells: first those whose estimators are prepared, in plan order, then,
    once the second process is done (``prep.finish``), those that waited for it. Once every cell of a context
    length is at hand they are summarized with their paired differences (references, mirrors) and
    results.csv is rewritten, so a killed run leaves the lengths it finished. Returns (summaries, frames),
    both keyed by (context_len, estimator)."""
    from tqdm.auto import tqdm

    if plan.tables_current:  # a rerun with nothing changed: results.csv is what these cells give
        if prep is not None and prep.later:
            prep.finish(spec, estimators, graph, prior, out)
        return {}, {}
    graph_name, cells = graph_label(spec), plan.cells
    lengths = {n: [c for c in cells if c[0] == n] for n, _ in cells}
    summaries, frames = {}, {c: plan.frame(c) for c in cells if c in plan.found}
    pending = plan.pending
    waiting = [c for c in pending if prep is not None and prep.waits(c, plan)]
    bar = tqdm(total=len(pending), desc="cells", unit="cell", disable=not spec.progress, dynamic_ncols=True)

    def summarize(n: int) -> None:  # every cell of this N is at hand
        summaries.update(summarize_length(spec, graph_name, n, {name: frames[(n, name)] for _, name in lengths[n]},
                                          plan.mirror_of))
        write_results(out, [summaries[c] for c in cells if c in summaries])

    for n, group in lengths.items():
        if all(c in frames for c in group):
            summarize(n)
    for cell in [c for c in pending if c not in waiting] + [None] + waiting:
        if cell is None:  # the first part is done: what waits for the second process comes now
            if prep is not None and prep.later:
                bar.set_postfix_str(f"waiting for {prep.later[0]}'s training")
                prep.finish(spec, estimators, graph, prior, out)
            continue
        n, name = cell
        bar.set_postfix_str(f"{name} N={n}")
        mirror = estimators[plan.mirror_of[name]] if plan.mirror_of[name] is not None else None
        # while the second process trains on one core, one thread here: two would fight it for that core
        # (measured: this process's cells 1.35x slower, the training 1.3x)
        with single_thread() if prep is not None and prep.job is not None else contextlib.nullcontext():
            frame = evaluate_cell(episodes, estimators[name], spec.estimator(name), n, mirror)
        store.write(name, n, plan.keys[name], frame)
        bar.update(1)
        frames[cell] = frame
        if all(c in frames for c in lengths[n]):
            summarize(n)
    bar.close()
    return summaries, frames


def finish(out: Path, spec: StudySpec, plan: Plan, summaries: dict, frames: dict, started, seconds: float,
           prepare_seconds: dict) -> None:
    """results.csv, episodes.csv.gz and meta.json of the finished run (the tables only when they are not
    current already), and the record of what the tables were written from."""
    if not plan.tables_current:
        write_results(out, [summaries[c] for c in plan.cells])
        write_episodes(out, [(name, n, frames[(n, name)]) for n, name in plan.cells], graph_label(spec), spec.seed)
        write_outputs(out, outputs_record(out, cell_digests(plan.paths()), plan.table_inputs(spec)))
    runs = plan.meta.get("runs") if isinstance(plan.meta.get("runs"), list) else []
    runs.append({"started": started.isoformat(timespec="seconds"), "wall_seconds": round(seconds, 2),
                 "cells_computed": len(plan.pending), "cells_reused": len(plan.found),
                 "prepare_seconds": {k: round(v, 2) for k, v in prepare_seconds.items()}})
    meta = dict(plan.meta)
    meta.update({"graph": graph_label(spec), "seed": spec.seed, "device": describe_device(spec),
                 "versions": package_versions(), "code_version": plan.code, "cell_inputs": plan.inputs, "runs": runs})
    write_meta(out, meta)


def run_study(config: dict, out_dir, network=None) -> Path:
    """Run (or resume) the study ``config`` in ``out_dir``; returns the run directory. ``network`` (a BayesNet
    or a pgmpy DiscreteBayesianNetwork) replaces the config's graph (:func:`~bncompare.studies.truth.with_network`)."""
    started, t_start = datetime.now(UTC), time.perf_counter()
    if network is not None:
        from bncompare.studies.truth import with_network

        config = with_network(config, network, out_dir)
    spec = study_spec(config)
    resolve_device(spec.device)  # device=cuda without CUDA: one line, before any work
    out = lock_dir(check_out_dir(out_dir))  # one run per folder; a no-op when the command line holds it
    graph, truth, prior = build_problem(spec)
    check_budget(spec, graph)  # refuse before allocating: one line with the amount and the setting to lower
    estimators = build_estimators(spec, graph, truth)
    store = CellStore(out)
    plan = plan_run(spec, estimators, truth, store, out)
    order = to_prepare(spec, estimators, plan, out)
    later = second_process(spec, estimators, plan, order, graph, prior)
    check_time(spec, graph, prior, estimators, plan.pending, truth.per_episode_graphs, later)  # refuse before training
    write_run_manifest(out, config, spec, graph, truth, prior, estimators)
    prep = prepare(spec, estimators, plan, graph, prior, out, order, later)  # a second process: stopped below
    try:
        summaries, frames = run_cells(spec, estimators, plan, Episodes(graph, truth, spec), store, out, prep, graph,
                                      prior)
    finally:
        prep.stop()
    finish(out, spec, plan, summaries, frames, started, time.perf_counter() - t_start, prep.seconds)
    return out


def summarize_length(spec: StudySpec, graph_name: str, n: int, frames: dict, mirror_of: dict) -> dict:
    """results.csv rows of every cell at context length ``n``, with the paired differences to the references
    and to the mirrored estimator, on the same episodes."""
    out = {}
    for name, frame in frames.items():
        refs = {m: frames.get(r) for m, r in spec.references().items() if r != name}
        mirror = frames.get(mirror_of[name]) if mirror_of[name] is not None else None
        out[(n, name)] = cell_summary(frame, refs, graph_name, spec.seed, name, n, mirror)
    return out


def _log_changes(before, now: dict, pending: list, stale: list) -> None:
    """Say why cells are computed again: what changed in their inputs since the last run (the code once)."""
    if not isinstance(before, dict):
        if before is None and stale:  # stale files are only ignored: say that, not that something is redone
            log.info("meta.json does not record what computed the %d stale cell files (it is damaged or missing, or "
                     "an older bncompare wrote them): they are ignored, not mixed in (cells computed now: %d)",
                     len(stale), len(pending))
        return
    redo = {name for _, name in pending}
    said = set()
    for name, x in now.items():
        old = before.get(name)
        if name not in redo or not isinstance(old, dict) or old == x:
            continue
        diff = changes(old, x)
        code = [d for d in diff if d.startswith("code.")]
        if code and "code" not in said:
            said.add("code")
            log.info("the code that computes the numbers changed since the last run (%s): its cells are computed "
                     "again", "; ".join(code))
        own = [d for d in diff if d.startswith("estimator.code.")]  # a plugin's (or registered class's) code
        if own:
            log.info("%s: code changed (%s), %d cells recomputed", name, "; ".join(own),
                     sum(1 for _, n in pending if n == name))
        diff = [d for d in diff if not d.startswith(("code.", "estimator.code."))]
        if diff:
            log.info("estimator %s: computing its cells again, since the last run changed %s%s", name,
                     "; ".join(diff[:4]), f" (and {len(diff) - 4} more)" if len(diff) > 4 else "")
