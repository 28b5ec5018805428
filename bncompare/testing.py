"""The estimator contract, public: what every bncompare estimator passes, for authors of new ones::

    from bncompare.testing import check_estimator, parametrize_with_checks

    check_estimator(MyEstimator(alpha=0.5))      # raises ContractError naming the first broken rule

    @parametrize_with_checks([MyEstimator(), MyEstimator(alpha=0.5)])
    def test_contract(estimator, check):          # one pytest test per (estimator, rule)
        check(estimator)

The rules (each a ``check_*`` function below, run on a fresh :meth:`~bncompare.estimators.base.Estimator.clone`
of the estimator, so the one given is never fitted):

- its tags are a :class:`~bncompare.estimators.base.Tags` of known variables and family;
- ``get_params`` gives the ``__init__`` settings, ``clone`` rebuilds an equal unfitted estimator from them,
  ``set_params`` changes them (returns the estimator) and refuses an unknown name;
- predicting before ``fit`` is a :class:`~bncompare.errors.BNError`; ``fit`` returns the estimator;
- predictions have the right shapes and are distributions: discrete rows non-negative, summing to 1;
  linear-Gaussian and autoregressive ``(df, loc, scale)`` with ``df > 0``, a finite ``loc`` and ``scale > 0``
  (``>= 0`` for a point forecaster and for an autoregressive process, which may be noiseless); an
  autoregressive predictive is the same for every query row;
- they do not depend on the order of the rows in a context (an autoregressive context is an ordered
  prefix: there, not on the query rows' values), nor on how contexts are split into batches.

Each estimator is checked on the variables it declares (``tags.variables``), on small data (a 5-node
tree, 4 contexts of 12 rows): give it settings that train in seconds when it trains in ``prepare``.
"""
from __future__ import annotations

import torch

from bncompare.errors import BNError
from bncompare.estimators.base import Estimator, Tags

ATOL = 1e-5  # how close predictions must be across row orders and batchings (float32 estimators included)
FAMILIES = ("counting", "library", "constructed", "trained")


class ContractError(AssertionError):
    """An estimator breaks a rule of the contract; the message names the estimator and the rule."""


# ----- small problems of each kind of variables ------------------------------------------------------------

class _Discrete:
    exchangeable = True

    def __init__(self):
        from bncompare.networks import DirichletPrior, get_graph

        self.graph, self.prior = get_graph("tree-5"), DirichletPrior(1.0)

    def data(self, B=4, N=12, Q=6):
        from bncompare.networks import DirichletPrior, sample

        gen = torch.Generator().manual_seed(0)
        cpts = DirichletPrior(0.5).sample(self.graph, B, gen)  # skewed rows: zeros and unseen configurations
        return sample(self.graph, cpts, N, gen), sample(self.graph, cpts, Q, gen)

    def check(self, who, m, p, point=False):
        card = self.graph.cards[m]
        _expect(tuple(p.shape) == (4, 6, card), who, f"node {m}: predictions of shape {tuple(p.shape)}, "
                f"expected (contexts=4, queries=6, cardinality={card})")
        _expect(bool((p >= 0).all()), who, f"node {m}: negative probabilities (min {float(p.min()):.3g})")
        error = float((p.double().sum(-1) - 1).abs().max())
        _expect(error <= 1e-6, who, f"node {m}: predicted rows do not sum to 1 (max |sum - 1| = {error:.3g})")


class _Gaussian:
    exchangeable = True

    def __init__(self):
        from bncompare.networks import get_graph
        from bncompare.networks.priors import NIGPrior

        self.graph, self.prior = get_graph("gaussian-tree-5"), NIGPrior()

    def data(self, B=4, N=12, Q=6):
        from bncompare.networks.gaussian import sample_gaussian

        gen = torch.Generator().manual_seed(0)
        params = self.prior.sample(self.graph, B, gen)
        return sample_gaussian(self.graph, params, N, gen), sample_gaussian(self.graph, params, Q, gen)

    def check(self, who, m, p, point=False):
        from bncompare.networks.gaussian import DF, LOC, SCALE

        _expect(tuple(p.shape) == (4, 6, 3), who, f"node {m}: predictions of shape {tuple(p.shape)}, "
                "expected (contexts=4, queries=6, 3) for (df, loc, scale)")
        _expect(bool((p[..., DF] > 0).all()), who, f"node {m}: df must be > 0")
        scale_ok = (p[..., SCALE] >= 0) if point else (p[..., SCALE] > 0)
        _expect(bool(scale_ok.all()), who, f"node {m}: scale must be {'>= 0' if point else '> 0'}")
        _expect(bool(torch.isfinite(p[..., LOC]).all()), who, f"node {m}: loc must be finite")


class _Autoregressive(_Gaussian):
    exchangeable = False  # a context is a sequence's prefix: its order is the data

    def __init__(self):
        from bncompare.networks.autoregressive import ARPrior, ar_graph

        self.graph, self.prior = ar_graph(3), ARPrior(law="gaussian", sigma=0.1)

    def data(self, B=4, N=12, Q=6):
        gen = torch.Generator().manual_seed(0)
        states = self.prior.sequences(self.prior.sample(self.graph, B, gen), N + 1, gen)
        return states[:, :N], states[:, N:].expand(B, Q, 3) + torch.randn(B, Q, 3, generator=gen)

    def check(self, who, m, p, point=False):
        super().check(who, m, p, point=True)  # scale 0 is allowed: a noiseless process (sigma = 0) is exact
        _expect(bool((p == p[:, :1]).all()), who, f"node {m}: the next state's predictive must be the same "
                "for every query row")


_PROBLEMS = {"discrete": _Discrete, "gaussian": _Gaussian, "autoregressive": _Autoregressive}


def _expect(ok: bool, who: str, message: str) -> None:
    if not ok:
        raise ContractError(f"{who}: {message}")


def _who(est) -> str:
    return f"{type(est).__name__} ({getattr(est, 'name', '?')})"


def _problem(est):
    variables = getattr(est.tags, "variables", None)
    _expect(variables in _PROBLEMS, _who(est), f"tags.variables {variables!r} is not one of {sorted(_PROBLEMS)}")
    return _PROBLEMS[variables]()


def _fitted(est, problem, contexts):
    fresh = est.clone().prepare(problem.graph, problem.prior, seed=0)
    return fresh.fit(problem.graph, contexts)


def _same(who, what, a, b):
    for m, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape:
            raise ContractError(f"{who}: node {m}: predictions change shape {what}")
        x, y = x.double(), y.double()
        gap = float(torch.where(x == y, 0.0, (x - y).abs()).max())  # equal infinities (df = inf) agree
        _expect(gap <= ATOL, who, f"node {m}: predictions change {what} (max difference {gap:.3g})")


# ----- the rules ----------------------------------------------------------------------------------------------

def check_tags(est) -> None:
    """Declared tags: a Tags of known variables and family, set on the class (known before fitting)."""
    who = _who(est)
    _expect(isinstance(est, Estimator), who, "must subclass bncompare.estimators.base.Estimator")
    _expect(isinstance(type(est).tags, Tags), who, "tags must be a bncompare.estimators.base.Tags on the class")
    _expect(est.tags == type(est).tags, who, "tags are class-level: an instance must not change them")
    _expect(est.tags.family in FAMILIES, who, f"tags.family {est.tags.family!r} is not one of {list(FAMILIES)}")
    _problem(est)


def check_params(est) -> None:
    """get_params / clone / set_params round trip."""
    who = _who(est)
    params = est.get_params()
    _expect(sorted(params) == sorted(est.param_names()), who,
            f"get_params() keys {sorted(params)} are not the __init__ settings {sorted(est.param_names())}")
    twin = est.clone()
    _expect(twin is not est and type(twin) is type(est), who, "clone() must return a new estimator of its class")
    _expect(twin.get_params() == params, who, f"clone() changed the settings: {params} -> {twin.get_params()}")
    _expect(twin.set_params(**params) is twin, who, "set_params() must return the estimator")
    _expect(twin.get_params() == params, who, "set_params(**get_params()) changed the settings")
    try:
        twin.set_params(no_such_setting_=1)
    except BNError:
        pass
    else:
        raise ContractError(f"{who}: set_params accepted an unknown setting (it must raise BNError)")


def check_error_before_fit(est) -> None:
    """Predicting before fit is a BNError (one line), not some other exception or a silent answer."""
    problem = _problem(est)
    _, queries = problem.data()
    try:
        est.clone().predict(queries)
    except BNError:
        return
    except Exception as e:  # noqa: BLE001  what the rule is about: the kind of error
        raise ContractError(f"{_who(est)}: predict before fit raised {type(e).__name__}, not BNError") from e
    raise ContractError(f"{_who(est)}: predict before fit returned an answer (it must raise BNError)")


def check_fit_and_predictions(est) -> None:
    """fit returns the estimator; every node's prediction has the right shape and is a distribution."""
    problem = _problem(est)
    contexts, queries = problem.data()
    fresh = est.clone().prepare(problem.graph, problem.prior, seed=0)
    _expect(fresh.fit(problem.graph, contexts) is fresh, _who(est), "fit must return the estimator itself")
    probs = fresh.predict(queries)
    _expect(len(probs) == problem.graph.n_nodes, _who(est),
            f"predict gave {len(probs)} nodes, the graph has {problem.graph.n_nodes}")
    for m, p in enumerate(probs):
        problem.check(_who(est), m, p, est.tags.point_forecast)


def check_row_order_invariance(est) -> None:
    """Shuffling a context's rows changes nothing (ordered prefixes: the query rows' values are never read)."""
    problem = _problem(est)
    contexts, queries = problem.data()
    probs = _fitted(est, problem, contexts).predict(queries)
    if problem.exchangeable:
        order = torch.randperm(contexts.shape[1], generator=torch.Generator().manual_seed(1))
        _same(_who(est), "when the context's rows are shuffled",
              probs, _fitted(est, problem, contexts[:, order]).predict(queries))
    else:
        _same(_who(est), "with the query rows' values", probs,
              _fitted(est, problem, contexts).predict(torch.zeros_like(queries)))


def check_batching_invariance(est) -> None:
    """Fitting the contexts in two batches gives the predictions of fitting them in one."""
    problem = _problem(est)
    contexts, queries = problem.data()
    whole = _fitted(est, problem, contexts).predict(queries)
    halves = [_fitted(est, problem, contexts[s]).predict(queries[s]) for s in (slice(0, 2), slice(2, 4))]
    _same(_who(est), "when the contexts are fitted in two batches",
          whole, [torch.cat([h[m] for h in halves]) for m in range(len(whole))])


CHECKS = (check_tags, check_params, check_error_before_fit, check_fit_and_predictions, check_row_order_invariance,
          check_batching_invariance)


def check_estimator(est) -> None:
    """Run every rule on ``est``; the first one broken raises :class:`ContractError` with a clear message."""
    for check in CHECKS:
        check(est)


def parametrize_with_checks(estimators):
    """A pytest decorator: one test per (estimator, rule), with arguments ``estimator`` and ``check``."""
    import pytest

    cases = [(est, check) for est in estimators for check in CHECKS]
    ids = [f"{est!r}-{check.__name__}" for est, check in cases]
    return pytest.mark.parametrize(("estimator", "check"), cases, ids=ids)
