"""The example networks in pgmpy's wheel, found without importing pgmpy (or torch).

pgmpy ships bnlearn's discrete networks as ``pgmpy/utils/example_models/<name>.bif.gz``
(asia ... munin4). Every such file is a real network by name: one list, read from the
installed wheel, so a new pgmpy file is a new name without a config file or a code change.
"""
from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from bncompare.errors import BNError


@cache
def example_models_dir() -> Path | None:
    """pgmpy's example_models folder (pgmpy is located, not imported: that takes seconds)."""
    spec = importlib.util.find_spec("pgmpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "utils" / "example_models"
    return folder if folder.is_dir() else None


@cache
def discrete_names() -> tuple[str, ...]:
    """Every discrete network in pgmpy's wheel, by name, sorted."""
    folder = example_models_dir()
    if folder is None:
        return ()
    return tuple(sorted(p.name.removesuffix(".bif.gz") for p in folder.glob("*.bif.gz")))


def bif_path(name: str) -> Path:
    if name not in discrete_names():
        raise BNError(f"pgmpy's bundled {name}.bif.gz is missing from this install")
    return example_models_dir() / f"{name}.bif.gz"
