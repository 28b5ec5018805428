"""pgmpy's parameter estimators behind the common interface: the slow, trusted reference.

Each context is fitted by its own pgmpy estimator call (a loop over B contexts,
by design: this is what a user of pgmpy would run, and what the fast counting
estimators are checked against).

    PgmpyMLE()                                          # pgmpy DiscreteMLE
    PgmpyBayes("BDeu", equivalent_sample_size=5)        # DiscreteBayesianEstimator
    PgmpyBayes("K2")
    PgmpyBayes("dirichlet", pseudo_counts=0.5)          # same pseudo-count in every cell

Two details of pgmpy matter for an exact comparison:

- without ``state_names`` pgmpy keeps only the states seen in the data, so a
  small context would silently lose states: we always pass all of them;
- a fitted CPD lists its evidence variables sorted by NAME, not in our parent
  order: we permute its axes back into our layout (last parent fastest).
"""
from __future__ import annotations

import contextlib
import logging
import numbers
import warnings

import numpy as np
import torch

from bncompare.errors import BNError
from bncompare.estimators.base import TableEstimator, Tags
from bncompare.networks.graph import Graph


@contextlib.contextmanager
def quiet_pgmpy():
    """Silence pgmpy's FutureWarnings and info logs for the duration of a block only."""
    logger = logging.getLogger("pgmpy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def pgmpy_structure(graph: Graph):
    """The graph as a CPD-less ``DiscreteBayesianNetwork`` (isolated nodes included)."""
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork()
    model.add_nodes_from(graph.names)
    model.add_edges_from(graph.edges)
    return model


def cpd_to_table(graph: Graph, m: int, cpd) -> np.ndarray:
    """A pgmpy ``TabularCPD`` of node ``m`` as our (n_configs, card) table, axes in our parent order."""
    evidence = [str(v) for v in cpd.variables[1:]]
    ours = [graph.names[p] for p in graph.parents[m]]
    if sorted(evidence) != sorted(ours):
        raise BNError(f"pgmpy CPD of {graph.names[m]!r} has evidence {evidence}, expected parents {ours}")
    # values: (card, *evidence cards) -> (*our parent cards, card), C order = last parent fastest
    values = np.asarray(cpd.get_values(), dtype=np.float64)
    values = values.reshape([graph.cards[m]] + [graph.cards[graph.index(v)] for v in evidence])
    values = np.moveaxis(values, 0, -1).transpose([evidence.index(v) for v in ours] + [len(ours)])
    return values.reshape(graph.n_configs[m], graph.cards[m])


class _PgmpyEstimator(TableEstimator):
    tags = Tags(family="library")

    def _make_estimator(self, state_names: dict):
        raise NotImplementedError

    def fit(self, graph, contexts):
        contexts = self._start_fit(graph, contexts)
        with quiet_pgmpy():
            import pandas as pd

            structure = pgmpy_structure(graph)
            # integer states 0..d-1, all of them, in order: fixes the CPD's state axis
            state_names = {n: list(range(d)) for n, d in zip(graph.names, graph.cards)}
            tables = [np.empty((len(contexts), q, d)) for q, d in zip(graph.n_configs, graph.cards)]
            for b, rows in enumerate(contexts.cpu().numpy()):
                df = pd.DataFrame(rows, columns=list(graph.names))
                fitted = self._make_estimator(state_names).fit(structure, df)
                for cpd in fitted.parameters_:
                    m = graph.index(str(cpd.variable))
                    tables[m][b] = cpd_to_table(graph, m, cpd)
        self.cpts_ = [torch.from_numpy(t) for t in tables]
        return self


class PgmpyMLE(_PgmpyEstimator):
    """pgmpy ``DiscreteMLE``; an unseen parent configuration gets pgmpy's uniform row."""

    name = "pgmpy_mle"

    def _make_estimator(self, state_names):
        from pgmpy.parameter_estimator import DiscreteMLE

        return DiscreteMLE(state_names=state_names)


class PgmpyBayes(_PgmpyEstimator):
    """pgmpy ``DiscreteBayesianEstimator`` with a BDeu, K2 or dirichlet prior (posterior mean CPTs).

    ``pseudo_counts`` (dirichlet only) is one number used for every cell;
    pgmpy would also accept per-node arrays, which a symmetric study never needs.
    """

    PRIORS = {"bdeu": "BDeu", "k2": "K2", "dirichlet": "dirichlet"}

    def __init__(self, prior_type: str = "BDeu", equivalent_sample_size: float = 5.0,
                 pseudo_counts: float | None = None):
        key = str(prior_type).lower()
        if key not in self.PRIORS:
            raise BNError(f"unknown pgmpy prior {prior_type!r}; choose one of {sorted(self.PRIORS.values())}")
        if key == "bdeu" and not equivalent_sample_size > 0:
            raise BNError(f"BDeu equivalent_sample_size must be > 0, got {equivalent_sample_size}")
        if key == "dirichlet":
            # pgmpy would treat a missing pseudo-count as zeros, i.e. MLE with 0/0 for unseen rows
            if not isinstance(pseudo_counts, numbers.Real) or not pseudo_counts > 0:
                raise BNError(f"pgmpy dirichlet prior needs a scalar pseudo_counts > 0, got {pseudo_counts!r}")
        self.prior_type = self.PRIORS[key]
        self.equivalent_sample_size = float(equivalent_sample_size)
        self.pseudo_counts = None if pseudo_counts is None else float(pseudo_counts)

    @property
    def name(self) -> str:
        return f"pgmpy_{self.prior_type.lower()}"

    def _make_estimator(self, state_names):
        from pgmpy.parameter_estimator import DiscreteBayesianEstimator

        kw = {"pseudo_counts": self.pseudo_counts} if self.prior_type == "dirichlet" else {}
        return DiscreteBayesianEstimator(
            state_names=state_names,
            prior_type=self.prior_type,
            equivalent_sample_size=self.equivalent_sample_size,
            **kw,
        )
