"""Log each host the kernel puts on the guard's blocklist, once, without flooding the log.

The kernel adds scanners to the blocklist sets by itself; a thread of its own
(`start`) polls once a second and compares the sets with what it saw last time.
Not on the verdict loop's tick: the four set dumps cost ~0.3 ms of kernel time
(the sets' 64k-bucket hash tables are walked even when empty; through
libnftables it was ~0.6 ms median, 6 ms at worst: bench/loop_work.py), and the
thread holds the GIL only for the few microseconds of parsing around them.
A host is new when it was not there before, or when its expiry moved later
(it was released and caught again). At most `max_lines` hosts are logged per
`period_seconds`; the rest are counted in one `event=blocklist_log_suppressed`
line, so a scan from hundreds of hosts costs a few log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gatewayd.apply.guard_state import BlockedHost

log = logging.getLogger("gatewayd.guard")

POLL_INTERVAL_SECONDS = 1.0
DEFAULT_MAX_LINES = 20
DEFAULT_PERIOD_SECONDS = 60.0


class BlocklistWatch:
    def __init__(self, read: Callable[[], list[BlockedHost]], max_lines: int = DEFAULT_MAX_LINES,
                 period_seconds: float = DEFAULT_PERIOD_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`read`: the blocklist now; it runs on the verdict loop, so a cheap one
        (apply/guard_state.py blocklist_by_netlink)."""
        self.max_lines = max_lines
        self.period_seconds = period_seconds
        self.clock = clock
        self.read = read
        self._expiry: dict[str, float] = {}  # address -> when (clock) it leaves the blocklist
        self._last_poll = float("-inf")
        self._period_start = float("-inf")
        self._lines_in_period = 0
        self._suppressed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, enabled: Callable[[], bool]) -> None:
        """Poll in a thread of its own until `stop`; `enabled` says whether the running plan has a blocklist."""
        def run() -> None:
            while not self._stop.wait(POLL_INTERVAL_SECONDS):
                self.poll(enabled=enabled())

        self._thread = threading.Thread(target=run, name="blocklist-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def poll(self, enabled: bool = True) -> None:
        now = self.clock()
        if not enabled or now - self._last_poll < POLL_INTERVAL_SECONDS:
            return
        self._last_poll = now
        try:
            hosts = self.read()
        except Exception as exc:  # a failed read is retried on the next tick, never fatal
            log.warning("event=blocklist_read_failed error=%r", str(exc))
            return
        current: dict[str, float] = {}
        for host in hosts:
            expiry = now + host.expires_seconds
            previous = self._expiry.get(host.address)
            # Expiry only counts down, so a later one (beyond rounding) means it was caught again.
            if previous is None or expiry > previous + 2 * POLL_INTERVAL_SECONDS:
                self._report(host, now)
            current[host.address] = expiry
        self._expiry = current
        self._flush_suppressed(now)

    def _report(self, host: BlockedHost, now: float) -> None:
        if now - self._period_start >= self.period_seconds:
            self._flush_suppressed(now, force=True)
            self._period_start = now
            self._lines_in_period = 0
        if self._lines_in_period < self.max_lines:
            self._lines_in_period += 1
            expires_at = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() + host.expires_seconds))
            log.warning("event=host_blocklisted address=%s reason=%s expires_in=%ds expires_at=%s",
                        host.address, host.reason, host.expires_seconds, expires_at)
        else:
            self._suppressed += 1

    def _flush_suppressed(self, now: float, force: bool = False) -> None:
        if self._suppressed and (force or now - self._period_start >= self.period_seconds):
            log.warning("event=blocklist_log_suppressed hosts=%d period_seconds=%d",
                        self._suppressed, self.period_seconds)
            self._suppressed = 0
