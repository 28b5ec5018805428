"""Command line of a study (a Hydra 1.3 app).

    python -m bncompare.studies.run graph=tree
    python -m bncompare.studies.run study=smoke out_dir=/tmp/smoke
    python -m bncompare.studies.run -m graph=tree,chain,general seed=0,1,2 hydra/launcher=joblib
    python -m bncompare.studies.run --help

Bad input (an unknown graph, an invalid value, a negative context length, an
unwritable out_dir...) prints ONE line to stderr and exits with code 2. Set
HYDRA_FULL_ERROR=1 to get the full traceback instead.

The study writes a run directory; the report is a separate step that reads only
that directory (``python -m bncompare.reports.report <dir>``), run here as its
own process when ``report=true``.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from bncompare.errors import BNError

CONFIG_MODULE = "bncompare.studies.conf"
_USER_TRACEBACK = "BNCOMPARE_USER_HYDRA_FULL_ERROR"
# TrainConfig fields a study sets itself rather than from the config: the seed is the study's.
STUDY_OWNED_TRAIN_FIELDS = ("seed",)


def _max(values):
    if isinstance(values, (int, float)):
        return values
    return max(values)


def train_defaults() -> dict:
    """Every TrainConfig default, read from the dataclass: a default lives in one place."""
    from bncompare.transformer.train import TrainConfig

    defaults = dataclasses.asdict(TrainConfig())
    for name in STUDY_OWNED_TRAIN_FIELDS:
        defaults.pop(name, None)
    return {"train": {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}}


def register_configs() -> None:
    """The ``max`` resolver and ``transformer_defaults`` (conf/transformer/*.yaml start from it)."""
    OmegaConf.register_new_resolver("max", _max, replace=True)
    ConfigStore.instance().store(name="transformer_defaults", node=train_defaults())


register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from bncompare.studies.runner import run_study

    hc = HydraConfig.get()
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        path = run_study(config, hc.runtime.output_dir)
        if config.get("report", True):
            write_report(path)
    except BNError as e:
        if hc.mode == RunMode.MULTIRUN or os.environ.get(_USER_TRACEBACK) == "1":
            raise  # the launcher reports it (one line again, from main)
        # Exit here: an exception would make Hydra print its own job-failure preamble first.
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    print(f"results: {path / 'results.csv'}")
    if config.get("report", True):
        print(f"report:  {path / 'report.pdf'}")


def write_report(run_dir) -> None:
    """Render report.pdf with the report command, from the finished run directory alone."""
    done = subprocess.run([sys.executable, "-m", "bncompare.reports.report", str(run_dir)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise BNError(f"the report of {run_dir} failed: {lines[-1].removeprefix('error: ')}")


def compose(overrides: list[str] | None = None) -> dict:
    """The resolved study config for ``overrides`` (e.g. ``["study=smoke"]``), without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)


def one_line(error: BaseException) -> str:
    """A single line for a user error, from BNError, Hydra and OmegaConf exceptions alike."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        if group:
            return f"unknown {group} {option!r}; valid choices: {', '.join(sorted(error.options))}"
    if isinstance(error, OSError) and not isinstance(error, BNError) and error.filename:
        return f"cannot write {error.filename}: {error.strerror or error}"
    text = " ".join(str(error).split())
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in str(error):
        text += " (" + " ".join(str(cause).split()) + ")"
    return text or type(error).__name__


def main() -> None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ[_USER_TRACEBACK] = "1" if user_wants_traceback else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    try:
        _app()
    except (BNError, HydraException, OmegaConfBaseException, OSError) as e:
        if user_wants_traceback:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
