"""Train a study's transformers ahead of the study: on one process, or data-parallel under ``torchrun``.

    python -m bncompare.studies.train graph=tree study=smoke
    torchrun --standalone --nproc_per_node=2 -m bncompare.studies.train graph=tree study=smoke
    python -m bncompare.studies.run graph=tree study=smoke      # loads that model: no training

The command takes the study command's config groups, overrides and ``--config-dir``,
builds the same graph, prior and estimators, and trains each trained-transformer
estimator of the study (``--only NAME`` picks some) into the model cache the study
reads. The cache key is the training config, not the process count: ``batch_size``
is the global batch, split over the processes. Rank 0 writes the model; a model
already cached is not trained again. While training, the cache entry's folder
holds ``train_log.csv`` and resumable snapshots: run the same command again after
a kill and it continues from the last snapshot.

It lives in ``bncompare.studies`` because it reads study configs, and the
transformer layer never imports the studies layer (``tests/test_layout.py``).
Bad input prints one line and exits with code 2, on every rank.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys

from bncompare.errors import ArgumentParser, BNError, exit_with, on_ctrl_c

log = logging.getLogger("bncompare.studies.train")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = ArgumentParser(
        prog="python -m bncompare.studies.train",
        description="Train a study's transformers into the model cache (one process, or many under torchrun). "
                    "Give the study's own overrides, e.g. graph=tree study=smoke transformer=gpu.",
        epilog="Example: torchrun --standalone --nproc_per_node=2 -m bncompare.studies.train graph=tree study=smoke")
    parser.add_argument("overrides", nargs="*", help="study config overrides (key=value, group=option)")
    parser.add_argument("--config-dir", help="a folder of your own presets, as for the study command")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="train only this estimator of the study (repeatable; default: every trained one)")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                        help="a resumable snapshot every K steps (default: by time only)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, metavar="M",
                        help="a resumable snapshot at least every M minutes (default 5; 0: by steps only)")
    parser.add_argument("--log-every", type=int, default=100, metavar="K",
                        help="a log line every K steps when no terminal is attached (default 100)")
    args, unknown = parser.parse_known_intermixed_args(argv)  # options may come between the overrides
    if unknown:
        raise BNError(f"unknown option {unknown[0]!r} (study settings are key=value overrides; see --help)")
    if not math.isfinite(args.checkpoint_minutes) or args.checkpoint_minutes < 0:  # nan passes every comparison
        raise BNError(f"--checkpoint-minutes must be a finite number >= 0 (0: by steps only), "
                      f"got {args.checkpoint_minutes}")
    if args.checkpoint_every < 0 or args.log_every < 1:
        raise BNError(f"--checkpoint-every must be >= 0 and --log-every >= 1, got {args.checkpoint_every} "
                      f"and {args.log_every}")
    return args, list(args.overrides)


def study_config(overrides: list[str], config_dir: str | None) -> dict:
    """The resolved study config for these overrides, checked like the study command's (nothing may name code)."""
    from omegaconf import OmegaConf

    from bncompare.studies import run  # noqa: F401  registers the configs the study composes from
    from bncompare.studies.guard import check_config, job_configs

    (job,) = job_configs(overrides, config_dir, multirun=False)
    check_config(OmegaConf.to_container(job, resolve=False))
    app = OmegaConf.masked_copy(job, [k for k in job if k != "hydra"])
    try:
        return OmegaConf.to_container(app, resolve=True)
    except Exception as e:  # noqa: BLE001  an interpolation that cannot resolve is bad input
        raise BNError(run.one_line(e)) from None


def trainable(config: dict, only: list[str]):
    """(spec, graph, prior, [(name, estimator)]) for the study's trained transformers (``only``: these)."""
    from bncompare.studies import registry
    from bncompare.studies.spec import study_spec
    from bncompare.studies.truth import build_problem
    from bncompare.transformer.trained import TrainedTransformer

    spec = study_spec(config)
    names = [e.name for e in spec.estimators]
    for name in only:
        if name not in names:
            raise BNError(f"--only {name}: the study has no estimator {name!r}; its estimators are {names}")
    chosen = [(e.name, registry.build(e.kind, e.params)) for e in spec.estimators if not only or e.name in only]
    chosen = [(name, est) for name, est in chosen if isinstance(est, TrainedTransformer)]
    if not chosen:
        raise BNError(f"nothing to train: none of the estimators {only or names} is a trained transformer")
    graph, _, prior = build_problem(spec)
    return spec, graph, prior, chosen


@on_ctrl_c("interrupted; rerun the same command to resume from the last snapshot")
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[%(asctime)s][rank {rank}] %(message)s")
    from bncompare.transformer import distributed

    try:
        args, overrides = parse(argv)
        config = study_config(overrides, args.config_dir)
        spec, graph, prior, chosen = trainable(config, args.only)
        world = distributed.init_from_env(chosen[0][1].config(spec.seed).device)
        try:
            for name, est in chosen:
                train_one(name, est, graph, prior, spec, args, world)
            distributed.barrier(world)  # every rank is done before any leaves
        finally:
            distributed.shutdown()
        if world.distributed:
            # Everything is written (atomically) and flushed: skip the interpreter's teardown, where torch's
            # communication threads could still abort a finished worker (SIGABRT, about 1 run in 15 under load).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    except BNError as e:
        from bncompare.studies.run import one_line

        exit_with(one_line(e))


def train_one(name: str, est, graph, prior, spec, args, world) -> None:
    """Train (or find cached) the model ``est`` prepares in the study: the same task, config and cache."""
    import time

    from bncompare.transformer.checkpoint import CONFIG, cache_entry, trained_model
    from bncompare.transformer.train import TrainRun

    train_graph, train_prior = est.training_task(graph, prior)
    cfg = est.config(spec.seed)
    entry = cache_entry(train_graph, train_prior, cfg, est.cache_dir)
    stamp = lambda: (entry / CONFIG).stat().st_mtime_ns if (entry / CONFIG).is_file() else None  # noqa: E731
    before = stamp()
    run = TrainRun(checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
                   log_every=args.log_every)
    t0 = time.perf_counter()
    trained_model(train_graph, train_prior, cfg, est.cache_dir, progress=spec.progress, run=run)
    if world.is_main:
        seconds, plural = time.perf_counter() - t0, "es" if world.size > 1 else ""
        what = ("cached already" if before is not None and stamp() == before
                else f"trained in {seconds:.1f} s on {world.size} process{plural}")
        print(f"{name}: {entry} ({what})", flush=True)


if __name__ == "__main__":
    main()
