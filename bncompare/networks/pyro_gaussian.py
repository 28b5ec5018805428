"""The linear-Gaussian network as a Pyro program, with its parameters fixed.

    gaussian_model(graph, params, n=100)      # draws 100 rows
    gaussian_model(graph, params, data=x)     # scores observed rows x (N, M)

Sites: ``x_<node>`` (the same names as the discrete :func:`bncompare.networks.pyro_model.bn_model`),
shape (N,). Nodes are visited in topological order inside ``pyro.plate("rows", N)``; node m is
``Normal(b_m + x_pa . w_m, sigma_m)`` at its parents' values. The version with priors on the
parameters, for a plate of contexts, lives with the Pyro estimators.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from bncompare.errors import BNError
from bncompare.networks.gaussian import GaussianBatch, GaussianNet, check_gaussian_batch, check_real_data, unpack
from bncompare.networks.graph import Graph
from bncompare.networks.pyro_model import value_site


def gaussian_model(graph: Graph, params: GaussianBatch | GaussianNet, data: torch.Tensor | None = None,
                   n: int | None = None) -> torch.Tensor:
    """Pyro model of a linear-Gaussian network with fixed parameters; returns the (N, M) float64 rows.

    ``params``: a parameter batch with one parameter set (G = 1), or a :class:`GaussianNet`.
    ``data``: observed rows (N, M), or None to sample ``n`` rows.
    """
    if isinstance(params, GaussianNet):
        params = params.params()
    check_gaussian_batch(graph, params)
    if params[0].shape[0] != 1:
        raise BNError(f"gaussian_model takes one parameter set (G = 1), got G = {params[0].shape[0]}")
    if data is None and n is None:
        raise BNError("gaussian_model needs observed data or a number of rows n")
    if data is not None:
        data = check_real_data(graph, data)
        if data.dim() != 2:
            raise BNError(f"gaussian_model reads rows (N, M), got shape {tuple(data.shape)}")
    n_rows = data.shape[0] if data is not None else int(n)
    device = data.device if data is not None else params[0].device
    if n_rows == 0:  # pyro.plate cannot have size 0
        return torch.zeros(0, graph.n_nodes, dtype=torch.float64, device=device)
    values: list[torch.Tensor] = []
    with pyro.plate("rows", n_rows):
        for m, name in enumerate(graph.names):
            b, w, sigma = unpack(params[m][0].to(device, torch.float64))
            mean = b.expand(n_rows)
            if graph.parents[m]:
                mean = mean + torch.stack([values[p] for p in graph.parents[m]], -1) @ w
            obs = None if data is None else data[:, m]
            values.append(pyro.sample(value_site(name), dist.Normal(mean, sigma), obs=obs))
    return torch.stack(values, -1)
