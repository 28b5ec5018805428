"""The study settings: one schema holds every default, the command line and Python get the same ones, and
a config is checked once."""
from pathlib import Path

import pytest

import bncompare.networks.priors as priors
from bncompare.errors import BNError
from bncompare.studies import spec as spec_module
from bncompare.studies.run import compose
from bncompare.studies.spec import study_defaults, study_spec

CONF = Path(spec_module.__file__).parent / "conf"


def test_the_command_line_composes_on_the_schema_defaults():
    cfg = compose([])
    for key, value in study_defaults().items():
        if key not in ("reference", "tv_reference", "study_name"):  # the prior and study groups set these
            assert cfg[key] == value, key


def test_a_python_caller_gets_the_same_defaults_as_the_command_line():
    cfg = compose([])  # the default study: its sizes are the schema's defaults
    minimal = {k: cfg[k] for k in ("graph", "prior", "estimators", "reference", "tv_reference")}
    full, short = study_spec(cfg), study_spec(minimal)
    assert full.data_dict() == short.data_dict()
    assert (short.episodes, short.mc_samples, short.fidelity_episodes) == (500, 300, 128)


def test_no_study_default_is_written_twice_in_the_shipped_configs():
    texts = "\n".join(p.read_text() for p in [CONF / "config.yaml", *CONF.glob("study/default.yaml")])
    for key in ("mc_samples", "max_exact_states", "attention_episodes", "episodes", "queries", "batch_size"):
        assert f"{key}:" not in texts, key


def test_the_spec_carries_the_built_priors_and_a_config_is_checked_once(monkeypatch):
    cfg = compose(["study=smoke", "seed=5"])
    calls = []
    real = priors.make_prior
    monkeypatch.setattr(priors, "make_prior", lambda *a, **k: calls.append(a) or real(*a, **k))
    spec_module._VALIDATED.clear()
    first = study_spec(cfg)
    again = study_spec(dict(cfg))
    assert again is first and len(calls) == 1  # no eval_prior: one prior, built once, checked once
    assert first.built_truth_prior is first.built_prior
    assert first.built_prior.describe() == real("dirichlet", alpha=1.0).describe()


@pytest.mark.parametrize("override, message", [
    ({"estimators": {"mle": {"kind": "mle", "colour": "red"}}},
     "estimators.mle: unknown keys ['colour']; allowed keys are ['budget_of', 'context_lens', 'kind', 'label', "
     "'mirrors', 'params', 'subset']"),
    ({"fidelity": {"mc_samples": "many"}}, "fidelity.mc_samples must be an integer, got many"),
    ({"fidelity": {"mc_samples": 0}}, "fidelity.mc_samples must be >= 1, got 0"),
    ({"progress": "maybe"}, "progress: Value 'maybe' is not a valid bool"),
    ({"graph": None}, "graph is missing"),
])
def test_bad_settings_are_one_line(override, message):
    cfg = dict(compose(["study=smoke"]), **override)
    with pytest.raises(BNError) as err:
        study_spec(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
