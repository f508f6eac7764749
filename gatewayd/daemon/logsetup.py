"""Structured logs: one event per line, key=value, with a rate limit for per-flow events."""

from __future__ import annotations

import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        line = f"ts={stamp} level={record.levelname.lower()} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += " exception=" + repr(self.formatException(record.exc_info))
        return line


class RateLimitFilter(logging.Filter):
    """Lets at most `per_second` records a second through per logger; counts what it drops."""

    def __init__(self, per_second: float = 20.0) -> None:
        super().__init__()
        self.per_second = per_second
        self._window_start = 0.0
        self._in_window = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            if self.suppressed:
                record.msg = f"{record.msg} suppressed_before={self.suppressed}"
                self.suppressed = 0
            self._window_start = now
            self._in_window = 0
        self._in_window += 1
        if self._in_window > self.per_second:
            self.suppressed += 1
            return False
        return True


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' debug output (every netlink message) would drown our own events.
    for noisy in ("pyroute2", "urllib3"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    # Flow events can come thousands a second; keep the log readable.
    logging.getLogger("gatewayd.flow").addFilter(RateLimitFilter())
