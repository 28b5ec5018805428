"""The Bayesian network as a Pyro program: the ground-truth generative model.

    bn_model(graph, cpts=tables)             # CPTs fixed to given values
    bn_model(graph, alpha=1.0)               # every CPT row ~ Dirichlet(alpha)
    bn_model(graph, alpha=1.0, data=x)       # ... conditioned on observed rows x (N, M)

Sites: ``cpt_<node>`` (only with the Dirichlet prior), shape (n_configs, card),
and ``x_<node>``, shape (N,). Nodes are visited in topological order inside
``pyro.plate("data", N)``; a node's distribution is its CPT looked up at its
parents' values with ``Vindex``, which stays correct when extra batch
dimensions appear on the left (vectorized prediction, enumeration), unlike
chained indexing ``table[a][b]``.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.ops.indexing import Vindex

from bncompare.errors import BNError
from bncompare.networks.graph import Graph, check_data
from bncompare.networks.network import CPTBatch, check_cpt_batch
from bncompare.runtime import seeded, single_thread


def cpt_site(name: str) -> str:
    return f"cpt_{name}"


def value_site(name: str) -> str:
    return f"x_{name}"


def bn_model(graph: Graph, cpts=None, alpha: float = 1.0, data: torch.Tensor | None = None, n: int | None = None):
    """Pyro model of ``graph``; returns the (N, M) long tensor of node values.

    ``cpts``: one (n_configs, card) table per node (fixed CPTs), or None for
    Dirichlet(alpha) priors on the rows. ``data``: observed rows (N, M), or None
    to sample ``n`` rows.
    """
    if data is None and n is None:
        raise BNError("bn_model needs observed data or a number of rows n")
    given = cpts[0].device if cpts is not None and torch.is_tensor(cpts[0]) else None
    device = data.device if data is not None else given
    n_rows = data.shape[0] if data is not None else int(n)
    tables = []
    for m, name in enumerate(graph.names):
        q, d = graph.n_configs[m], graph.cards[m]
        if cpts is None:
            conc = torch.full((q, d), float(alpha), dtype=torch.float64, device=device)
            table = pyro.sample(cpt_site(name), dist.Dirichlet(conc).to_event(1))  # all rows of a node at once
        else:
            table = torch.as_tensor(cpts[m], dtype=torch.float64, device=device)
        # (..., n_configs, d) -> (..., card_p1, ..., card_pk, d): C order keeps the last parent fastest
        parent_cards = tuple(graph.cards[p] for p in graph.parents[m])
        tables.append(table.reshape(table.shape[:-2] + parent_cards + (d,)))

    if n_rows == 0:  # pyro.plate cannot have size 0; with no rows the model is the prior alone
        return torch.zeros(0, graph.n_nodes, dtype=torch.long, device=device)
    values = []
    with pyro.plate("data", n_rows):
        for m, name in enumerate(graph.names):
            index = tuple(values[p] for p in graph.parents[m])
            probs = Vindex(tables[m])[(Ellipsis, *index, slice(None))]
            obs = None if data is None else data[..., m]
            values.append(pyro.sample(value_site(name), dist.Categorical(probs=probs), obs=obs))
    return torch.stack(torch.broadcast_tensors(*values), -1)


def sample_pyro(
    graph: Graph, n: int, cpts: CPTBatch | None = None, n_sets: int = 1, alpha: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, CPTBatch]:
    """Draw data by running :func:`bn_model` (slow reference; use ``networks.sample`` for speed).

    With ``cpts`` (a CPT batch of G sets), one data set of ``n`` rows per set.
    Without, ``n_sets`` CPT sets are drawn from the Dirichlet(alpha) prior, then
    ``n`` rows from each. Returns (x of shape (G, n, M), the CPT batch used).
    """
    if cpts is not None:
        check_cpt_batch(graph, cpts)
        n_sets = cpts[0].shape[0]
    xs, tables = [], [[] for _ in graph.names]
    with seeded(seed), single_thread():
        for g in range(n_sets):
            given = None if cpts is None else [c[g] for c in cpts]
            trace = poutine.trace(bn_model).get_trace(graph, cpts=given, alpha=alpha, n=n)
            xs.append(trace.nodes["_RETURN"]["value"])
            for m, name in enumerate(graph.names):
                tables[m].append(given[m] if given is not None else trace.nodes[cpt_site(name)]["value"])
    return torch.stack(xs), [torch.stack(t).to(torch.float64) for t in tables]


def log_likelihood(graph: Graph, cpts, data: torch.Tensor) -> torch.Tensor:
    """log p(data | cpts) summed over rows, computed by Pyro's trace (a check on the model)."""
    data = check_data(graph, data, "data")
    trace = poutine.trace(bn_model).get_trace(graph, cpts=cpts, data=data)
    return trace.log_prob_sum()
