"""Autoregressive studies (``study=autoregressive``) through the real command line and runner.

Bad input is refused in one line with exit code 2 (in process, before Hydra starts, as in
tests/test_cli_guard.py); the smoke preset runs every estimator of ``estimators=autoregressive`` end
to end, writes the report, and a rerun computes nothing.
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_cli_guard import main_in_process, one_line_error  # noqa: E402


@pytest.mark.parametrize("override, expect", [
    ("process.d=0", "process.d (the state dimension) must be an integer >= 1, got 0"),
    ("process.T=1", "process.T (the longest prefix) must be an integer >= 2, got 1"),
    ("process.sigma=-0.5", "process.sigma (the noise sd) must be a finite number >= 0, got -0.5"),
    ("process.law=unitary", "process.law must be one of orthogonal, commuting, gaussian, got 'unitary'"),
    ("process.start=zero", "process.start must be one of fixed, gaussian, got 'zero'"),
    ("process=unitary", "unknown process 'unitary'; valid choices: commuting, gaussian, orthogonal"),
    ("process.spectral_radius=1", "process.spectral_radius applies to law=gaussian only"),
])
def test_bad_process_is_one_line(tmp_path, capsys, monkeypatch, override, expect):
    run = main_in_process(capsys, monkeypatch, tmp_path, "study=autoregressive", override, "report=false",
                          f"out_dir={tmp_path / 'out'}")
    one_line_error(run, expect)
