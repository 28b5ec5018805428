"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file next to ``path``, which is flushed to disk and then
    renamed into place (atomic on POSIX). The temporary name is unique, so two writers never share it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
_held: dict[Path, int] = {}  # folder -> open lock file descriptor, held until the process ends


def lock_dir(folder, owner: str = "") -> Path:
    """Take the exclusive lock of ``folder`` for the rest of this process, or raise BNError naming its holder.

    The lock is an ``flock`` on ``<folder>/.bncompare.lock``: the kernel drops it when
    the holder exits, even on kill -9, so a stale lock file never blocks a rerun.
    Taking it again in the same process is a no-op.
    """
    import fcntl
    import socket
    import sys
    from datetime import datetime

    from bncompare.errors import BNError

    folder = Path(folder).resolve()
    if folder in _held:
        return folder
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = " ".join(os.pread(fd, 4096, 0).decode("utf-8", "replace").split()) or "another process"
        os.close(fd)
        raise BNError(f"{folder} is in use by {holder}; wait for it to finish or choose another out_dir") from None
    started = datetime.now().isoformat(timespec="seconds")
    text = f"pid {os.getpid()} on {socket.gethostname()} since {started} ({owner or ' '.join(sys.argv)})\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    _held[folder] = fd
    return folder


def probe_writable(directory) -> Path:
    """Create ``directory`` if needed and prove a file can be written in it; raises OSError if not."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=directory)
    os.close(fd)
    os.unlink(probe)
    return directory
