"""The gate before a study command runs: compose every job's config as Hydra will, refuse what is unsafe or invalid.

Hydra instantiates ``hydra.callbacks``, the launcher and sweeper, and hands the
logging configs to ``logging.config.dictConfig`` (which imports any ``class`` and
calls any ``()`` factory), all before the task function starts. So the command
line composes the full config itself first (same search path, same overrides,
``--config-dir`` included, every job of a ``-m`` sweep) and refuses:

- any ``_target_`` but the launcher's and the sweeper's, which must name one of the plugin classes
  bncompare runs with (:data:`PLUGIN_CLASSES`), exactly;
- ``hydra.mode`` and ``hydra.sweeper.params``: with them a config makes a command sweep without ``-m``
  or adds per-job overrides the command line never showed (a sweep is given with ``-m`` instead, so the
  jobs checked here are exactly the jobs the sweeper builds);
- any ``()`` factory, anywhere;
- any ``hydra.callbacks`` entry and any ``hydra.job.env_set`` variable (PYTHONPATH,
  LD_PRELOAD... would reach the report subprocess);
- ``hydra.launcher.setup`` (the submitit launcher runs those lines in a shell on the node);
- logging configs other than the ones Hydra ships (``hydra/job_logging=default|stdout|...``);
- ``--experimental-rerun`` (it unpickles a file).

bncompare puts none of these in its own configs (estimator kinds go through
:mod:`bncompare.studies.registry` instead), so nothing legitimate is lost.
"""
from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from bncompare.errors import BNError

# the launchers and the sweeper a study may name, by exact class (a prefix would let a module's imports through)
PLUGIN_CLASSES = {
    ("hydra", "launcher"): ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",
                            "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
                            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ("hydra", "sweeper"): ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",),
}


@cache
def shipped_logging(group: str) -> tuple:
    """The logging configs Hydra ships for ``group`` (job_logging / hydra_logging), as plain data."""
    folder = resources.files("hydra") / "conf" / "hydra" / group
    return tuple(yaml.safe_load(f.read_text()) for f in folder.iterdir() if f.name.endswith(".yaml"))


def _walk(node, path=()):
    """(path, key, value) for every entry of nested dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from _walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (i,))


def _name(path, key) -> str:
    return ".".join(str(p) for p in (*path, key))


def check_config(cfg: dict) -> None:
    """Refuse anything in a composed config (hydra node included, unresolved) that would make Hydra call code."""
    for path, key, value in _walk(cfg):
        if key == "()":
            raise BNError(f"{_name(path, key)}: factories ('()') are not allowed in a bncompare config")
        if key == "_target_" and value not in PLUGIN_CLASSES.get(path, ()):
            raise BNError(f"{_name(path, key)}={value!r}: bncompare configs may not name code to call "
                          "('_target_' is only allowed for the Hydra launcher/sweeper plugins, by exact class)")
    hydra = cfg.get("hydra") or {}
    if hydra.get("mode") is not None:
        raise BNError(f"hydra.mode={hydra['mode']!r}: a config may not choose the run mode; "
                      "sweep with -m on the command line instead")
    if isinstance(hydra.get("sweeper"), dict) and hydra["sweeper"].get("params"):
        raise BNError(f"hydra.sweeper.params {sorted(hydra['sweeper']['params'])}: per-job overrides from a config "
                      "are not allowed; give the sweep on the command line with -m (e.g. -m seed=0,1)")
    if hydra.get("callbacks"):
        raise BNError(f"hydra.callbacks {sorted(hydra['callbacks'])}: callbacks are not allowed in a bncompare config")
    if (hydra.get("job") or {}).get("env_set"):
        raise BNError(f"hydra.job.env_set {sorted(hydra['job']['env_set'])}: setting environment variables "
                      "from a config is not allowed")
    if isinstance(hydra.get("launcher"), dict) and hydra["launcher"].get("setup"):
        raise BNError("hydra.launcher.setup: shell commands from a config are not allowed "
                      "(prepare the node's environment in your job script instead)")
    for group in ("job_logging", "hydra_logging"):
        if group in hydra and hydra[group] not in shipped_logging(group):
            raise BNError(f"hydra.{group} is not one of Hydra's own logging configs "
                          f"(choose one with hydra/{group}=<name>; custom handlers are not allowed)")


# ----- the one folder of a single run -----------------------------------------------------------

RUN_DIR = "${out_dir}"  # conf/config.yaml: Hydra's run directory is out_dir


def run_directory(job) -> str:
    """The folder a single run locks, writes and records: its out_dir, resolved here once.

    The command line locks it before Hydra starts and Hydra resolves ``hydra.run.dir`` again later, so
    that must stay ``${out_dir}`` (else Hydra writes one folder and the run records another), and out_dir
    may not read the clock (``${now:...}`` gives another folder at each resolution)."""
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(job.hydra.run, resolve=False).get("dir")
    if raw != RUN_DIR:
        raise BNError(f"hydra.run.dir={raw!r}: a single run writes to its out_dir; set out_dir=<folder> instead")
    clock = []
    OmegaConf.register_new_resolver("now", lambda pattern: clock.append(pattern) or str(pattern), replace=True)
    try:
        out_dir = OmegaConf.select(job, "out_dir")
    except Exception as e:  # noqa: BLE001  an interpolation that cannot resolve here is bad input
        raise BNError(f"out_dir: {' '.join(str(e).split())}") from None
    finally:
        setup_globals()  # Hydra's own ${now:...} back
    if clock:
        raise BNError(f"out_dir uses ${{now:{clock[0]}}}: a single run's folder (locked first, resumed by a rerun) "
                      "must not depend on the time; give a fixed out_dir (time stamps suit hydra.sweep.dir under -m)")
    return str(out_dir or "")


# ----- composing what Hydra will run ------------------------------------------------------------

def _hydra(config_dir: str | None, app_module: str):
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    # the same search path as @hydra.main(config_path="conf") in bncompare/studies/run.py
    search_path = create_automatic_config_search_path(None, app_module, "conf")
    if config_dir is not None:
        import os

        path = os.path.abspath(config_dir)
        if not os.path.isdir(path):
            raise BNError(f"--config-dir {config_dir!r} is not a folder")
        search_path.prepend(provider="command-line", path=f"file://{path}", anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name="run", config_search_path=search_path)


def job_configs(overrides: list[str], config_dir: str | None, multirun: bool, config_name: str = "config",
                app_module: str = "bncompare.studies.run"):
    """The composed config (a DictConfig with its hydra node) of every job the command would run."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    try:
        hydra = _hydra(config_dir, app_module)
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        if hydra.get_mode(config_name=config_name, overrides=list(overrides)) is not None:
            # how Hydra decides the mode (before it composes the run): refused, and before a composition
            # error about a sweep override could hide that this is the reason
            raise BNError("hydra.mode: a config may not choose the run mode; sweep with -m on the command line instead")
        master = hydra.compose_config(config_name, list(overrides), run_mode=mode)
        check_config(_plain(master))  # the launcher and the sweeper are built from the master config
        if not multirun:
            return [master]
        # the sweeper's jobs, built as BasicSweeper.sweep builds them: from the task overrides of the master
        # config (its params are refused above, so the command line's sweep is the whole sweep)
        task = OmegaConf.to_container(master.hydra.overrides.task, resolve=False)
        parsed = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(task)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        return [hydra.config_loader.load_sweep_config(master, job) for job in jobs]
    except BNError:
        raise
    except Exception as e:  # noqa: BLE001  composition errors are all bad input (broken YAML, bad override...)
        if missing_choice(e):
            raise BNError(missing_choice(e)) from None
        raise BNError(f"bad config or override: {' '.join(str(e).split()) or type(e).__name__}") from None
    finally:
        GlobalHydra.instance().clear()


def missing_choice(error: BaseException) -> str | None:
    """"unknown graph 'x'; valid choices: ..." for Hydra's error about an unknown config group option."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        if group:
            return f"unknown {group} {option!r}; valid choices: {', '.join(sorted(error.options))}"
    return None


def _plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)
