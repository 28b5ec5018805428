"""Run a study: build the problem, prepare estimators, evaluate the missing cells, write everything.

    from bncompare.studies.runner import run_study
    run_study(config_dict, "reports/tree-7/my-study")

``config_dict`` is the resolved Hydra config (see ``conf/config.yaml``); the
command line (:mod:`bncompare.studies.run`) is a thin layer over this function.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bncompare.errors import BNError
from bncompare.studies import registry
from bncompare.studies.spec import StudySpec, study_spec
from bncompare.studies.store import CellStore, atomic_write_text, cell_key, cell_summary, write_episodes, write_results

log = logging.getLogger(__name__)


def build_problem(spec: StudySpec):
    """(graph, truth, prior) of a study: real networks keep their bundled CPTs as the truth."""
    from bncompare.networks.families import get_graph, is_real, load_network
    from bncompare.networks.priors import make_prior
    from bncompare.studies.protocol import FixedTruth, PriorTruth

    name, options = spec.graph["name"], spec.graph["options"]
    prior = make_prior(spec.prior["kind"], **spec.prior["params"])
    if name == SACHS_DATA:
        return _sachs_data_problem(spec, options, prior)
    if is_real(name):
        if options:
            raise BNError(f"graph {name!r} is a real network and takes no options, got {sorted(options)}")
        net = load_network(name)
        return net.graph, FixedTruth([c[None] for c in net.cpts], net), prior
    try:
        graph = get_graph(name, **options)
    except TypeError as e:
        raise BNError(f"bad graph options {options} for {name!r}: {e}") from None
    return graph, PriorTruth(prior), prior


SACHS_DATA = "sachs_data"
SACHS_DATA_OPTIONS = {"method", "splits", "holdout_frac", "smoothing"}


def _sachs_data_problem(spec: StudySpec, options: dict, prior):
    """The real Sachs rows: splits seeded by the study seed, truth = each split's held-out reference."""
    from bncompare.realdata.sachs import sachs_data, sachs_graph, sachs_splits
    from bncompare.studies.protocol import SplitTruth

    unknown = sorted(set(options) - SACHS_DATA_OPTIONS)
    if unknown:
        raise BNError(f"graph {SACHS_DATA!r}: unknown options {unknown}; allowed: {sorted(SACHS_DATA_OPTIONS)}")
    graph = sachs_graph()
    splits = sachs_splits(sachs_data(str(options.get("method", "hartemink"))), n_splits=options.get("splits", 5),
                          holdout_frac=float(options.get("holdout_frac", 0.5)), seed=spec.seed,
                          smoothing=float(options.get("smoothing", 0.5)), graph=graph)
    truth = SplitTruth(splits)
    if max(spec.context_lens) > truth.pool_size:
        raise BNError(f"context length {max(spec.context_lens)} exceeds the Sachs context pool of "
                      f"{truth.pool_size} rows; lower context_lens or graph.options.holdout_frac")
    if spec.queries > truth.holdout_size:
        raise BNError(f"queries={spec.queries} exceeds the {truth.holdout_size} held-out Sachs rows")
    return graph, truth, prior


def check_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BNError(f"cannot write to out_dir {str(out)!r}: {e.strerror or e}") from None
    return out


def plan_cells(spec: StudySpec) -> list[tuple[int, str]]:
    """(context_len, estimator) in run order: by context length, the reference first."""
    order = sorted(spec.estimators, key=lambda e: e.name != spec.reference)
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

    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def run_study(config: dict, out_dir, report: bool | None = None) -> Path:
    """Run (or resume) the study ``config`` in ``out_dir``; returns the output directory."""
    started, t_start = datetime.now(timezone.utc), time.perf_counter()
    spec = study_spec(config)
    if spec.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BNError("device=cuda but CUDA is not available here; use device=auto or device=cpu")
    out = check_out_dir(out_dir)
    graph, truth, prior = build_problem(spec)
    report = config.get("report", True) if report is None else report
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    from tqdm.auto import tqdm

    from bncompare.studies.protocol import Episodes, evaluate_cell

    graph_name, seed = spec.graph["name"], spec.seed
    store = CellStore(out)
    mirror_of = {e.name: (spec.estimator(e.mirrors) if e.mirrors else None) for e in spec.estimators}
    keys = {e.name: cell_key(spec, e, mirror_of[e.name]) for e in spec.estimators}
    plan = plan_cells(spec)
    for e in spec.estimators:
        if not any(name == e.name for _, name in plan):
            log.warning("estimator %s runs at no context length: its context_lens %s are not among %s",
                        e.name, list(e.context_lens or []), list(spec.context_lens))
    pending = [(n, name) for n, name in plan if not store.has(name, n, keys[name])]
    stale = store.stale({store.path(name, n, keys[name]) for n, name in plan})
    log.info("%s: %d cells, %d already done%s", out, len(plan), len(plan) - len(pending),
             f", {len(stale)} stale cell files ignored" if stale else "")

    # Build every estimator (settings only); prepare the ones a pending cell needs, once.
    estimators = {e.name: registry.build(e.kind, e.params) for e in spec.estimators}
    needed = {name for _, name in pending}
    needed |= {mirror_of[name].name for name in needed if mirror_of[name] is not None}
    prepare_seconds = {}
    for e in spec.estimators:
        if e.name in needed:
            t0 = time.perf_counter()
            estimators[e.name].prepare(graph, prior, seed)
            prepare_seconds[e.name] = time.perf_counter() - t0
            _save_history(out, e.name, estimators[e.name])

    # Walk the plan in order: finished cells are read back, missing ones computed. The reference
    # comes first at each N, so its per-episode rows are at hand for the paired excess errors.
    episodes = Episodes(graph, truth, spec)
    todo = set(pending)
    summaries, ref_frame = {}, None
    bar = tqdm(total=len(pending), desc="cells", unit="cell", disable=not spec.progress, dynamic_ncols=True)
    for n, name in plan:
        if (n, name) in todo:
            bar.set_postfix_str(f"{name} N={n}")
            mirror = estimators[mirror_of[name].name] if mirror_of[name] is not None else None
            frame = evaluate_cell(episodes, estimators[name], spec.estimator(name), n, mirror)
            store.write(name, n, keys[name], frame)
        else:
            frame = store.read(name, n, keys[name])
        if name == spec.reference:
            ref_frame = frame
        ref = ref_frame if spec.reference is not None and name != spec.reference else None
        summaries[(n, name)] = cell_summary(frame, ref, graph_name, seed, name, n)
        if (n, name) in todo:
            write_results(out, [summaries[c] for c in plan if c in summaries])
            bar.update(1)
    bar.close()

    write_results(out, [summaries[c] for c in plan])
    write_episodes(out, [(name, n, store.read(name, n, keys[name])) for n, name in plan], graph_name, seed)
    _write_meta(out, spec, started, time.perf_counter() - t_start, len(pending), len(plan) - len(pending),
                prepare_seconds, prior_note(truth, prior))
    if report:
        from bncompare.reports.report import write_report

        write_report(out)
    return out


def _save_history(out: Path, name: str, est) -> None:
    history = getattr(est, "history_", None)
    if not history:
        return
    import pandas as pd

    (out / "extras").mkdir(exist_ok=True)
    atomic_write_text(out / "extras" / f"history_{name}.csv", pd.DataFrame(history).to_csv(index=False))


def prior_note(truth, prior) -> str | None:
    """How far a real network's CPTs (or a real-data reference) sit from the Dirichlet training prior."""
    net, alpha = getattr(truth, "network", None), getattr(prior, "alpha", None)
    if net is None or alpha is None:
        return None
    from bncompare.realdata.prior_fit import describe

    text = describe(net, float(alpha))
    return f"split-0 held-out reference: {text}" if hasattr(truth, "splits") else text


def _write_meta(out: Path, spec: StudySpec, started, seconds: float, computed: int, reused: int,
                prepare_seconds: dict, prior_distance: str | None = None) -> None:
    path = out / "meta.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    runs = meta.get("runs", [])
    runs.append({"started": started.isoformat(timespec="seconds"), "wall_seconds": round(seconds, 2),
                 "cells_computed": computed, "cells_reused": reused,
                 "prepare_seconds": {k: round(v, 2) for k, v in prepare_seconds.items()}})
    meta.update({"graph": spec.graph["name"], "seed": spec.seed, "device": describe_device(spec),
                 "versions": package_versions(), "runs": runs})
    if prior_distance:
        meta["prior_distance"] = prior_distance
    atomic_write_text(path, json.dumps(meta, indent=2))
