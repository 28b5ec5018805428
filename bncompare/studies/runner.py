"""Run a study: config -> plan -> estimators -> metrics -> a self-describing run directory.

    from bncompare.studies.runner import run_study
    run_study(config_dict, "reports/tree-7/my-study")

``config_dict`` is the resolved Hydra config (see ``conf/config.yaml``); the
command line (:mod:`bncompare.studies.run`) is a thin layer over this function
and hands the finished directory to the report command.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bncompare.codeversion import code_version
from bncompare.errors import BNError
from bncompare.files import atomic_write_text, lock_dir, probe_writable
from bncompare.metrics.summary import cell_summary
from bncompare.networks.priors import make_prior
from bncompare.runtime import resolve_device
from bncompare.studies import registry
from bncompare.studies.budget import check_budget
from bncompare.studies.evaluate import evaluate_cell
from bncompare.studies.protocol import Episodes
from bncompare.studies.spec import StudySpec, study_spec
from bncompare.studies.store import (
    CellStore,
    cell_inputs,
    cell_key,
    changes,
    history_damaged,
    read_json,
    write_episodes,
    write_history,
    write_json,
    write_results,
)
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
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("bncompare", "torch", "numpy", "pandas", "pgmpy", "pyro-ppl", "hydra-core", "matplotlib", "seaborn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def describe_device(spec: StudySpec) -> str:
    import torch

    device = resolve_device(spec.device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def graph_record(graph) -> dict:
    """The DAG as plain data (what the report draws)."""
    return {"names": list(graph.names), "cards": list(graph.cards),
            "parents": [[graph.names[p] for p in ps] for ps in graph.parents]}


def estimator_records(spec: StudySpec, estimators: dict) -> dict:
    """What each estimator is, as it declares itself: kind, class, label, tags, settings, and the study's use of it."""
    from dataclasses import asdict

    return {e.name: {"kind": e.kind, "class": type(estimators[e.name]).__name__, "label": e.label or e.name,
                     "tags": asdict(estimators[e.name].tags), "params": estimators[e.name].get_params(),
                     "optimal_prior": estimators[e.name].optimal_prior(),
                     "subset": e.subset, "context_lens": list(e.context_lens) if e.context_lens else None,
                     "mirrors": e.mirrors, "budget_of": e.budget_of, "reference": e.name == spec.reference,
                     "tv_reference": e.name == spec.tv_reference}
            for e in spec.estimators}


def run_study(config: dict, out_dir) -> Path:
    """Run (or resume) the study ``config`` in ``out_dir``; returns the run directory."""
    started, t_start = datetime.now(UTC), time.perf_counter()
    spec = study_spec(config)
    resolve_device(spec.device)  # device=cuda without CUDA: one line, before any work
    out = lock_dir(check_out_dir(out_dir))  # one run per folder; a no-op when the command line holds it
    graph, truth, prior = build_problem(spec)
    check_budget(spec, graph)  # refuse before allocating: one line with the amount and the setting to lower
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    from tqdm.auto import tqdm

    graph_name, seed = graph_label(spec), spec.seed
    store = CellStore(out)
    mirror_of = {e.name: (spec.estimator(e.mirrors) if e.mirrors else None) for e in spec.estimators}
    # Build every estimator (settings only): its effective parameters, defaults included, key its cells.
    estimators = {e.name: registry.build(e.kind, e.params) for e in spec.estimators}
    code = code_version()
    inputs = {e.name: cell_inputs(spec, e, estimators[e.name].get_params(), mirror_of[e.name],
                                  estimators[mirror_of[e.name].name].get_params() if mirror_of[e.name] else None,
                                  truth.fingerprint, code) for e in spec.estimators}
    keys = {name: cell_key(x) for name, x in inputs.items()}
    plan = plan_cells(spec)
    for e in spec.estimators:
        if not any(name == e.name for _, name in plan):
            log.warning("estimator %s runs at no context length: its context_lens %s are not among %s",
                        e.name, list(e.context_lens or []), list(spec.context_lens))
    pending = [(n, name) for n, name in plan if not store.has(name, n, keys[name])]
    stale = store.stale({store.path(name, n, keys[name]) for n, name in plan})
    log.info("%s: %d cells, %d already done%s", out, len(plan), len(plan) - len(pending),
             f", {len(stale)} stale cell files ignored" if stale else "")
    _log_changes(read_json(out, "meta.json").get("cell_inputs"), inputs, pending, stale)

    if truth.per_episode_graphs:
        fixed = [name for name, est in estimators.items() if est.tags.one_structure]
        if fixed:
            raise BNError(f"estimators {fixed} are trained for one structure, but graph={spec.graph['name']} draws "
                          f"a fresh DAG per episode; drop them (" + " ".join(f"~estimators.{n}" for n in fixed) + ")")
    write_json(out, "graph.json", graph_record(graph))
    truth_prior = make_prior(spec.truth_prior["kind"], **spec.truth_prior["params"])
    write_json(out, "truth.json", {"kind": truth.kind, "truth": truth.truth, "prior": prior.describe(),
                                   "eval_prior": truth_prior.describe() if spec.eval_prior else None,
                                   "headline": truth.headline,
                                   "per_episode_dags": truth.per_episode_graphs,
                                   "description": truth.describe(graph, truth_prior),
                                   "prior_distance": prior_distance(truth, prior)})
    write_json(out, "estimators.json", estimator_records(spec, estimators))
    needed = {name for _, name in pending}
    needed |= {mirror_of[name].name for name in needed if mirror_of[name] is not None}
    # a damaged training history is rewritten: preparing again loads the cached model and its history
    needed |= {e.name for e in spec.estimators if estimators[e.name].tags.has_history and history_damaged(out, e.name)}
    prepare_seconds = {}
    for e in spec.estimators:
        if e.name in needed:
            t0 = time.perf_counter()
            estimators[e.name].prepare(graph, prior, seed)
            prepare_seconds[e.name] = time.perf_counter() - t0
            if estimators[e.name].tags.has_history and estimators[e.name].history_:
                write_history(out, e.name, estimators[e.name].history_)

    # Walk the plan in order: finished cells are read back, missing ones computed; once every cell of a
    # context length is at hand, they are summarized with their paired differences (references, mirrors).
    episodes = Episodes(graph, truth, spec)
    todo = set(pending)
    summaries, frames = {}, {}
    bar = tqdm(total=len(pending), desc="cells", unit="cell", disable=not spec.progress, dynamic_ncols=True)
    for i, (n, name) in enumerate(plan):
        if (n, name) in todo:
            bar.set_postfix_str(f"{name} N={n}")
            mirror = estimators[mirror_of[name].name] if mirror_of[name] is not None else None
            frame = evaluate_cell(episodes, estimators[name], spec.estimator(name), n, mirror)
            store.write(name, n, keys[name], frame)
            bar.update(1)
        else:
            frame = store.read(name, n, keys[name])
        frames[name] = frame
        if i + 1 == len(plan) or plan[i + 1][0] != n:  # every cell of this N is at hand: summarize them in pairs
            summaries.update(summarize_length(spec, graph_name, n, frames, mirror_of))
            frames = {}
            write_results(out, [summaries[c] for c in plan if c in summaries])
    bar.close()

    write_results(out, [summaries[c] for c in plan])
    write_episodes(out, [(name, n, store.read(name, n, keys[name])) for n, name in plan], graph_name, seed)
    _write_meta(out, spec, started, time.perf_counter() - t_start, len(pending), len(plan) - len(pending),
                prepare_seconds, code, inputs)
    return out


def summarize_length(spec: StudySpec, graph_name: str, n: int, frames: dict, mirror_of: dict) -> dict:
    """results.csv rows of every cell at context length ``n``, with the paired differences to the references
    and to the mirrored estimator, on the same episodes."""
    out = {}
    for name, frame in frames.items():
        refs = {m: frames.get(r) for m, r in spec.references().items() if r != name}
        mirror = frames.get(mirror_of[name].name) if mirror_of[name] is not None else None
        out[(n, name)] = cell_summary(frame, refs, graph_name, spec.seed, name, n, mirror)
    return out


def _log_changes(before, now: dict, pending: list, stale: list) -> None:
    """Say why cells are computed again: what changed in their inputs since the last run (the code once)."""
    if not isinstance(before, dict):
        if before is None and stale:
            log.info("the cells found here were computed by a bncompare that did not record its code version "
                     "or settings in meta.json: they are computed again")
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
        diff = [d for d in diff if not d.startswith("code.")]
        if diff:
            log.info("estimator %s: computing its cells again, since the last run changed %s%s", name,
                     "; ".join(diff[:4]), f" (and {len(diff) - 4} more)" if len(diff) > 4 else "")


def _write_meta(out: Path, spec: StudySpec, started, seconds: float, computed: int, reused: int,
                prepare_seconds: dict, code: dict, inputs: dict) -> None:
    meta = read_json(out, "meta.json")
    runs = meta.get("runs") if isinstance(meta.get("runs"), list) else []
    runs.append({"started": started.isoformat(timespec="seconds"), "wall_seconds": round(seconds, 2),
                 "cells_computed": computed, "cells_reused": reused,
                 "prepare_seconds": {k: round(v, 2) for k, v in prepare_seconds.items()}})
    meta.update({"graph": graph_label(spec), "seed": spec.seed, "device": describe_device(spec),
                 "versions": package_versions(), "code_version": code, "cell_inputs": inputs, "runs": runs})
    write_json(out, "meta.json", meta)
