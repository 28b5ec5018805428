"""The constructed gradient-descent transformer equals k explicit gradient steps, and approaches least squares."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncompare.errors import BNError
from bncompare.networks.gaussian import DF, LOC, SCALE, check_gaussian_batch, sample_gaussian
from bncompare.networks.graph import Graph
from bncompare.networks.priors import NIGPrior
from bncompare.transformer.gd_construct import (
    ConstructedGD,
    GDTransformer,
    context_tokens,
    n_features,
    query_tokens,
    token_batch,
)

PROPERTY = settings(max_examples=100, derandomize=True, deadline=None)


def explicit_gd(X: np.ndarray, y: np.ndarray, steps: int, eta: float) -> np.ndarray:
    """``steps`` gradient steps from w = 0 on (1/2N)||y - Xw||^2, step eta / (mean squared row norm of X)."""
    N = X.shape[0]
    step = eta / np.mean(np.sum(X * X, axis=1))
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        w = w + step * X.T @ (y - X @ w) / N
    return w


def design(rows: np.ndarray, parents) -> np.ndarray:
    return np.concatenate([np.ones((rows.shape[0], 1)), rows[:, list(parents)]], 1)


@st.composite
def problems(draw, max_nodes=6):
    """A random Gaussian DAG, NIG parameters, B contexts of N rows and Q query rows."""
    M = draw(st.integers(1, max_nodes))
    names = [f"V{i}" for i in range(M)]
    edges = [(names[i], names[j]) for j in range(M) for i in range(j) if draw(st.booleans())]
    graph = Graph.from_edges(names, edges, variables="gaussian")
    B, N, Q = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    params = NIGPrior().sample(graph, B, gen)
    rows = sample_gaussian(graph, params, N + Q, gen)
    return graph, rows[:, :N], rows[:, N:]


@PROPERTY
@given(problems(), st.integers(1, 25), st.sampled_from([0.3, 1.0, 1.7]))
def test_constructed_model_equals_explicit_gradient_steps(problem, steps, eta):
    graph, ctx, qry = problem
    est = ConstructedGD(steps=steps, eta=eta).fit(graph, ctx)
    preds = est.predict(qry)
    check_gaussian_batch(graph, est.network_)
    for b in range(ctx.shape[0]):
        c, q = ctx[b].numpy(), qry[b].numpy()
        for m, pa in enumerate(graph.parents):
            X, y = design(c, pa), c[:, m]
            w = explicit_gd(X, y, steps, eta)
            sigma = max(math.sqrt(np.mean((y - X @ w) ** 2)), est.min_sigma)
            np.testing.assert_allclose(est.network_[m][b, :-1].numpy(), w, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(float(est.network_[m][b, -1]), sigma, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(preds[m][b, :, LOC].numpy(), design(q, pa) @ w, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(preds[m][b, :, SCALE].numpy(), sigma, rtol=1e-9, atol=1e-9)
            assert np.isinf(preds[m][b, :, DF].numpy()).all()


@PROPERTY
@given(problems(max_nodes=5), st.integers(1, 12))
def test_one_forward_pass_holds_residuals_and_predictions(problem, steps):
    # the whole token matrix in one forward pass (memory form and textbook (T, N) scores alike): after the last
    # layer context token i holds y_i - w_k . x_i and query token q holds -w_k . x_q
    graph, ctx, qry = problem
    B, N, M = ctx.shape
    Q, D = qry.shape[1], n_features(graph)
    model = GDTransformer(D, steps)
    tokens = token_batch(context_tokens(graph, ctx), query_tokens(graph, qry)).reshape(B * M, N + Q, D + 1)
    out = model(tokens, N).reshape(B, M, N + Q, D + 1)
    explicit = model(tokens, N, explicit=True).reshape(B, M, N + Q, D + 1)
    np.testing.assert_allclose(out.numpy(), explicit.numpy(), rtol=1e-10, atol=1e-10)
    for b in range(B):
        c = ctx[b].numpy()
        for m, pa in enumerate(graph.parents):
            X, y = design(c, pa), c[:, m]
            w = explicit_gd(X, y, steps, 1.0)
            np.testing.assert_allclose(out[b, m, :N, D].numpy(), y - X @ w, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(out[b, m, N:, D].numpy(), -design(qry[b].numpy(), pa) @ w, rtol=1e-9,
                                       atol=1e-9)
            np.testing.assert_allclose(out[b, m, :, :D].numpy(), tokens.reshape(B, M, N + Q, D + 1)[b, m, :, :D]
                                       .numpy() / math.sqrt(np.mean(np.sum(X * X, 1))), rtol=1e-12)


@PROPERTY
@given(problems(max_nodes=5), st.sampled_from([0.5, 1.0, 1.5]))
def test_gradient_steps_approach_least_squares(problem, eta):
    # w_k - w* = (I - step H)^k (0 - w*): the error shrinks at least by rho^k, rho = max |1 - step lambda|,
    # and once rho^k is negligible the weights are least squares (N >= k_m + 1: full column rank a.s.)
    graph, ctx, _ = problem
    cases = []  # (b, m, rho, w_ls)
    for m, pa in enumerate(graph.parents):
        for b in range(ctx.shape[0]):
            X = design(ctx[b].numpy(), pa)
            if X.shape[0] < X.shape[1]:
                continue
            H = X.T @ X / X.shape[0]
            lam = np.linalg.eigvalsh(H)
            if lam[0] < 1e-6 * lam[-1]:
                continue  # nearly collinear: too slow to converge in a test
            rho = float(np.max(np.abs(1 - eta * lam / np.trace(H))))
            cases.append((b, m, rho, np.linalg.lstsq(X, ctx[b, :, m].numpy(), rcond=None)[0]))
    few = ConstructedGD(steps=3, eta=eta).fit(graph, ctx).network_
    need = [math.log(1e-9) / math.log(rho) if rho > 0 else 1 for _, _, rho, _ in cases]
    k = int(min(1000, math.ceil(max(need, default=1))))
    many = ConstructedGD(steps=k, eta=eta).fit(graph, ctx).network_
    for (b, m, rho, w_ls), n in zip(cases, need):
        err3 = np.linalg.norm(few[m][b, :-1].numpy() - w_ls)
        assert err3 <= rho**3 * np.linalg.norm(w_ls) * (1 + 1e-8) + 1e-9
        err_k = np.linalg.norm(many[m][b, :-1].numpy() - w_ls)
        assert err_k <= rho**k * np.linalg.norm(w_ls) * (1 + 1e-8) + 1e-8
        if n <= k:
            np.testing.assert_allclose(many[m][b, :-1].numpy(), w_ls, rtol=1e-6, atol=1e-7 * (1 + np.linalg.norm(w_ls)))


def test_a_root_is_solved_in_one_step_and_sigma_is_the_rms_residual():
    graph = Graph.from_edges(["A", "B"], [("A", "B")], variables="gaussian")
    ctx = torch.tensor([[[1.0, 2.0], [3.0, 1.0], [2.0, 4.0]]], dtype=torch.float64)
    est = ConstructedGD(steps=1).fit(graph, ctx)
    assert float(est.network_[0][0, 0]) == pytest.approx(2.0, abs=1e-14)  # the mean, after one step with eta = 1
    assert float(est.network_[0][0, -1]) == pytest.approx(math.sqrt(2 / 3), abs=1e-14)


def test_the_model_is_attention_with_closed_form_weights():
    model = GDTransformer(3, steps=4, eta=0.5)
    assert len(model.layers) == 4
    layer = model.layers[0]
    assert torch.equal(layer.W_Q, layer.W_K) and torch.equal(layer.W_Q[:3, :3], torch.eye(3, dtype=torch.float64))
    assert float(layer.W_V[3, 3]) == -0.5 and int((layer.W_V != 0).sum()) == 1
    assert torch.equal(layer.P, torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("kw, field", [({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"eta": 2.0}, "eta"),
                                       ({"eta": -1}, "eta"), ({"min_sigma": 0.0}, "min_sigma")])
def test_bad_settings_are_one_line(kw, field):
    with pytest.raises(BNError, match=field):
        ConstructedGD(**kw)


def test_bad_input_is_one_line():
    gauss = Graph.from_edges(["A", "B"], [("A", "B")], variables="gaussian")
    discrete = Graph.from_edges(["A", "B"], [("A", "B")])
    with pytest.raises(BNError, match="discrete"):
        ConstructedGD().fit(discrete, torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(BNError, match="NaN"):
        ConstructedGD().fit(gauss, torch.tensor([[[0.0, math.nan]]]))
    with pytest.raises(BNError, match="at least one row"):
        ConstructedGD().fit(gauss, torch.zeros(1, 0, 2, dtype=torch.float64))
    with pytest.raises(BNError, match="fit"):
        ConstructedGD().predict(torch.zeros(1, 1, 2, dtype=torch.float64))
