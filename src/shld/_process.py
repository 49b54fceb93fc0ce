"""Child processes that die with their parent.

``shld reproduce`` runs each experiment in a child process, and sweeps run in pool workers. If the
parent is killed (SIGKILL included, which no handler can catch), such a child must not keep running
and writing into a run folder that a later ``--resume`` will use. :func:`die_with_parent` arranges
that from inside the child: on Linux with ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the kernel kills the
child when its parent exits), elsewhere with a daemon thread that polls the parent pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(137)


def die_with_parent(parent: int | None = None, *, interval: float = 0.5) -> None:
    """Make this process exit when its parent ``parent`` (default: the current parent) dies.

    Call it first thing in a child. If the parent is already gone (it died before this call),
    the process exits at once with status 137.
    """
    parent = os.getppid() if parent is None else int(parent)
    if not _prctl_pdeathsig():
        threading.Thread(target=_watch, args=(parent, interval), daemon=True, name="shld-parent-watch").start()
    if os.getppid() != parent:          # the parent died before the death signal was armed
        os._exit(137)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group led by ``pid`` (a child started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


__all__ = ["die_with_parent", "kill_group"]
