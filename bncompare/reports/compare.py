"""Does a run reproduce the published numbers? Compare it with a reference table shipped in the package.

    python -m bncompare.reports.compare reports/tree-7/paper-seed0                   # the matching reference
    python -m bncompare.reports.compare reports/tree-7/paper-seed0 --reference tree-7_paper_seed0
    python -m bncompare.reports.compare --list                                        # the shipped references
    python -m bncompare.reports.compare reports/tree-7/paper-seed0 --write-reference  # make one (maintainers)

A reference is two files in ``bncompare/data/reference/`` (or ``--references DIR``): ``<name>.csv``, the
``node == all`` summary rows of one study run (graph, estimator, context_len, metric, mean, sem, n; timing
left out since it never reproduces), and ``<name>.json``, its provenance (the command, versions, device
and config of that run). The compare reads the run's results.csv, config.yaml and meta.json, and for every
(estimator, context_len, metric) both tables have says: identical (equal to 1e-9 relative, or both
infinite), within noise (``|z| <= 3`` with ``z = difference / sqrt(SE_run^2 + SE_ref^2)``) or differs.
Exit code 0 when no row differs, 1 when some row does, 2 on bad input.
"""
from __future__ import annotations

import io
import json
import math
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from bncompare import rundir
from bncompare.csvtext import escaped
from bncompare.errors import ArgumentParser, BNError, exit_with, on_ctrl_c
from bncompare.rundir import read_table

if TYPE_CHECKING:
    from bncompare.reports.data import Run

REFERENCE_PACKAGE = "bncompare.data.reference"
TABLE_COLUMNS = ["graph", "estimator", "context_len", "metric", "mean", "sem", "n"]
KEYS = ["estimator", "context_len", "metric"]
# The measures a user checks, with their paired differences (<m>_excess, <m>_vs_mirror); query_nll, brier and
# ece are kept when the run has them. Timing (seconds_per_context...) and attention diagnostics are left out.
MEASURES = ("cond_tv", "cond_kl", "joint_tv", "joint_kl", "mc_pair_tv", "mc_loglik_gap", "query_nll", "brier", "ece")
SHARES = ("cond_kl_inf_frac", "query_nll_inf_frac", "unseen_frac", "mc_impossible_frac")
Z_NOISE = 3.0  # |z| above this: the difference is not sampling noise (two-sided p ~ 0.0027 per row)
IDENTICAL_REL = 1e-9
SHOWN = 20  # differing rows printed at most
# Config keys that never change the numbers (where results go, progress bars, batching of the same draws).
NOT_SETTINGS = ("out_dir", "progress", "report", "batch_size")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def checked(metric: str) -> bool:
    base = re.sub(r"_(excess|vs_mirror)$", "", metric)
    return base in MEASURES or metric in SHARES


@dataclass
class Reference:
    name: str
    table: pd.DataFrame  # TABLE_COLUMNS
    provenance: dict


# ----- reading -----------------------------------------------------------------------------

def _folder(references=None):
    """The folder of reference tables: the package's (works from an installed wheel), or ``references``."""
    if references is None:
        return resources.files(REFERENCE_PACKAGE)
    folder = Path(references)
    if not folder.is_dir():
        raise BNError(f"{str(folder)!r} is not a folder of reference tables")
    return folder


def available(references=None) -> list[str]:
    """Names of the references in the folder (a table and its provenance both present)."""
    folder = _folder(references)
    files = {f.name for f in folder.iterdir() if f.is_file()}
    return sorted(n[:-4] for n in files if n.endswith(".csv") and n[:-4] + ".json" in files)


def reference_table(text: str, where: str) -> pd.DataFrame:
    """A reference table from its CSV text; anything else is a one-line BNError naming ``where``."""
    frame = read_table(io.StringIO(text), TABLE_COLUMNS, "reference table", where)
    for col in ("context_len", "mean", "sem", "n"):
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise BNError(f"{where}: column {col!r} holds values that are not numbers")
    if frame.duplicated(KEYS).any():
        raise BNError(f"{where} has repeated (estimator, context_len, metric) rows")
    return frame


def _provenance(folder, name: str) -> dict:
    where = f"reference {name!r} ({name}.json)"
    try:
        text = (folder / f"{name}.json").read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BNError(f"{where} is damaged ({' '.join(str(e).split())})") from None
    return rundir.json_object(text, where)


def load_reference(name: str, references=None) -> Reference:
    names = available(references)
    if name not in names:
        raise BNError(f"unknown reference {name!r}; available: {', '.join(names) or 'none'}")
    folder = _folder(references)
    try:
        text = (folder / f"{name}.csv").read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BNError(f"reference {name!r} cannot be read ({e})") from None
    table = reference_table(text, f"reference {name!r} ({name}.csv)")
    return Reference(name, table, _provenance(folder, name))


def single_run(path) -> Run:
    """The finished run ``path``, read back; one that holds no rows, or a merged table, is a BNError."""
    from bncompare.reports.data import read_run  # the loader brings torch (graphs): only when a run is read

    path = Path(path)
    if not (path / rundir.RESULTS).is_file():
        raise BNError(f"{str(path)!r} is not a finished study run (no {rundir.RESULTS} in it)")
    run = read_run(path)
    if run.results.empty:
        raise BNError(f"{path / rundir.RESULTS} holds no rows")
    if run.results["graph"].nunique() > 1 or run.results["seed"].nunique() > 1:
        raise BNError(f"{path / rundir.RESULTS} holds several graphs or seeds (a merged table); compare one run")
    return run


def summary_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows a reference keeps: node == all, the checked measures, TABLE_COLUMNS."""
    rows = results[(results["node"] == "all") & results["metric"].map(checked)]
    return rows[TABLE_COLUMNS].sort_values(KEYS).reset_index(drop=True)


# ----- comparing ---------------------------------------------------------------------------

def verdicts(run_mean, ref_mean, run_sem, ref_sem) -> tuple[np.ndarray, np.ndarray]:
    """Per row: z (NaN when the SEs give none) and 'identical' | 'within noise' | 'differs'."""
    a, b = np.asarray(run_mean, float), np.asarray(ref_mean, float)
    sa, sb = np.asarray(run_sem, float), np.asarray(ref_sem, float)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = a - b
        se = np.sqrt(sa ** 2 + sb ** 2)
        z = np.where(np.isfinite(diff) & np.isfinite(se) & (se > 0), diff / np.where(se > 0, se, 1), np.nan)
        same = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.abs(diff) <= IDENTICAL_REL * np.maximum(1, np.abs(b)))
    out = np.where(same, "identical", np.where(np.abs(z) <= Z_NOISE, "within noise", "differs"))
    return np.where(same, 0.0, z), out


def compare_tables(run_rows: pd.DataFrame, ref_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows both tables have, with run, reference, diff, z and verdict."""
    both = run_rows.merge(ref_rows, on=KEYS, suffixes=("_run", "_ref"))
    z, verdict = verdicts(both["mean_run"], both["mean_ref"], both["sem_run"], both["sem_ref"])
    with np.errstate(invalid="ignore"):
        diff = both["mean_run"].to_numpy(float) - both["mean_ref"].to_numpy(float)
    return pd.DataFrame({"estimator": both["estimator"], "context_len": both["context_len"],
                         "metric": both["metric"], "run": both["mean_run"], "reference": both["mean_ref"],
                         "diff": diff, "z": z, "verdict": verdict})


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def setting_differences(run_config: dict, ref_config: dict) -> list[str]:
    """'key: run X, reference Y' for every config key whose value differs (where results go left out)."""
    a, b = _flat(run_config), _flat(ref_config)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in NOT_SETTINGS or key.startswith("hydra"):
            continue
        if a.get(key, "(absent)") != b.get(key, "(absent)"):
            lines.append(f"{key}: run {a.get(key, '(absent)')}, reference {b.get(key, '(absent)')}")
    return lines


def version_differences(meta: dict, provenance: dict) -> list[str]:
    lines = []
    run_v, ref_v = meta.get("versions") or {}, provenance.get("versions") or {}
    for pkg in sorted(set(run_v) | set(ref_v)):
        if run_v.get(pkg) != ref_v.get(pkg):
            lines.append(f"{pkg}: run {run_v.get(pkg, '?')}, reference {ref_v.get(pkg, '?')}")
    run_c, ref_c = meta.get("code_version") or {}, provenance.get("code_version") or {}
    for part in sorted(set(run_c) | set(ref_c)):
        if run_c.get(part) != ref_c.get(part):
            lines.append(f"code_version.{part}: run {run_c.get(part, '?')}, reference {ref_c.get(part, '?')}")
    if meta.get("device") != provenance.get("device"):
        lines.append(f"device: run {meta.get('device', '?')}, reference {provenance.get('device', '?')}")
    return lines


def default_reference(run: Run, references=None) -> str:
    """The reference of the run's graph and study (the run's seed preferred)."""
    names = available(references)
    folder = _folder(references)
    match = []
    for name in names:
        p = _provenance(folder, name)
        if p.get("graph") == run.graph and p.get("study") == run.study:
            match.append((p.get("seed") != run.seed, name))
    if not match:
        raise BNError(f"no reference for graph {run.graph} study {run.study}; available: {', '.join(names) or 'none'}"
                      " (choose one with --reference NAME)")
    return min(match)[1]


def _num(v: float) -> str:
    if not np.isfinite(v):
        return str(v)
    return f"{v:.4g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4) else f"{v:.4f}"


def compare(run_dir, reference: str | None = None, references=None) -> tuple[str, int]:
    """The printed comparison and the exit code (0: nothing differs, 1: some row differs)."""
    run = single_run(run_dir)
    name = reference or default_reference(run, references)
    ref = load_reference(name, references)
    ref_graphs = sorted(set(ref.table["graph"]))
    if ref_graphs != [run.graph]:
        same = [n for n in available(references) if _provenance(_folder(references), n).get("graph") == run.graph]
        raise BNError(f"the run is graph {run.graph} but reference {name!r} is graph {', '.join(ref_graphs)}; "
                      f"references of {run.graph}: {', '.join(same) or 'none'}; "
                      f"all: {', '.join(available(references))}")
    mine = summary_rows(run.results)
    table = compare_tables(mine, ref.table)
    if table.empty:
        raise BNError(f"{run.dir} and reference {name!r} have no (estimator, context_len, metric) row in common "
                      f"(run: context lengths {sorted(set(mine['context_len']))}, reference: "
                      f"{sorted(set(ref.table['context_len']))})")
    counts = table["verdict"].value_counts()
    n_same, n_noise, n_diff = (int(counts.get(v, 0)) for v in ("identical", "within noise", "differs"))
    prov = ref.provenance
    lines = [f"run        {run.dir}  (graph {run.graph}, study {run.study}, seed {run.seed})",
             f"reference  {name}  (graph {prov.get('graph', '?')}, study {prov.get('study', '?')}, "
             f"seed {prov.get('seed', '?')}; made by: {prov.get('command', '?')}; written {prov.get('written', '?')})",
             f"rows compared: {len(table)} (node = all; estimator, context length and metric in both tables)",
             f"  identical     {n_same:6d}  (equal to {IDENTICAL_REL:g} relative, or both infinite)",
             f"  within noise  {n_noise:6d}  (|z| <= {Z_NOISE:g}, z = difference / sqrt(SE_run^2 + SE_ref^2))",
             f"  differ        {n_diff:6d}"]
    if run.seed != prov.get("seed"):
        expected = 2 * 0.5 * math.erfc(Z_NOISE / math.sqrt(2)) * int(np.isfinite(table["z"]).sum())
        lines.append(f"  (other seed: independent draws would give about {expected:.1f} rows with |z| > {Z_NOISE:g} "
                     "by chance)")
    only_run, only_ref = len(mine) - len(table), len(ref.table) - len(table)
    if only_run or only_ref:
        lines.append(f"rows only in the run: {only_run}; only in the reference: {only_ref}")
    settings = setting_differences(run.config, prov.get("config") or {})
    lines.append("settings that differ: " + ("none" if not settings else f"{len(settings)}"))
    lines += [f"  {s}" for s in settings[:12]]
    if len(settings) > 12:
        lines.append(f"  ... and {len(settings) - 12} more")
    versions = version_differences(run.meta, prov)
    lines.append("versions that differ: " + ("none" if not versions else f"{len(versions)}"))
    lines += [f"  {s}" for s in versions]
    if n_diff:
        bad = table[table["verdict"] == "differs"].assign(key=lambda t: -np.nan_to_num(t["z"].abs(), nan=np.inf))
        bad = bad.sort_values(["key", "estimator", "context_len", "metric"])
        lines.append(f"rows that differ (worst |z| first{f', first {SHOWN}' if len(bad) > SHOWN else ''}):")
        lines.append(f"  {'estimator':<22} {'N':>5}  {'metric':<26} {'run':>11} {'reference':>11} {'diff':>11} "
                     f"{'z':>8}")
        for r in bad.head(SHOWN).itertuples():
            lines.append(f"  {r.estimator:<22} {r.context_len:>5}  {r.metric:<26} {_num(r.run):>11} "
                         f"{_num(r.reference):>11} {_num(r.diff):>11} {'no SE' if np.isnan(r.z) else f'{r.z:.1f}':>8}")
        lines.append(f"verdict: NOT reproduced: {n_diff} of {len(table)} rows differ from reference {name} beyond "
                     f"noise (|z| > {Z_NOISE:g}, or no SE to judge by)")
    elif n_noise:
        lines.append(f"verdict: reproduced within noise: {n_same} rows identical, {n_noise} within noise "
                     f"(|z| <= {Z_NOISE:g}), none differ from reference {name}")
    else:
        lines.append(f"verdict: reproduced exactly: all {len(table)} rows identical to reference {name}")
    return "\n".join(lines), int(n_diff > 0)


# ----- writing a reference -----------------------------------------------------------------

def run_command(run: Run) -> tuple[str, str]:
    """(the command that made the run, as Hydra recorded it; the command that makes it again anywhere)."""
    base = "python -m bncompare.studies.run"
    graph = (run.config.get("graph") or {}).get("name", run.graph)
    recorded = run.dir / rundir.HYDRA / "overrides.yaml"
    overrides = []
    if recorded.is_file():
        try:
            value = yaml.safe_load(recorded.read_text())
            overrides = [str(v) for v in value] if isinstance(value, list) else []
        except yaml.YAMLError:
            overrides = []
    plain = f"{base} graph={graph} study={run.study} seed={run.seed}"
    made = f"{base} {' '.join(overrides)}" if overrides else plain
    skip = ("graph=", "study=", "seed=") + tuple(f"{k}=" for k in NOT_SETTINGS)
    extra = [o for o in overrides if not o.lstrip("+~").startswith(skip)]
    again = " ".join([base, f"graph={graph}", f"study={run.study}", f"seed={run.seed}"] + extra)
    return made, again


def _git_commit() -> str | None:
    """The commit of the checkout this code runs from, if it is one ('+ uncommitted changes' when edited)."""
    def git(*args) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_reference(run_dir, name: str | None = None, out=None) -> Path:
    """``<name>.csv`` and ``<name>.json`` from a finished run, in ``out`` (default: the package's folder)."""
    from bncompare.files import atomic_write_text

    run = single_run(run_dir)
    name = name or f"{run.graph}_{run.study}_seed{run.seed}"
    if not NAME.fullmatch(name):
        raise BNError(f"reference name {name!r}: use letters, digits, '.', '_' and '-' only")
    rows = summary_rows(run.results)
    if rows.empty:
        raise BNError(f"{run.dir / rundir.RESULTS} has no node = all rows of {', '.join(MEASURES)}")
    folder = Path(str(resources.files(REFERENCE_PACKAGE))) if out is None else Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BNError(f"cannot write to {str(folder)!r}: {e.strerror or e}") from None
    made, again = run_command(run)
    runs = run.meta.get("runs") if isinstance(run.meta.get("runs"), list) else []
    provenance = {
        "name": name,
        "what": "node = all summary rows (mean, SE over episodes, n) of one bncompare study run",
        "graph": run.graph, "study": run.study, "seed": run.seed,
        "command": made, "reproduce": again,
        "compare": f"python -m bncompare.reports.compare reports/{run.graph}/{run.study}-seed{run.seed} "
                   f"--reference {name}",
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_started": [r.get("started") for r in runs if isinstance(r, dict)],
        "versions": run.meta.get("versions", {}), "code_version": run.meta.get("code_version", {}),
        "device": run.meta.get("device"),
        "git_commit": _git_commit(),  # of the checkout that wrote this file, when it is one (optional)
        "rows": len(rows), "metrics": sorted(set(rows["metric"])),
        "config": run.config,
    }
    try:
        atomic_write_text(folder / f"{name}.csv", escaped(rows).to_csv(index=False))
        atomic_write_text(folder / f"{name}.json", json.dumps(provenance, indent=1, default=str) + "\n")
    except OSError as e:
        raise BNError(f"cannot write to {str(folder)!r}: {e.strerror or e}") from None
    return folder / f"{name}.csv"


@on_ctrl_c("interrupted")
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m bncompare.reports.compare",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="exit code: 0 nothing differs, 1 some row differs, 2 bad input")
    parser.add_argument("run_dir", nargs="?", help="a finished study run (its results.csv, config.yaml, meta.json)")
    parser.add_argument("--reference", help="the reference to compare with (default: the one of the run's graph "
                        "and study)")
    parser.add_argument("--references", metavar="DIR", help="a folder of reference tables instead of the package's")
    parser.add_argument("--list", action="store_true", help="list the references and exit")
    parser.add_argument("--write-reference", nargs="?", const="", metavar="NAME",
                        help="write a reference table from run_dir instead of comparing (NAME default: "
                        "<graph>_<study>_seed<seed>)")
    parser.add_argument("--out", metavar="DIR", help="with --write-reference: the folder (default: the package's)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            folder = _folder(args.references)
            for name in available(args.references):
                p = _provenance(folder, name)
                print(f"{name}\tgraph {p.get('graph')}\tstudy {p.get('study')}\tseed {p.get('seed')}\t"
                      f"{p.get('command')}")
            return
        if not args.run_dir:
            raise BNError("give a run directory (or --list)")
        if args.write_reference is not None:
            if args.references:
                raise BNError("--references is for comparing; with --write-reference give the folder as --out")
            path = write_reference(args.run_dir, args.write_reference or None, args.out)
            print(f"reference {path.stem}: {path} and {path.with_suffix('.json').name}")
            return
        if args.out:
            raise BNError("--out goes with --write-reference")
        text, code = compare(args.run_dir, args.reference, args.references)
    except BNError as e:
        exit_with(str(e))
    print(text)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
