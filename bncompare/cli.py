"""The ``bncompare`` console script: one door to every command, each also kept as ``python -m <module>``.

    bncompare run graph=tree study=smoke          # = python -m bncompare.studies.run ...
    bncompare report reports/tree/smoke-seed0     # = python -m bncompare.reports.report ...
    bncompare run --help

Each command is its module run exactly as ``python -m`` runs it (same argv, same exit codes), so this file
imports none of them: ``bncompare --help`` answers without loading torch, Pyro or pgmpy.
"""
from __future__ import annotations

import sys

# command -> (the module that is the command, what it does)
COMMANDS = {
    "run": ("bncompare.studies.run", "run a study (a Hydra app: graph=..., study=..., -m for sweeps)"),
    "report": ("bncompare.reports.report", "render report.pdf from a finished run directory"),
    "merge": ("bncompare.reports.merge", "merge the run directories of a sweep into one"),
    "compare": ("bncompare.reports.compare", "compare two runs' results"),
    "train": ("bncompare.studies.train", "train (or load) a transformer into the model cache"),
    "networks": ("bncompare.networks.listing", "list the networks a study can name"),
}
CALLED_WITH_ARGV = {"networks"}  # modules whose main(argv) is the command (the others run as __main__)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return ("usage: bncompare <command> [arguments...]\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`bncompare <command> --help` for a command's own options; "
              "`python -m <module>` runs the same command.")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        import bncompare

        print(f"bncompare {bncompare.__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from bncompare.errors import exit_with

        exit_with(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)} (bncompare --help)")
    module = COMMANDS[command][0]
    if command in CALLED_WITH_ARGV:
        import importlib
        import importlib.util

        if importlib.util.find_spec(module) is None:
            from bncompare.errors import exit_with

            exit_with(f"bncompare {command} is not available in this version ({module} is missing)")
        importlib.import_module(module).main(rest)
        return
    import runpy

    sys.argv = [module, *rest]  # runpy puts the module's file first, as python -m does
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
