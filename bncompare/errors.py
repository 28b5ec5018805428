"""One exception type for bad input, so the CLI can print it as one line."""


class BNError(ValueError):
    """Bad input: a cyclic graph, an unknown network, a malformed CPT, bad data...

    The message is a single line that names the problem.
    """
