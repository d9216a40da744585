"""A service worker ends when the process that started it dies.

BentoML's workers are children of its arbiter (the ``serve`` process). When the
arbiter is killed outright (``kill -9``, the OOM killer), nothing tells a worker:
it keeps the port, and the next start fails with "Address already in use".
Linux can signal a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
SIGTERM makes the worker shut down as on any stop, flushing the inference log.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def end_with_parent(sig: signal.Signals = signal.SIGTERM) -> bool:
    """Ask the kernel for `sig` when this process's parent dies; whether it agreed."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    # A parent that died just before the request sends nothing: we were reparented.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
