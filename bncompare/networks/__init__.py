"""Bayesian networks: structure, CPTs, named families, priors, samplers, I/O."""
from bncompare.networks.families import available, get_graph, is_real, load_network, random_dag
from bncompare.networks.gaussian_families import get_gaussian_graph, network_variables  # registers the names
from bncompare.networks.gaussian_io import (
    gaussian_spec_structure,
    load_gaussian_network,
    load_gaussian_spec,
    spec_variables,
    to_gaussian_spec,
)
from bncompare.networks.graph import Graph, check_data
from bncompare.networks.io import from_pgmpy, load_bif, load_spec, to_pgmpy, to_spec
from bncompare.networks.network import BayesNet, CPTBatch, check_cpt_batch, select
from bncompare.networks.priors import DirichletPrior, UniformRangePrior, make_prior
from bncompare.networks.sampling import draw_categorical, sample, sample_with_uniforms

__all__ = [
    "BayesNet", "CPTBatch", "DirichletPrior", "Graph", "UniformRangePrior", "available", "check_cpt_batch",
    "check_data", "draw_categorical", "from_pgmpy", "gaussian_spec_structure", "get_gaussian_graph", "get_graph",
    "is_real", "load_bif", "load_gaussian_network", "load_gaussian_spec", "load_network", "load_spec",
    "make_prior", "network_variables", "random_dag", "sample", "sample_with_uniforms", "select",
    "spec_variables", "to_gaussian_spec", "to_pgmpy", "to_spec",
]
