"""Sphinx configuration of the bncompare documentation (build: sphinx-build -W -b html docs docs/_build/html)."""
import importlib
import pkgutil
from importlib.metadata import version as _version
from pathlib import Path

project = "bncompare"
author = "bncompare contributors"
release = _version("bncompare")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# The API reference: one page per module, documented from its docstrings. A package's __init__ re-exports its
# submodules' names (and ``train``, ``discretize`` are both a module and a function), so each object is
# documented once, in the module that defines it.
autodoc_default_options = {"members": True, "undoc-members": True, "ignore-module-all": True,
                           "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

myst_heading_anchors = 3

html_theme = "furo"
html_title = "bncompare"

GENERATED = Path(__file__).parent / "generated"
# bundled data and the packaged study configs hold no API
SKIP = ("bncompare.data", "bncompare.studies.conf")


def public_modules() -> list[str]:
    """Every module of the package, found by walking it, so a new module is documented without editing this file."""
    import bncompare

    names = ["bncompare"] + [m.name for m in pkgutil.walk_packages(bncompare.__path__, "bncompare.")]
    return sorted(n for n in names if not n.startswith(SKIP) and not n.rsplit(".", 1)[-1].startswith("_"))


def write_module_pages(app) -> None:
    """One page per module (an automodule directive with all its members); stale pages are removed."""
    GENERATED.mkdir(exist_ok=True)
    wanted = {}
    for name in public_modules():
        importlib.import_module(name)  # a module that does not import fails the build here, by name
        wanted[f"{name}.rst"] = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n"
    for old in GENERATED.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for file, text in wanted.items():
        path = GENERATED / file
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def setup(app):
    app.connect("builder-inited", write_module_pages)
