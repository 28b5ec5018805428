"""The version of the code that computes the numbers: part of every cache and cell key.

``code_version(parts)`` is the package version plus a sha256 over the named
source files of the package (folders: every ``.py`` file below them; data
folders: every file). Each Python file is hashed as its syntax tree with
docstrings dropped, so an edited comment, docstring or formatting does not
invalidate results, while any change to what the code does (a default, a
formula) does. A release that changes nothing in those files keeps its keys
only if its version string is the same, so an upgrade always recomputes.
"""
from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

import bncompare

PACKAGE_DIR = Path(bncompare.__file__).resolve().parent

# What a study cell's numbers depend on: every layer below the study runner, and the study's
# own draws and metrics (not the runner's bookkeeping, the command line or the reports).
STUDY_PARTS = ("errors.py", "runtime.py", "networks", "estimators", "metrics", "transformer", "realdata", "data",
               "studies/protocol.py", "studies/truth.py", "studies/evaluate.py", "studies/registry.py")
# What a trained model depends on.
TRAIN_PARTS = ("errors.py", "runtime.py", "networks", "estimators/counting.py", "metrics/conditional.py",
               "transformer/train.py", "transformer/model.py", "transformer/encoding.py")


def _normalized(path: Path) -> bytes:
    """A Python file's syntax tree without docstrings (comments and layout are not in it); other files as bytes."""
    raw = path.read_bytes()
    if path.suffix != ".py":
        return raw
    try:
        tree = ast.parse(raw)
    except SyntaxError:
        return raw
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


# Below the parts, yet no input of the numbers: the shipped reference tables are a study's OUTPUT (rewriting
# one must not change the code version it records, nor every cell key).
NOT_SOURCE = ("data/reference",)


def source_files(parts, root: Path | None = None) -> list[Path]:
    root = Path(root or PACKAGE_DIR)
    files = []
    for part in parts:
        p = root / part
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                      and (f.suffix == ".py" or part == "data")
                      and not any(f.relative_to(root).as_posix().startswith(x + "/") for x in NOT_SOURCE)]
        elif p.is_file():
            files.append(p)
    return sorted(set(files))


@cache
def _source_hash(parts: tuple[str, ...], root: str) -> str:
    h = hashlib.sha256()
    for f in source_files(parts, Path(root)):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(_normalized(f)).digest())
    return h.hexdigest()[:16]


def code_version(parts=STUDY_PARTS) -> dict:
    """``{"package": version, "source": sha256 of the parts' code}``: changes when the code that computes changes."""
    return {"package": bncompare.__version__, "source": _source_hash(tuple(parts), str(PACKAGE_DIR))}


def object_source(module: str) -> str:
    """A sha256 over the code of the package that holds ``module`` (every ``.py`` file below its top-level
    package's folder, normalized as above), or of the module's own file when it is no package's: what keys
    the cells of an estimator that is not bncompare's. Found without running the module where it can be."""
    import importlib.util
    import sys

    top = module.partition(".")[0]
    loaded = sys.modules.get(module)
    if module == "__main__" or (loaded is not None and getattr(loaded, "__spec__", None) is None):
        files = [Path(loaded.__file__)] if getattr(loaded, "__file__", None) else []
        root = files[0].parent if files else Path(".")
    else:
        spec = importlib.util.find_spec(top)
        if spec is None:
            files, root = [], Path(".")
        elif spec.submodule_search_locations:  # a package: all of it (helpers in other modules count)
            root = Path(next(iter(spec.submodule_search_locations)))
            files = [f for f in root.rglob("*.py") if "__pycache__" not in f.parts]
        else:
            files = [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []
            root = files[0].parent if files else Path(".")
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(_normalized(f)).digest())
    return h.hexdigest()[:16] if files else "unknown"
