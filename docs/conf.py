"""Sphinx configuration of the bncompare documentation (build: sphinx-build -W -b html docs docs/_build/html)."""
from importlib.metadata import version as _version

project = "bncompare"
author = "bncompare contributors"
release = _version("bncompare")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# The API reference: one page per module, generated from the docstrings (templates in _templates/autosummary).
autosummary_generate = True
autosummary_ignore_module_all = True  # list every submodule, not only those in __all__
# A package's __all__ re-exports its submodules' names; each object is documented once, in the module
# that defines it.
autodoc_default_options = {"members": True, "undoc-members": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

myst_heading_anchors = 3

html_theme = "furo"
html_title = "bncompare"
