"""Bayesian networks: structure, CPTs, named families, priors, samplers, I/O.

The names below load on first use (PEP 562), so that a light submodule (``bncompare.networks.bundled``,
read by ``--help``) does not import torch through this package."""
from importlib import import_module

_HOMES = {
    "families": ("available", "get_graph", "is_real", "load_network", "random_dag"),
    "gaussian_families": ("get_gaussian_graph", "network_variables"),  # importing it registers the names
    "gaussian_io": ("gaussian_spec_structure", "load_gaussian_network", "load_gaussian_spec", "spec_variables",
                    "to_gaussian_spec"),
    "graph": ("Graph", "check_data"),
    "io": ("from_pgmpy", "load_bif", "load_spec", "to_pgmpy", "to_spec"),
    "network": ("BayesNet", "CPTBatch", "check_cpt_batch", "select"),
    "priors": ("DirichletPrior", "UniformRangePrior", "make_prior"),
    "sampling": ("draw_categorical", "sample", "sample_with_uniforms"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)


def __getattr__(name: str):
    for module, names in _HOMES.items():
        if name in names:
            import_module("bncompare.networks.gaussian_families")  # every family name registered before use
            return getattr(import_module(f"bncompare.networks.{module}"), name)
    raise AttributeError(f"module 'bncompare.networks' has no attribute {name!r}")


def __dir__():
    return __all__
