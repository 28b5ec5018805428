"""Tidy frames of a cell: columns episode, node, metric, value (one row per measured number)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bncompare.networks.graph import OVERALL

COLUMNS = ["episode", "node", "metric", "value"]


def per_node(names, metric: str, episodes: np.ndarray, values: torch.Tensor, overall: torch.Tensor) -> pd.DataFrame:
    """Rows of ``values`` (B, M) per node and ``overall`` (B,) as node OVERALL ('all', a reserved node name)."""
    v = torch.cat([values, overall[:, None]], 1).cpu().numpy()
    B, K = v.shape
    return pd.DataFrame({"episode": np.repeat(episodes, K), "node": np.tile(list(names) + [OVERALL], B),
                         "metric": metric, "value": v.reshape(-1)})


def scalar(metric: str, episodes: np.ndarray, values, node: str = OVERALL) -> pd.DataFrame:
    v = np.asarray(values.cpu() if torch.is_tensor(values) else values, dtype=np.float64).reshape(-1)
    return pd.DataFrame({"episode": episodes, "node": node, "metric": metric, "value": v})
