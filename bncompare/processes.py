"""Child processes that end with this one."""
from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when the thread that started it ends


def ends_with_this_process():
    """A ``preexec_fn`` that makes a child process get SIGTERM when this one ends, even by kill -9 (Linux;
    elsewhere None). ``prctl`` is looked up here, so the forked child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def die_with_parent():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent ended before the call took effect
            os._exit(1)
    return die_with_parent
