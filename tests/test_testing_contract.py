"""bncompare.testing, the public estimator contract: the project's own estimators pass it, the example
plugin's tests use it, and a broken estimator fails it with a message naming the broken rule."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bncompare.errors import BNError
from bncompare.estimators.counting import MLE, DirichletPosterior
from bncompare.networks import get_graph
from bncompare.studies import registry
from bncompare.testing import ContractError, check_estimator, parametrize_with_checks

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "bncompare-laplace"
# bncompare's own kinds that fit in a fraction of a second (tests/test_contract.py runs every kind)
QUICK = ["mle", "dirichlet", "bdeu", "k2", "naive", "dirichlet_median", "uniform_mean", "pgmpy_mle", "constructed",
         "gaussian_mle", "gaussian_ridge", "nig_posterior", "gaussian_naive", "ar_least_squares", "ar_ridge"]


@parametrize_with_checks([registry.build(kind) for kind in QUICK])
def test_bncompare_estimators_pass_the_public_contract(estimator, check):
    check(estimator)


class NotNormalized(MLE):
    """Rows scaled by 0.9: a plugin that forgot to normalize."""

    def fit(self, graph, contexts):
        super().fit(graph, contexts)
        self.cpts_ = [0.9 * c for c in self.cpts_]
        return self


class OrderDependent(MLE):
    """Fits on the first half of each context only: the order of the rows matters."""

    def fit(self, graph, contexts):
        return super().fit(graph, contexts[:, : contexts.shape[1] // 2])


class Unsettable(MLE):
    """Stores its setting under another name: get_params cannot read it back."""

    def __init__(self, alpha: float = 1.0):
        self.a = alpha


@pytest.mark.parametrize(("est", "message"), [
    (NotNormalized(), "NotNormalized (mle): node 0: predicted rows do not sum to 1 (max |sum - 1| = 0.1)"),
    (OrderDependent(), "predictions change when the context's rows are shuffled"),
])
def test_a_broken_estimator_fails_with_a_clear_message(est, message):
    with pytest.raises(ContractError) as caught:
        check_estimator(est)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_settings_that_do_not_round_trip_fail():
    with pytest.raises(AttributeError):  # get_params itself cannot find 'alpha'
        check_estimator(Unsettable())


def test_set_params_rebuilds_through_init_and_drops_the_fit():
    est = DirichletPosterior(alpha=1.0).fit(get_graph("chain-5"), torch.zeros(1, 3, 5, dtype=torch.long))
    assert est.set_params(alpha=2) is est and est.get_params() == {"alpha": 2.0}
    assert est.cpts_ is None and not hasattr(est, "graph_")  # unfitted: the fit was for the old settings
    with pytest.raises(BNError, match="alpha must be > 0"):
        est.set_params(alpha=-1)  # the constructor's check
    with pytest.raises(BNError, match=r"unknown settings \['beta'\]"):
        est.set_params(beta=1)
    twin = est.clone()
    assert twin is not est and twin.get_params() == est.get_params()


def plugin_tests(tmp_path, edit=None):
    src = tmp_path / "bncompare-laplace"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    if edit:
        path = src / "bncompare_laplace" / "estimator.py"
        path.write_text(edit(path.read_text()))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(src), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src / "tests")],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)


def test_the_example_plugin_passes_its_contract_tests(tmp_path):
    done = plugin_tests(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "13 passed" in done.stdout  # 2 estimators x 6 rules, and the add-alpha rule


def test_a_broken_plugin_fails_its_contract_tests_with_a_clear_message(tmp_path):
    done = plugin_tests(tmp_path, lambda s: s.replace("smoothed / smoothed.sum(-1, keepdim=True)",
                                                       "smoothed / (1 + smoothed.sum(-1, keepdim=True))"))
    assert done.returncode == 1
    assert "ContractError: LaplaceMLE (laplace): node 0: predicted rows do not sum to 1" in done.stdout
