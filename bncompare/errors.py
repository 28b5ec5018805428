"""One exception type for bad input, so the CLI can print it as one line."""


class BNError(ValueError):
    """Bad input: a cyclic graph, an unknown network, a malformed CPT, bad data...

    The message is a single line that names the problem.
    """


def exit_with(message: str, code: int = 2):
    """What every command does with a user error: one line on stderr, no traceback, exit code 2."""
    import sys

    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)
