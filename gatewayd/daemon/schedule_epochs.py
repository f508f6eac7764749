"""A new rules epoch just after each schedule boundary, so open flows see a schedule start or end.

Decided flows skip the policy rules until the epoch changes (compile/decision_epoch.py); a
reload changes it with the table swap, and this watch changes it when the clock crosses a
minute at which a rule's schedule starts or ends. The target is kept in wall-clock time
(local: nft's `meta hour` is local too) and recomputed after each epoch, so a daylight-saving
change or a clock step moves the next boundary with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from gatewayd.apply.nft import NftError
from gatewayd.compile.schedule import schedule_boundaries, seconds_to_next_boundary
from gatewayd.policy.model import Policy

log = logging.getLogger("gatewayd.daemon")

# After the boundary, not at it: the rules compare the packet's time with the schedule, so the new
# epoch must start once packets carry a time past the boundary. Well inside the second the issue allows.
SETTLE_SECONDS = 0.1


def seconds_into_local_day(wall_time: float) -> float:
    local = datetime.fromtimestamp(wall_time)
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


class ScheduleEpochs:
    def __init__(self, advance: Callable[[], int], wall_clock: Callable[[], float] = time.time) -> None:
        self._advance = advance  # starts a new epoch in the kernel, returns its number
        self._wall_clock = wall_clock
        self._boundaries: frozenset[int] = frozenset()
        self._due_at: float | None = None  # wall-clock time of the next epoch

    def adopt(self, policy: Policy) -> None:
        """The running policy changed: the boundaries of the schedules its rules use."""
        used = {rule.schedule for rule in policy.rules if rule.schedule}
        self._boundaries = schedule_boundaries(policy.schedules[name] for name in sorted(used))
        self._plan_next()

    def seconds_to_next(self) -> float | None:
        if self._due_at is None:
            return None
        return max(0.0, self._due_at - self._wall_clock())

    def poll(self) -> None:
        if self._due_at is None or self._wall_clock() < self._due_at:
            return
        try:
            epoch = self._advance()
        except (NftError, OSError) as exc:  # the running rules stay, flows keep their verdicts a while
            log.warning("event=schedule_epoch_failed error=%r", str(exc))
        else:
            log.info("event=schedule_epoch epoch=%d", epoch)
        self._plan_next()

    def _plan_next(self) -> None:
        now = self._wall_clock()
        until = seconds_to_next_boundary(self._boundaries, seconds_into_local_day(now))
        self._due_at = None if until is None else now + until + SETTLE_SECONDS
