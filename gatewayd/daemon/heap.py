"""Keep the daemon's C heap small: few malloc arenas, and freed memory given back after a build.

CPython keeps small objects in its own pools, but anything over 512 bytes
(lists of rules, the YAML parser's buffers, libnftables' ruleset text) comes
from glibc's malloc. glibc gives every thread that allocates its own arena
(up to 8 per core), and keeps what a build freed in it: the policy builds
in a worker thread and every metrics scrape runs in a thread of its own, so
memory freed there stayed counted in the daemon's RSS. Both calls are glibc
only; on another libc (musl) they are skipped and nothing changes.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("gatewayd.heap")

M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h
ARENAS = 2  # the main loop's and one for every other thread: builds and scrapes are rare


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)  # the symbols already in the process: its libc among them
    except OSError:
        return None


def limit_arenas() -> None:
    """Call before any thread starts: later threads share ARENAS arenas instead of one each."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, ARENAS)


def release_freed_heap() -> None:
    """Give the heap pages a policy build freed back to the kernel (after a start or a reload)."""
    libc = _libc()
    malloc_trim = getattr(libc, "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
