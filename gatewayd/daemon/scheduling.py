"""The CPU scheduling the verdict loop runs under, named for the start log line.

systemd/gatewayd.service starts the daemon with SCHED_RR (CPUSchedulingPolicy=rr) and
reset-on-fork, so only the thread that gives verdicts runs real-time: every thread
and child it starts (scrapes, policy builds, applies, health checks) is reset to the
normal policy. The daemon cannot set this itself (the unit keeps CAP_SYS_NICE out of
its bounding set and has RestrictRealtime=yes); it only says what it got, so an
operator can see whether the queued-packet latency figures apply.
"""

from __future__ import annotations

import os

_NAMES = {os.SCHED_OTHER: "other", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle",
          os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
_REAL_TIME = frozenset({os.SCHED_FIFO, os.SCHED_RR})


def describe_scheduling(policy: int, priority: int) -> str:
    """`policy` as sched_getscheduler(2) returns it (SCHED_RESET_ON_FORK or-ed in): "other",
    "rr:1+reset-on-fork", ... The priority is named only where it means something (real-time)."""
    reset_on_fork = bool(policy & os.SCHED_RESET_ON_FORK)
    base = policy & ~os.SCHED_RESET_ON_FORK
    name = _NAMES.get(base, str(base))
    if base in _REAL_TIME:
        name = f"{name}:{priority}"
    return name + ("+reset-on-fork" if reset_on_fork else "")


def current_scheduling() -> str:
    """The calling thread's scheduling (pid 0 is the calling thread on Linux)."""
    return describe_scheduling(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
