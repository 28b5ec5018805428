"""Mistyped command-line options of the study command: one line and exit 2, not argparse's usage block."""
import pytest
from test_cli_guard import cli, main_in_process, one_line_error


@pytest.mark.parametrize("args, expect", [
    (["--cfg"], "--cfg"),
    (["-cd"], "--config-dir"),
    (["--config-name"], "--config-name"),
    (["--info", "nosuch"], "invalid choice"),
    (["--nosuch", "study=smoke"], "unrecognized arguments: --nosuch"),
    (["-x"], "unrecognized arguments: -x"),
    (["--run", "-m", "study=smoke"], "only one of"),
    (["-c", "job", "-m", "study=smoke"], "only one of"),
    (["--info", "--shell-completion"], "only one of"),
])
def test_bad_option_is_one_line(tmp_path, capsys, monkeypatch, args, expect):
    err = one_line_error(main_in_process(capsys, monkeypatch, tmp_path, *args), expect)
    assert "usage:" not in err and "--help" in err, err  # points at the help instead of printing 8 lines


def test_bad_option_end_to_end(tmp_path):
    one_line_error(cli(tmp_path, "--run", "-m", "study=smoke"), "only one of")
    one_line_error(cli(tmp_path, "--nosuch"), "unrecognized arguments")
