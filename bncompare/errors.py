"""One exception type for bad input, so the CLI can print it as one line; what every command does with it, with
a bad argument and with Ctrl-C."""
import argparse

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


class BNError(ValueError):
    """Bad input: a cyclic graph, an unknown network, a malformed CPT, bad data...

    The message is a single line that names the problem.
    """


def exit_with(message: str, code: int = 2):
    """What every command does with a user error: one line on stderr, no traceback, exit code 2."""
    import sys

    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (argparse prints the whole usage first), exit code 2."""

    def error(self, message: str):
        exit_with(f"{message} (see {self.prog} --help)")


def on_ctrl_c(what: str = "interrupted"):
    """Decorate a command's ``main``: Ctrl-C prints ``what`` in one line and exits 130, without a traceback."""
    from functools import wraps

    def decorate(main):
        @wraps(main)
        def command(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                import signal

                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting adds no traceback
                exit_with(what, INTERRUPTED)
        return command
    return decorate


def check_setting_types(settings, what: str) -> None:
    """Refuse a field of the dataclass ``settings`` whose value is not of its default's type (one line).

    The defaults declare the types: a whole number where the default is an int, a number where it is a
    float, true/false where it is a bool, text where it is a string. Fields defaulting to None are free."""
    from dataclasses import MISSING, fields
    from numbers import Integral, Real

    kinds = {bool: ((bool,), "true or false"), int: ((Integral,), "a whole number"),
             float: ((Real,), "a number"), str: ((str,), "text")}
    for f in fields(settings):
        if f.default is MISSING or type(f.default) not in kinds:
            continue
        allowed, name = kinds[type(f.default)]
        value = getattr(settings, f.name)
        if not isinstance(value, allowed) or (isinstance(value, bool) and type(f.default) is not bool):
            raise BNError(f"{what}.{f.name} must be {name}, got {value!r}")
