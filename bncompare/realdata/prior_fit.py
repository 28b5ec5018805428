"""How far a real network's CPTs sit from the Dirichlet prior a transformer is trained on.

A transformer trained on CPT rows drawn from Dirichlet(alpha) learns that prior;
real networks (Sachs: entries near 1e-5) can look nothing like it. For each
node, :func:`prior_distance` sets a statistic of the real CPT rows next to its
expected value under Dirichlet(alpha) rows of the same size. Prior figures are
exact expectations (closed forms), the limit of averaging over many prior draws:

- ``frac_below`` vs ``prior_frac_below``: share of entries below ``small``; each
  entry of a Dirichlet(alpha) row is Beta(alpha, (d-1) alpha).
- ``entropy`` vs ``prior_entropy``: mean row entropy (nats);
  E[H] = psi(d alpha + 1) - psi(alpha + 1).
- ``logpdf`` vs ``prior_logpdf`` (+- ``prior_logpdf_sd`` for ONE row): mean
  Dirichlet(alpha) log-density of the rows. Note that Dirichlet(1) is flat, so at
  alpha = 1 every row has the same density log((d-1)!) and this pair says
  nothing; the other columns still do. Rows with an exact 0 have no finite
  log-density: they are left out of ``logpdf`` and counted in ``zero_rows``.

:func:`best_alpha` gives the symmetric alpha under which the real rows are most
likely (maximum likelihood over all strictly positive rows): small values mean
sparse, near-deterministic rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import betainc, digamma, gammaln, polygamma, xlogy

from bncompare.errors import BNError
from bncompare.networks.network import BayesNet


def _check(alpha: float) -> float:
    if not alpha > 0:
        raise BNError(f"Dirichlet alpha must be > 0, got {alpha}")
    return float(alpha)


def _log_norm(alpha: float, d: int) -> float:
    return float(gammaln(d * alpha) - d * gammaln(alpha))


def prior_distance(net: BayesNet, alpha: float = 1.0, small: float = 1e-3) -> pd.DataFrame:
    """Per-node statistics of the real CPTs next to their Dirichlet(alpha) expectations; last row ``"all"``."""
    alpha = _check(alpha)
    g = net.graph
    recs = []
    for m, name in enumerate(g.names):
        c, d = net.cpts[m], g.cards[m]
        pos = (c > 0).all(axis=1)
        mean_log = digamma(alpha) - digamma(d * alpha)  # E[log p_i] under the prior
        var_sum_log = d * polygamma(1, alpha) - d * d * polygamma(1, d * alpha)  # Var(sum_i log p_i)
        recs.append(dict(
            node=name, card=d, rows=c.shape[0], entries=c.size,
            min_entry=float(c.min()),
            frac_below=float((c < small).mean()),
            prior_frac_below=float(betainc(alpha, (d - 1) * alpha, small)),
            entropy=float(-xlogy(c, c).sum(axis=1).mean()),
            prior_entropy=float(digamma(d * alpha + 1) - digamma(alpha + 1)),
            logpdf=(float(_log_norm(alpha, d) + (alpha - 1) * np.log(c[pos]).sum(axis=1).mean())
                    if pos.any() else np.nan),
            prior_logpdf=float(_log_norm(alpha, d) + (alpha - 1) * d * mean_log),
            prior_logpdf_sd=float(abs(alpha - 1) * np.sqrt(max(var_sum_log, 0.0))),
            zero_rows=int((~pos).sum()),
        ))
    df = pd.DataFrame(recs).set_index("node")
    pooled = pd.DataFrame([_pool(df)], index=pd.Index(["all"], name="node"))
    df = pd.concat([df.astype({"card": "Int64"}), pooled.astype({"card": "Int64"})])
    return df


def _pool(df: pd.DataFrame) -> dict:
    """Whole-network figures: entry-weighted shares, row-weighted means, the overall minimum."""
    w_e, w_r = df["entries"] / df["entries"].sum(), df["rows"] / df["rows"].sum()
    finite = df["logpdf"].notna()
    w_l = (df["rows"] - df["zero_rows"])[finite]
    prior_mean = float((w_r * df["prior_logpdf"]).sum())
    mix_var = float((w_r * (df["prior_logpdf_sd"] ** 2 + (df["prior_logpdf"] - prior_mean) ** 2)).sum())
    return dict(
        card=None, rows=int(df["rows"].sum()), entries=int(df["entries"].sum()),
        min_entry=float(df["min_entry"].min()),
        frac_below=float((w_e * df["frac_below"]).sum()),
        prior_frac_below=float((w_e * df["prior_frac_below"]).sum()),
        entropy=float((w_r * df["entropy"]).sum()),
        prior_entropy=float((w_r * df["prior_entropy"]).sum()),
        logpdf=float((w_l * df["logpdf"][finite]).sum() / w_l.sum()) if w_l.sum() > 0 else np.nan,
        prior_logpdf=prior_mean,
        prior_logpdf_sd=float(np.sqrt(mix_var)),
        zero_rows=int(df["zero_rows"].sum()),
    )


def best_alpha(net: BayesNet, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """Symmetric Dirichlet alpha maximizing the likelihood of all strictly positive CPT rows."""
    groups = []  # (d, number of rows, sum over rows of sum_i log p_i)
    for m, c in enumerate(net.cpts):
        pos = (c > 0).all(axis=1)
        if pos.any():
            groups.append((net.graph.cards[m], int(pos.sum()), float(np.log(c[pos]).sum())))
    if not groups:
        raise BNError("every CPT row has a zero entry: no Dirichlet alpha gives them a finite likelihood")

    def nll(log_a):
        a = np.exp(log_a)
        return -sum(r * _log_norm(a, d) + (a - 1) * s for d, r, s in groups)

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def describe(net: BayesNet, alpha: float = 1.0, small: float = 1e-3) -> str:
    """One line for a report: the real CPTs next to Dirichlet(alpha)."""
    row = prior_distance(net, alpha, small).loc["all"]
    return (
        f"real CPTs vs Dirichlet({alpha:g}) rows: min entry {row.min_entry:.2g}, "
        f"{100 * row.frac_below:.1f}% of entries < {small:g} (prior: {100 * row.prior_frac_below:.2f}%), "
        f"mean row entropy {row.entropy:.3f} nats (prior: {row.prior_entropy:.3f}), "
        f"best-fit symmetric alpha {best_alpha(net):.3g}"
    )
