"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _names_the_file(atomic):
    """An OSError of ``atomic(path, ...)`` names ``path``: a full disk's error names no file, and a failure on
    the temporary file would name that, not the file the user will look for."""
    from functools import wraps

    @wraps(atomic)
    def named(path, *args, **kwargs):
        try:
            return atomic(path, *args, **kwargs)
        except OSError as e:
            e.filename, e.filename2 = str(path), None
            raise
    return named


def process_umask() -> int:
    """This process's umask, read without changing it (Linux: /proc), else by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@_names_the_file
def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file next to ``path``, which is flushed to disk and then
    renamed into place (atomic on POSIX). The temporary name is unique, so two writers never share it.
    The file gets the mode a plain ``open`` would give it (0666 less the umask; mkstemp makes it 0600),
    so colleagues can read a run directory or a model cache on a shared file system."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~process_umask())
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left over when ``write`` failed
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


# ----- one writer per folder -------------------------------------------------------------------

LOCK_NAME = ".bncompare.lock"
HOLDER_NAME = ".bncompare.holder"  # who holds the lock: a file of its own, since a waiter may empty the lock file
_held: dict[Path, object] = {}  # folder -> its FileLock, held until the process ends


def lock_dir(folder, owner: str = "") -> Path:
    """Take the exclusive lock of ``folder`` for the rest of this process, or raise BNError naming its holder.

    The lock is a ``filelock.FileLock`` on ``<folder>/.bncompare.lock`` (an ``flock``): the kernel
    drops it when the holder exits, even on kill -9, so a stale lock file never blocks a rerun.
    Taking it again in the same process is a no-op.
    """
    import socket
    import sys
    from datetime import datetime

    from filelock import FileLock, Timeout

    from bncompare.errors import BNError

    folder = Path(folder).resolve()
    if folder in _held:
        return folder
    lock = FileLock(folder / LOCK_NAME, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = " ".join((folder / HOLDER_NAME).read_text(errors="replace").split())
        except OSError:
            holder = ""
        raise BNError(f"{folder} is in use by {holder or 'another process'}; wait for it to finish or choose "
                      "another out_dir") from None
    _held[folder] = lock
    started = datetime.now().isoformat(timespec="seconds")
    atomic_write_text(folder / HOLDER_NAME,
                      f"pid {os.getpid()} on {socket.gethostname()} since {started} ({owner or ' '.join(sys.argv)})\n")
    return folder


def probe_writable(directory) -> Path:
    """Create ``directory`` if needed and prove a file can be written in it; raises OSError if not."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=directory)
    os.close(fd)
    os.unlink(probe)
    return directory
