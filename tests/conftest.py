import os
import shutil
import subprocess

import pytest

import bncompare  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported; see bncompare/__init__.py)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny tensors: a second OpenMP thread only adds overhead, and under
    CPU contention (parallel test runs) it makes each forward pass ~30x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def read_only_dir(tmp_path):
    """An existing folder nobody can write into (root ignores mode bits, so then: the immutable flag)."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("cannot make a read-only folder as root here")
    yield path
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)])
    path.chmod(0o755)



@pytest.fixture
def refused_in_one_line(capsys):
    """``refused_in_one_line(main, *argv)`` runs a command's ``main(argv)`` in process: it must exit 2 with one
    line on stderr starting "error: "; returns that line."""
    def run(main, *argv) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in argv])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and "\n" not in err and err.startswith("error: "), err
        return err
    return run
