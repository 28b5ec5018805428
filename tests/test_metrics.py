"""Metrics: conditional TV/KL, unseen configurations, exact joint distances, Monte Carlo fidelity, summaries."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bncompare.estimators import MLE, DirichletPosterior, NaiveMLE, TableEstimator
from bncompare.metrics import (
    all_states,
    conditional_errors,
    exact_joint,
    kl,
    mean_sem,
    monte_carlo,
    pairwise_tv,
    true_log_joint,
    tv,
    unseen_mask,
)
from bncompare.metrics.summary import excess, summarize
from bncompare.networks import DirichletPrior, get_graph, sample


class Oracle(TableEstimator):
    """Knows the true CPTs: the zero-error reference for the fidelity metrics."""

    name = "oracle"

    def __init__(self, cpts):
        self.cpts = cpts

    def fit(self, graph, contexts):
        self._start_fit(graph, contexts)
        self.cpts_ = self.cpts
        return self


def setup(name="tree-5", G=3, N=30, Q=5, seed=0, alpha=1.0):
    graph = get_graph(name)
    gen = torch.Generator().manual_seed(seed)
    cpts = DirichletPrior(alpha).sample(graph, G, gen)
    return graph, cpts, sample(graph, cpts, N, gen), sample(graph, cpts, Q, gen)


def test_tv_and_kl_basics():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64)
    assert tv(p, q).tolist() == [0.5, 0.0]
    out = kl(p, q)
    assert math.isinf(out[0]) and out[0] > 0  # q rules out a value p allows: +inf, not clipped
    assert out[1] == 0
    # p = 0 terms contribute nothing, even where q = 0 too
    assert kl(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])) == 0
    a = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    b = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    assert float(kl(a, b)) == pytest.approx(float((a * (a / b).log()).sum()), rel=1e-12)


def test_conditional_errors_match_hand_computation():
    # TV and KL of every query and node, recomputed in plain Python from the CPTs, with the parent
    # configuration coded by hand (mixed radix, last parent fastest) and the MLE counted by hand.
    graph, cpts, ctx, qry = setup(N=6)  # short contexts: MLE zeros (infinite KL) and unseen rows occur
    probs = MLE().fit(graph, ctx).predict_proba(qry)
    err = conditional_errors(graph, cpts, qry, probs)
    assert err["cond_tv"].shape == err["cond_kl"].shape == (3, 5, graph.n_nodes)
    n_inf = 0
    for b, q, m in itertools.product(range(3), range(5), range(graph.n_nodes)):
        def config(row, m=m):
            c = 0
            for p in graph.parents[m]:
                c = c * graph.cards[p] + int(row[p])
            return c

        row = qry[b, q].tolist()
        truth = [float(v) for v in cpts[m][b, config(row)]]
        counts = [0] * graph.cards[m]
        for r in ctx[b].tolist():
            if config(r) == config(row):
                counts[r[m]] += 1
        total = sum(counts)
        pred = [c / total for c in counts] if total else [1 / graph.cards[m]] * graph.cards[m]
        want_tv = 0.5 * sum(abs(t - e) for t, e in zip(truth, pred))
        if any(t > 0 and e == 0 for t, e in zip(truth, pred)):
            want_kl, n_inf = math.inf, n_inf + 1
        else:
            want_kl = sum(t * math.log(t / e) for t, e in zip(truth, pred) if t > 0)
        assert float(err["cond_tv"][b, q, m]) == pytest.approx(want_tv, abs=1e-12)
        assert float(err["cond_kl"][b, q, m]) == pytest.approx(want_kl, abs=1e-12)
    assert n_inf > 0  # the infinite case was exercised


def test_unseen_mask_agrees_with_counting_estimator():
    graph, cpts, ctx, qry = setup("general-7", N=4, Q=20)
    mask = unseen_mask(graph, ctx, qry)
    want = torch.stack(MLE().fit(graph, ctx).unseen(qry), -1)
    assert torch.equal(mask, want)
    assert mask.any() and not mask[..., 0].any()  # some unseen; the root never is (N >= 1)


def brute_force_joint_tv(graph, cpts_true, cpts_est, b):
    """Independent check with plain Python over every joint state."""
    total = 0.0
    for x in itertools.product(*[range(c) for c in graph.cards]):
        xs = torch.tensor(x)
        p = q = 1.0
        for m in range(graph.n_nodes):
            r = int(graph.config_index(xs, m))
            p *= float(cpts_true[m][b, r, x[m]])
            q *= float(cpts_est[m][b, r, x[m]])
        total += abs(p - q)
    return total / 2


def test_exact_joint_against_brute_force():
    graph, cpts, ctx, _ = setup("tree-5", N=15)
    est = DirichletPosterior(1.0).fit(graph, ctx)
    out = exact_joint(est, graph, cpts)
    for b in range(3):
        assert float(out["joint_tv"][b]) == pytest.approx(brute_force_joint_tv(graph, cpts, est.cpts_, b), abs=1e-12)
    assert (out["joint_kl"] > 0).all() and torch.isfinite(out["joint_kl"]).all()


def test_oracle_has_zero_joint_distance():
    graph, cpts, ctx, _ = setup("general-5")
    out = exact_joint(Oracle(cpts).fit(graph, ctx), graph, cpts)
    assert torch.allclose(out["joint_tv"], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out["joint_kl"], torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_naive_joint_is_the_empirical_distribution():
    # prod_m n(x_<=m) / n(x_<m) telescopes to n(x) / N: the naive estimator generates the context rows
    graph, cpts, ctx, _ = setup("chain-5", N=12)
    out = exact_joint(NaiveMLE().fit(graph, ctx), graph, cpts)
    states = all_states(graph)
    log_p = true_log_joint(graph, cpts, states.expand(3, -1, -1))
    for b in range(3):
        codes = (ctx[b] * torch.tensor([16, 8, 4, 2, 1])).sum(-1)
        emp = torch.bincount(codes, minlength=32).double() / 12
        assert float(out["joint_tv"][b]) == pytest.approx(0.5 * float((log_p[b].exp() - emp).abs().sum()), abs=1e-12)
    assert torch.isinf(out["joint_kl"]).all()  # 12 rows cannot cover 32 states


def test_mle_joint_kl_is_infinite_when_it_rules_out_a_state():
    graph, cpts, ctx, _ = setup("tree-5", N=3)
    out = exact_joint(MLE().fit(graph, ctx), graph, cpts)
    assert torch.isinf(out["joint_kl"]).all()
    assert ((out["joint_tv"] > 0) & (out["joint_tv"] <= 1)).all()


def test_pairwise_tv():
    x = torch.tensor([[[0, 1, 1], [1, 0, 1]]])
    assert float(pairwise_tv(x, x, (2, 2, 2))) == 0
    y = torch.tensor([[[1, 1, 1], [1, 1, 1]]])
    # pairs (0,1): {01,10} vs {11}: TV 1; (0,2): {01,11} vs {11}: 0.5; (1,2): {11,01} vs {11}: 0.5
    assert float(pairwise_tv(x, y, (2, 2, 2))) == pytest.approx(2 / 3)


def test_monte_carlo_measures_separate_good_from_bad():
    graph, cpts, ctx, _ = setup("chain-7", G=3, N=20)
    gen = torch.Generator().manual_seed(1)
    u1, u2 = (torch.rand(3, 3000, 7, generator=gen, dtype=torch.float64) for _ in range(2))
    good = monte_carlo(Oracle(cpts).fit(graph, ctx), graph, cpts, u1, u2)
    uniform = [torch.full_like(c, 0.5) for c in cpts]
    bad = monte_carlo(Oracle(uniform).fit(graph, ctx), graph, cpts, u1, u2)
    assert good["mc_loglik_gap"].abs().max() < 0.1
    assert (bad["mc_loglik_gap"] > 0.3).all()  # uniform samples are atypical for the truth
    assert (good["mc_pair_tv"] < bad["mc_pair_tv"]).all()
    assert (good["mc_impossible_frac"] == 0).all()


def test_monte_carlo_separates_impossible_samples():
    # a truth with a zero entry (as in real networks): generated samples it cannot produce are counted
    # apart instead of making the log-likelihood gap infinite
    graph, cpts, ctx, _ = setup("chain-5", G=2, N=10)
    cpts[0][:] = torch.tensor([1.0, 0.0], dtype=torch.float64)  # the root is always 0
    uniform = [torch.full_like(c, 0.5) for c in cpts]
    gen = torch.Generator().manual_seed(3)
    u1, u2 = (torch.rand(2, 2000, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    out = monte_carlo(Oracle(uniform).fit(graph, ctx), graph, cpts, u1, u2)
    assert ((out["mc_impossible_frac"] - 0.5).abs() < 0.05).all()
    assert torch.isfinite(out["mc_loglik_gap"]).all()


def test_summaries_keep_infinity():
    assert mean_sem([1.0, 2.0, 3.0]) == (2.0, pytest.approx(1 / math.sqrt(3)), 3)
    m, s, n = mean_sem([1.0, float("inf")])
    assert math.isinf(m) and math.isnan(s) and n == 2
    frame = pd.DataFrame({"episode": [0, 1, 0, 1], "node": "all", "metric": ["cond_kl"] * 2 + ["cond_tv"] * 2,
                          "value": [0.5, np.inf, 0.2, 0.4]})
    out = summarize(frame).set_index("metric")
    assert np.isinf(out.loc["cond_kl", "mean"]) and np.isnan(out.loc["cond_kl", "sem"])
    assert out.loc["cond_tv", "mean"] == pytest.approx(0.3) and out.loc["cond_tv", "n"] == 2
    ref = frame.assign(value=[0.25, 0.25, 0.1, 0.1])
    ex = summarize(excess(frame, ref)).set_index("metric")
    assert ex.loc["cond_tv_excess", "mean"] == pytest.approx(0.2)  # paired: mean of (0.1, 0.3)
    assert ex.loc["cond_tv_excess", "sem"] == pytest.approx(0.1)
    assert np.isinf(ex.loc["cond_kl_excess", "mean"])


def _pairwise_tv_loop(x, y, cards):
    """The definition, one pair at a time: the reference the batched pairwise_tv must match."""
    import itertools

    B, M = x.shape[0], x.shape[-1]
    total = torch.zeros(B, dtype=torch.float64)
    pairs = list(itertools.combinations(range(M), 2))
    for i, j in pairs:
        k = cards[i] * cards[j]
        freq = [torch.stack([torch.bincount(z[b, :, i] * cards[j] + z[b, :, j], minlength=k) for b in range(B)])
                .double() / z.shape[1] for z in (x, y)]
        total += 0.5 * (freq[0] - freq[1]).abs().sum(-1)
    return total / len(pairs)


@pytest.mark.parametrize("block", [1 << 22, 40, 1])  # one block, several, one node's rows at a time
def test_pairwise_tv_matches_the_pair_loop(block):
    gen = torch.Generator().manual_seed(3)
    cards = (2, 5, 3, 1, 4, 2, 7)
    x = torch.stack([torch.randint(0, c, (3, 50), generator=gen) for c in cards], -1)
    y = torch.stack([torch.randint(0, c, (3, 20), generator=gen) for c in cards], -1)  # another n
    want = _pairwise_tv_loop(x, y, cards)
    assert torch.allclose(pairwise_tv(x, y, cards, block=block), want, rtol=0, atol=1e-12)
    assert torch.allclose(pairwise_tv(x, x, cards, block=block), torch.zeros(3, dtype=torch.float64), atol=1e-15)
    # whole numbers summed in float64: however the pairs are cut into blocks, the same bits
    assert torch.equal(pairwise_tv(x, y, cards, block=block), pairwise_tv(x, y, cards, block=1 << 22))


def test_pairwise_tv_with_many_samples_counts_in_float64():
    # ny * count_x = 4099 * 4097 > 2^24 is odd: float32 would round it, and the TV by ~3e-8
    x = torch.zeros(1, 4097, 2, dtype=torch.long)
    y = torch.zeros(1, 4099, 2, dtype=torch.long)
    y[0, 0, 1] = 1
    assert torch.allclose(pairwise_tv(x, y, (1, 2)), _pairwise_tv_loop(x, y, (1, 2)), rtol=0, atol=1e-12)
