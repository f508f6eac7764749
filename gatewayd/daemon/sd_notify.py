"""Talk to systemd through its notify socket (sd_notify(3)), without libsystemd.

The protocol is one datagram of newline-separated KEY=VALUE lines to the
AF_UNIX socket named in $NOTIFY_SOCKET ("@..." names the abstract namespace).
Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("gatewayd.systemd")


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        # Ping at half the period systemd waits, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval: float | None = (
            int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() and for_us else None)
        self._next_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str | int) -> None:
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self._address)
        except OSError as exc:  # systemd gone or socket unreadable: never fatal for the daemon
            log.warning("event=notify_failed error=%r", str(exc))

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def reloading(self) -> None:
        self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def stopping(self) -> None:
        self.send(STOPPING=1)

    def seconds_to_next_ping(self, now: float) -> float | None:
        if self.watchdog_interval is None:
            return None
        return max(0.0, self._next_ping - now)

    def ping_if_due(self, now: float) -> None:
        """Called from the main loop only, so a stuck loop stops the pings and systemd restarts us."""
        if self.watchdog_interval is not None and now >= self._next_ping:
            self.send(WATCHDOG=1)
            self._next_ping = now + self.watchdog_interval
