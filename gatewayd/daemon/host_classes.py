"""Make a limited host's HTB classes when it first sends or receives a packet.

The kernel notes such hosts in @hosts_waiting_vN (compile/qos_rules.py); the
reactor calls `poll` on its tick and this makes their classes, at most
MAX_HOSTS_PER_POLL at a time so verdicts keep flowing when a whole office
switches on at once. Until its classes exist a host is shaped with its
group (not yet by its own limits); the delay is one poll interval plus the
class creation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gatewayd.compile.plan import Plan

log = logging.getLogger("gatewayd.tc")

POLL_INTERVAL_SECONDS = 0.1
MAX_HOSTS_PER_POLL = 500  # ~0.5 s of class creation next to 5,000 existing classes


class HostClassWatch:
    def __init__(self, make: Callable[[Plan, list[str]], int], read: Callable[[], list[str]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`read`: the waiting hosts now; it runs on the verdict loop every POLL_INTERVAL_SECONDS,
        so a cheap one (apply/host_sets.py waiting_hosts_by_netlink, ~30 us)."""
        self.make = make
        self.clock = clock
        self.read = read
        self._last_poll = float("-inf")
        self.made_total = 0

    @staticmethod
    def wanted(plan: Plan | None) -> bool:
        return plan is not None and bool(plan.host_slots.hosts)

    def seconds_to_next_poll(self, plan: Plan | None) -> float | None:
        if not self.wanted(plan):
            return None
        return max(0.0, self._last_poll + POLL_INTERVAL_SECONDS - self.clock())

    def poll(self, plan: Plan | None) -> None:
        now = self.clock()
        if plan is None or not self.wanted(plan) or now - self._last_poll < POLL_INTERVAL_SECONDS:
            return
        self._last_poll = now
        try:
            waiting = self.read()[:MAX_HOSTS_PER_POLL]
            if not waiting:
                return
            started = time.perf_counter()
            added = self.make(plan, waiting)
        except Exception as exc:  # retried on the next poll: the hosts stay in the waiting set
            log.warning("event=host_classes_failed error=%r", str(exc))
            return
        self.made_total += added
        log.info("event=host_classes_made hosts=%d classes=%d seconds=%.3f", len(waiting), added,
                 time.perf_counter() - started)
