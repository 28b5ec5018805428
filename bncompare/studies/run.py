"""Command line of a study (a Hydra 1.3 app).

    python -m bncompare.studies.run graph=tree
    python -m bncompare.studies.run study=smoke out_dir=/tmp/smoke
    python -m bncompare.studies.run -m graph=tree,chain,general seed=0,1,2 hydra/launcher=joblib
    python -m bncompare.studies.run --help

Bad input (an unknown graph, an invalid value, a negative context length, an
unwritable out_dir, an out_dir another run holds...) prints ONE line to stderr and
exits with code 2. Set HYDRA_FULL_ERROR=1 to get the full traceback instead. Ctrl-C prints one
line and exits with code 130; rerunning the same command resumes.

Before Hydra starts, :func:`preflight` composes every job's config exactly as Hydra
will and checks it (:mod:`bncompare.studies.guard`: nothing in a config or preset may
name code to call), validates the study settings, and locks the run's out_dir.

The study writes a run directory; the report is a separate step that reads only
that directory (``python -m bncompare.reports.report <dir>``), run here as its
own process when ``report=true``.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from bncompare.errors import BNError, exit_with
from bncompare.files import HOLDER_NAME, LOCK_NAME
from bncompare.processes import ends_with_this_process

CONFIG_MODULE = "bncompare.studies.conf"
_USER_TRACEBACK = "BNCOMPARE_USER_HYDRA_FULL_ERROR"
# TrainConfig fields a study sets itself rather than from the config: the seed is the study's.
STUDY_OWNED_TRAIN_FIELDS = ("seed",)
MAX_PREFIX = 10_000  # the longest process.T: one cell per prefix length
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def _max(values):
    if isinstance(values, (int, float)):
        return values
    return max(values, default=0)  # an empty list is reported by the spec's check of context_lens


def _upto(T):
    """``${upto:T}``: the context lengths 1..T of an autoregressive study (T, the longest prefix, >= 2)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise BNError(f"process.T (the longest prefix) must be an integer >= 2, got {T!r}")
    if T > MAX_PREFIX:
        raise BNError(f"process.T must be at most {MAX_PREFIX}, got {T}")
    return list(range(1, T + 1))


def train_defaults() -> dict:
    """Every TrainConfig default, read from the dataclass: a default lives in one place."""
    from bncompare.transformer.train import TrainConfig

    defaults = TrainConfig().to_dict()
    defaults.update(defaults.pop("model"))  # a study sets the model's settings beside the training's
    for name in STUDY_OWNED_TRAIN_FIELDS:
        defaults.pop(name, None)
    return {"train": {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}}


def cached_train_defaults() -> dict:
    """:func:`train_defaults`, read from a JSON file keyed by the transformer package's source bytes when one
    was written for exactly these sources: computing it imports torch (seconds), and every command line
    composes it, ``--help`` too. The dataclass stays the one home of every default; the file is its copy."""
    import hashlib
    import json
    from pathlib import Path

    import bncompare

    folder = Path(bncompare.__file__).parent / "transformer"
    h = hashlib.sha256(bncompare.__version__.encode())
    for f in sorted(folder.rglob("*.py")):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    # the model cache's folder (transformer.checkpoint.default_cache_dir, which imports torch)
    cache = Path(os.environ.get("BNCOMPARE_CACHE") or Path.home() / ".cache" / "bncompare")
    path = cache / f"train-defaults-{h.hexdigest()[:16]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    defaults = train_defaults()
    try:  # written whole or not at all (parallel jobs may race); a folder we cannot write only costs time
        cache.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # open(): the user's umask applies
        part.write_text(json.dumps(defaults))
        os.replace(part, path)
    except OSError:
        pass
    return defaults


def register_configs() -> None:
    """The ``max`` and ``upto`` resolvers, ``study_defaults`` (the base of ``conf/config.yaml``),
    ``transformer_defaults`` (``conf/transformer/*.yaml`` start from it) and ``process_defaults``
    (``conf/process/*.yaml`` start from it)."""
    from bncompare.studies.conf.graph import register as register_bundled_networks
    from bncompare.studies.spec import ProcessConfig, study_defaults

    register_bundled_networks()  # graph=<name> for every network in pgmpy's wheel
    OmegaConf.register_new_resolver("max", _max, replace=True)
    OmegaConf.register_new_resolver("upto", _upto, replace=True)
    ConfigStore.instance().store(name="study_defaults", node=study_defaults())
    ConfigStore.instance().store(name="transformer_defaults", node=cached_train_defaults())
    process = OmegaConf.to_container(OmegaConf.structured(ProcessConfig))
    ConfigStore.instance().store(name="process_defaults", node=process)


register_configs()


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from bncompare.studies.runner import run_study

    hc = HydraConfig.get()
    config = OmegaConf.to_container(cfg, resolve=True)
    if hc.mode == RunMode.MULTIRUN:
        config["out_dir"] = hc.runtime.output_dir  # a sweep's job records the folder it writes, not the default
    try:
        path = run_study(config, hc.runtime.output_dir)
        if config.get("report", True):
            write_report(path)
    except (BNError, OSError) as e:
        if hc.mode == RunMode.MULTIRUN or os.environ.get(_USER_TRACEBACK) == "1":
            raise  # the launcher reports it (one line again, from main)
        # Exit here: an exception would make Hydra print its own job-failure preamble first.
        exit_with(one_line(e, hc.runtime.output_dir))
    print(f"results: {path / 'results.csv'}")
    if config.get("report", True):
        print(f"report:  {path / 'report.pdf'}")


_app = hydra.main(version_base="1.3", config_path="conf", config_name="config")(_task)


REPORT_FINGERPRINT = ".report_fingerprint"  # beside report.pdf: what the run directory held when it was rendered
# rewritten by every run, read by no page: the report, its stamp, the log, Hydra's record, the folder's lock and
# the name of the process holding it (a new pid every run); and store.OUTPUTS (what the tables were written from)
NOT_REPORT_INPUT = {"report.pdf", REPORT_FINGERPRINT, "run.log", ".hydra", LOCK_NAME, HOLDER_NAME}


def run_fingerprint(run_dir) -> str:
    """sha256 of every file the report may read, by relative path and content, and of the report code."""
    from bncompare.codeversion import code_version
    from bncompare.studies.store import OUTPUTS

    root, skip = Path(run_dir), NOT_REPORT_INPUT | {OUTPUTS}
    h = hashlib.sha256(json.dumps(code_version(("reports", "rundir.py")), sort_keys=True).encode())
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root)
        if rel.parts[0] not in skip:
            h.update(str(rel.as_posix()).encode() + b"\0" + _report_input(f) + b"\0")
    return h.hexdigest()


def gzip_body(data: bytes) -> bytes:
    """A gzip file's compressed stream and trailer (CRC-32 and length of the content), without its header: the
    header holds a time stamp and the temporary file's name, which differ between two writes of the same
    content. Equal bodies mean equal content; not a gzip member: the bytes as they are."""
    if len(data) < 18 or data[:3] != b"\x1f\x8b\x08":
        return data
    flags, pos = data[3], 10
    try:
        if flags & 4:  # FEXTRA: a length, then that many bytes
            pos += 2 + int.from_bytes(data[10:12], "little")
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                pos = data.index(b"\0", pos) + 1
    except ValueError:
        return data
    return data[pos + 2 if flags & 2 else pos:]  # FHCRC: the header's own CRC-16


def _report_input(f: Path) -> bytes:
    """A file's content as the report sees it: gzip without its header (time stamp, temporary name), meta.json
    without the record of reruns that computed nothing (so the report's run log counts the runs that did)."""
    if f.suffix == ".gz":
        return gzip_body(f.read_bytes())
    if f.name == "meta.json":
        try:
            meta = json.loads(f.read_text())
            meta["runs"] = [r for r in meta.get("runs", []) if not isinstance(r, dict) or r.get("cells_computed")]
            return json.dumps(meta, sort_keys=True).encode()
        except (ValueError, AttributeError, TypeError):
            pass  # a damaged meta.json: its bytes, and the report says what is wrong with it
    return f.read_bytes()


def write_report(run_dir) -> None:
    """Render report.pdf with the report command, from the finished run directory alone.

    Skipped when report.pdf exists and the run directory is unchanged since it was rendered (a rerun of
    a finished study: rendering costs far more than the study's resume). The report process ends with the
    study: an exception here (Ctrl-C) kills it, and so does the end of this process, however it ends.
    """
    stamp, pdf = Path(run_dir) / REPORT_FINGERPRINT, Path(run_dir) / "report.pdf"
    fingerprint = run_fingerprint(run_dir)
    if pdf.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
        return
    done = subprocess.run([sys.executable, "-m", "bncompare.reports.report", str(run_dir)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, preexec_fn=ends_with_this_process())
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise BNError(f"the report of {run_dir} failed: {lines[-1].removeprefix('error: ')}")
    stamp.write_text(fingerprint)


def compose(overrides: list[str] | None = None) -> dict:
    """The resolved study config for ``overrides`` (e.g. ``["study=smoke"]``), without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)


def one_line(error: BaseException, run_dir=None) -> str:
    """A single line for a user error, from BNError, Hydra and OmegaConf exceptions alike.

    An OSError names its file, or else the run directory being written (``run_dir``, when known)."""
    from bncompare.studies.guard import missing_choice

    if missing_choice(error):
        return missing_choice(error)
    if isinstance(error, OSError) and error.filename:
        return f"cannot write {error.filename}: {error.strerror or error}"
    if isinstance(error, OSError) and run_dir is not None:  # e.g. a full disk under Hydra's own record of the run
        return f"cannot write the run's files in {run_dir}: {error.strerror or error}"
    text = " ".join(str(error).split())
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in str(error):
        text += " (" + " ".join(str(cause).split()) + ")"
    return text or type(error).__name__


def parse_command_line(argv: list[str]):
    """Hydra's own parser and its check that one command is given, each error as one line (argparse would
    print its usage block, Hydra a traceback)."""
    from hydra._internal.utils import get_args_parser

    def refuse(message):
        raise BNError(f"{message} (see --help)")

    parser = get_args_parser()
    parser.error = refuse
    args = parser.parse_args(argv)  # as Hydra parses: an option it does not know is an error there too
    commands = args.run + (args.cfg is not None) + args.multirun + args.shell_completion + (args.info is not None)
    if commands > 1:
        refuse("only one of --run, --multirun, --cfg, --info and --shell-completion can be given")
    return args


def preflight(argv: list[str]):
    """Check what the command line would run before Hydra touches anything (see the module docstring).

    A single run's out_dir is locked here and stays locked until this process ends. Returns
    (job, run_dir): the composed config when nothing runs (--help, --cfg...), else None; and the locked
    run directory (None for a sweep, or when nothing runs)."""
    from omegaconf import OmegaConf

    from bncompare.studies.guard import check_config, job_configs, run_directory

    args = parse_command_line(argv)
    if args.experimental_rerun is not None:
        raise BNError("--experimental-rerun is not supported: it unpickles a file")
    if args.config_path is not None:
        raise BNError("--config-path is not supported: add your presets with --config-dir")
    overrides = list(args.overrides)
    jobs = job_configs(overrides, args.config_dir, bool(args.multirun), args.config_name or "config")
    for job in jobs:
        check_config(OmegaConf.to_container(job, resolve=False))
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return jobs[0], None  # nothing runs
    from bncompare.files import lock_dir
    from bncompare.studies.runner import check_out_dir  # the study's modules (torch...): only when one runs
    from bncompare.studies.spec import check_variables_first, study_spec

    if args.multirun and any(o.lstrip("+~").split("=")[0] == "out_dir" for o in overrides):
        raise BNError("out_dir applies to a single run; under -m every job writes below hydra.sweep.dir "
                      "(e.g. hydra.sweep.dir=reports/my-sweep)")
    for job in jobs:
        app = OmegaConf.masked_copy(job, [k for k in job if k != "hydra"])
        check_variables_first(OmegaConf.to_container(app, resolve=False))  # before the estimators read the prior
        try:
            study_spec(OmegaConf.to_container(app, resolve=True))
        except BNError:
            raise
        except Exception as e:  # noqa: BLE001  an interpolation that cannot resolve is bad input too
            raise BNError(one_line(e)) from None
    if not args.multirun:
        return None, lock_dir(check_out_dir(run_directory(jobs[0])), " ".join(["bncompare.studies.run", *argv]))
    return None, None


def config_groups(config_dir: str | None) -> str:
    """The app's config groups and their options, as Hydra's ``--help`` lists them (``group: a, b``), read
    from the config folders themselves (Hydra builds a fresh repository per group for it: seconds)."""
    from importlib import resources

    options: dict[str, set[str]] = {}

    def walk(folder, group=""):
        for entry in folder.iterdir():
            if entry.is_dir() and entry.name != "__pycache__":
                walk(entry, f"{group}{entry.name}/")
            elif entry.name.endswith(".yaml") and group:
                options.setdefault(group.rstrip("/"), set()).add(entry.name[: -len(".yaml")])

    roots = [resources.files(CONFIG_MODULE)]
    if config_dir is not None:
        from pathlib import Path

        roots.append(Path(config_dir))
    for root in roots:
        walk(root)
    return "".join(f"{g}: {', '.join(sorted(o))}\n" for g, o in sorted(options.items())
                   if g != "hydra" and not g.startswith("hydra/"))


def print_help(job, argv: list[str]) -> bool:
    """``--help`` printed from the config the preflight composed, as Hydra prints it from its template;
    False (Hydra prints it) for the forms this does not cover (--resolve, a template with Hydra's groups)."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    template = str(OmegaConf.select(job, "hydra.help.template") or "")
    if not args.help or args.resolve or any(k in template for k in ("$FLAGS_HELP", "$HYDRA_CONFIG_GROUPS")):
        return False
    app = OmegaConf.masked_copy(job, [k for k in job if k != "hydra"])
    import string

    print(string.Template(template).safe_substitute(APP_CONFIG_GROUPS=config_groups(args.config_dir),
                                                    CONFIG=OmegaConf.to_yaml(app)))
    return True


def main() -> None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ[_USER_TRACEBACK] = "1" if user_wants_traceback else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    run_dir = None
    try:
        composed, run_dir = preflight(sys.argv[1:])
        if composed is not None and print_help(composed, sys.argv[1:]):
            return
        _app()
    except (BNError, HydraException, OmegaConfBaseException, OSError) as e:
        if user_wants_traceback:
            raise
        exit_with(one_line(e, run_dir))
    except KeyboardInterrupt:
        if user_wants_traceback:
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting adds no traceback
        # the out_dir lock is an flock: the kernel drops it as this process exits
        exit_with("interrupted; the finished cells are kept: rerun the same command to resume", INTERRUPTED)


if __name__ == "__main__":
    main()
