"""Answer an ARP claim of the gateway's address with the truth, at once.

The guard (compile/guard.py, arp_guard) drops any frame that claims one of the
gateway's own addresses, so the gateway's neighbour table stays right. But on
a plain switch the LAN hosts hear a broadcast claim too, and a host that takes
it sends everything for the internet to the attacker (until its entry ages
out, tens of seconds). Only the gateway can correct them: when the claims
counter moves, it broadcasts a gratuitous ARP for each of its LAN addresses,
which Linux hosts take even within the neighbour locktime that would refuse a
plain reply (apply/arp_announce.py). A thread of its own reads the counter
every POLL_INTERVAL_SECONDS (one netlink dump, tens of microseconds), so a
poisoned host is repaired within a fraction of a second; announcements are
rate-limited (MIN_ANNOUNCE_INTERVAL_SECONDS), so an attacker claiming
continuously makes the gateway send at most a few frames per second.
IPv6 (forged neighbour advertisements) is not covered here.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from gatewayd.apply import rtnl_dump
from gatewayd.apply.arp_announce import announce
from gatewayd.apply.counter_netlink import CounterReader
from gatewayd.compile.kernel_names import GATEWAY_CLAIMS_COUNTER, GUARD_TABLE_NAME, NETDEV
from gatewayd.compile.plan import Plan

log = logging.getLogger("gatewayd.guard")

POLL_INTERVAL_SECONDS = 0.2
MIN_ANNOUNCE_INTERVAL_SECONDS = 0.5
LOG_PERIOD_SECONDS = 60.0

AddressesByInterface = Mapping[str, Sequence[ipaddress.IPv4Address]]


class GatewayArpDefence:
    def __init__(self, read_claims: Callable[[], int | None], addresses: Callable[[], AddressesByInterface],
                 send: Callable[[str, Sequence[ipaddress.IPv4Address]], int],
                 count_announced: Callable[[int], None] = lambda _n: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`read_claims`: the claims counter now, None when the running plan has no ARP guard;
        `addresses`: the gateway's IPv4 addresses on each LAN interface; `send`: announce them
        on one interface, returning the frames sent; `count_announced`: the metric."""
        self.read_claims = read_claims
        self.addresses = addresses
        self.send = send
        self.count_announced = count_announced
        self.clock = clock
        self._seen: int | None = None  # the counter at the last poll; None until a first reading
        self._last_announce = float("-inf")
        self._unanswered = 0  # claims seen while the rate limit held announcements back
        self._logged_at = float("-inf")
        self._claims_since_log = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(POLL_INTERVAL_SECONDS):
                self.poll()

        self._thread = threading.Thread(target=run, name="gateway-arp-defence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def poll(self) -> int:
        """Announce if the gateway was claimed since the last poll; the frames sent."""
        try:
            claims = self.read_claims()
        except Exception as exc:  # retried on the next poll, never fatal
            log.warning("event=gateway_claims_read_failed error=%r", str(exc))
            return 0
        if claims is None:
            self._seen = None
            return 0
        if self._seen is None:
            self._seen = claims  # the first reading is the baseline: claims before it are old news
            return 0
        # A counter that went down was recreated (the guard came back after a policy without it).
        new = claims - self._seen if claims >= self._seen else claims
        self._seen = claims
        self._unanswered += new
        if not self._unanswered:
            return 0
        now = self.clock()
        if now - self._last_announce < MIN_ANNOUNCE_INTERVAL_SECONDS:
            return 0
        sent = self._announce()
        self._last_announce = now
        self._log(now, self._unanswered, sent)
        self._unanswered = 0
        return sent

    def _announce(self) -> int:
        sent = 0
        try:
            for interface, addresses in self.addresses().items():
                if addresses:
                    sent += self.send(interface, addresses)
        except OSError as exc:
            log.warning("event=gateway_announce_failed error=%r", str(exc))
        if sent:
            self.count_announced(sent)
        return sent

    def _log(self, now: float, claims: int, sent: int) -> None:
        self._claims_since_log += claims
        if now - self._logged_at >= LOG_PERIOD_SECONDS:
            log.warning("event=gateway_address_claimed claims=%d announced=%d reason=\"a LAN host claims the "
                        "gateway's address (ARP spoofing); the guard drops it and the gateway re-announced "
                        "its own MAC\"", self._claims_since_log, sent)
            self._logged_at = now
            self._claims_since_log = 0


def lan_ipv4_addresses(lan: Sequence[str]) -> dict[str, list[ipaddress.IPv4Address]]:
    found: dict[str, list[ipaddress.IPv4Address]] = {}
    for name in lan:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            continue  # not there (yet): nothing to announce on it
        found[name] = [address for address in rtnl_dump.interface_addresses(index)
                       if isinstance(address, ipaddress.IPv4Address)]
    return found


class KernelGatewayArpDefence(GatewayArpDefence):
    """The defence on the running plan: its guard's claims counter and its LAN interfaces."""

    def __init__(self, current_plan: Callable[[], Plan | None], count_announced: Callable[[int], None]) -> None:
        self.current_plan = current_plan
        self.reader = CounterReader()
        super().__init__(self._claims, self._addresses, announce, count_announced)

    def _guarded(self) -> Plan | None:
        plan = self.current_plan()
        security = plan.guard.security if plan is not None else None
        return plan if security is not None and security.bindings is not None else None

    def _claims(self) -> int | None:
        if self._guarded() is None:
            return None
        return self.reader.packets(NETDEV, GUARD_TABLE_NAME).get(GATEWAY_CLAIMS_COUNTER)

    def _addresses(self) -> AddressesByInterface:
        plan = self._guarded()
        return lan_ipv4_addresses(plan.policy.interfaces.lan) if plan is not None else {}

    def stop(self) -> None:
        super().stop()
        self.reader.close()
