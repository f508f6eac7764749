"""Per-host connection caps (`max_connections`) with the real daemon and real traffic, IPv4 and IPv6.

The cap means "N connections to the outside world": a host that holds N of
them is refused the next one (and the refusal is counted), but it still
resolves names through the policy's dns.resolvers, still pings, and still
reaches the router itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gatewayd.lab.gateway import GatewayDaemon, metric_value, running_gatewayd
from gatewayd.lab.services import (
    DEFAULT_SITES,
    DNS_SERVER_V4,
    DNS_SERVER_V6,
    IPERF_SERVER_V4,
    IPERF_SERVER_V6,
)
from gatewayd.lab.topology import GATEWAY, GW_LAN_V4, GW_LAN_V6, INTERNET, HostSpec, Lab
from gatewayd.lab.traffic import Outcome, dns_query, icmp_echo, tcp_connect

pytestmark = pytest.mark.integration

MAX_CONNECTIONS = 3
HOLD_PORT = 7100  # a server that accepts connections and keeps them open
LOOKUPS = 5  # more than the cap: each would have taken a slot before
WAIT_SECONDS = 15.0

POLICY = f"""\
version: 1
interfaces: {{ lan: lan0, wan: wan0, upload: 100mbit, download: 100mbit }}
dns:
  resolvers: [{DNS_SERVER_V4}, "{DNS_SERVER_V6}"]
classes:
  default: {{ priority: 3 }}
groups:
  staff: {{ members: [192.0.2.20, "2001:db8:1::20"] }}
  guest:
    members: [192.0.2.192/28, "2001:db8:1::190/124"]
    max_connections: {MAX_CONNECTIONS}
"""

HOSTS = {
    "staff": HostSpec("192.0.2.20", "2001:db8:1::20", "02:00:00:00:00:20"),
    # one guest per family, so one test's connections never count in the other's
    "guest4": HostSpec("192.0.2.193", "2001:db8:1::193", "02:00:00:00:01:93"),
    "guest6": HostSpec("192.0.2.194", "2001:db8:1::194", "02:00:00:00:01:94"),
    "guest_reload": HostSpec("192.0.2.195", "2001:db8:1::195", "02:00:00:00:01:95"),  # for the SIGHUP test
}

FAMILIES = {  # version -> (guest, server to connect to, resolver, the router's LAN address, rrtype)
    4: ("guest4", IPERF_SERVER_V4, DNS_SERVER_V4, GW_LAN_V4, "A"),
    6: ("guest6", IPERF_SERVER_V6, DNS_SERVER_V6, GW_LAN_V6, "AAAA"),
}

# Accepts on every address of its namespace (IPv4 and IPv6) and holds each connection.
HOLD_SERVER = r"""
import socket, sys, time
server = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
server.settimeout(1)
held = []
print("ready", flush=True)
end = time.monotonic() + 300
while time.monotonic() < end:
    try:
        held.append(server.accept()[0])
    except socket.timeout:
        pass
"""

# Opens `count` connections, prints their outcomes, then keeps them open until killed (60 s at most).
HOLD_CONNECTIONS = r"""
import json, socket, sys, time
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, outcomes = [], []
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    s.settimeout(3)
    try:
        s.connect((address, port))
        held.append(s)
        outcomes.append("ok")
    except OSError as exc:
        outcomes.append(type(exc).__name__)
print(json.dumps(outcomes), flush=True)
time.sleep(60)
"""


def last_line(path: Path, deadline: float) -> str:
    """The last line a background process wrote to its log, waiting for the first one until `deadline`."""
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"{path.name} stayed empty")


@contextmanager
def holding(lab: Lab, host: str, address: str, count: int) -> Iterator[list[str]]:
    """`host` holds `count` connections to the hold server while the block runs; yields their outcomes."""
    log = f"hold-{host}-{address.replace(':', '_')}.log"
    holder = lab.popen(host, [sys.executable, "-c", HOLD_CONNECTIONS, address, str(HOLD_PORT), str(count)],
                       log_name=log)
    try:
        yield json.loads(last_line(lab.workdir / log, time.monotonic() + WAIT_SECONDS))
    finally:
        holder.terminate()
        holder.wait(WAIT_SECONDS)


def refused(daemon: GatewayDaemon, protocol: str) -> float:
    return metric_value(daemon.metrics(), "gatewayd_connections_refused_total", group="guest", protocol=protocol)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon]]:
    policy = tmp_path_factory.mktemp("caps") / "caps.yaml"
    policy.write_text(POLICY)
    with Lab(hosts=HOSTS) as lab:
        for namespace in (INTERNET, GATEWAY):  # a server out there, and one on the router itself
            log = f"hold-server-{namespace}.log"
            lab.popen(namespace, [sys.executable, "-c", HOLD_SERVER, str(HOLD_PORT)], log_name=log)
            assert last_line(lab.workdir / log, time.monotonic() + WAIT_SECONDS) == "ready"
        with running_gatewayd(lab, policy) as daemon:
            yield lab, daemon


@pytest.mark.parametrize("version", sorted(FAMILIES))
def test_a_host_at_its_cap_still_resolves_names_and_its_next_connection_is_refused(
        capped: tuple[Lab, GatewayDaemon], version: int) -> None:
    lab, daemon = capped
    guest, server, resolver, router, rrtype = FAMILIES[version]
    refused_tcp, refused_udp = refused(daemon, "tcp"), refused(daemon, "udp")
    with holding(lab, guest, server, MAX_CONNECTIONS) as outcomes:
        assert outcomes == ["ok"] * MAX_CONNECTIONS

        # At the cap: lookups to the policy's resolver are not connections it counts, over UDP or TCP...
        names = [site.hostname for site in DEFAULT_SITES.values()][:LOOKUPS]
        for name in names:
            answer = dns_query(lab, guest, name, rrtype, server=resolver)
            assert (answer.status, bool(answer.addresses)) == ("NOERROR", True), f"{name} over UDP: {answer}"
        assert dns_query(lab, guest, names[0], rrtype, server=resolver, tcp=True).addresses
        # ...nor is a ping, nor a connection to the router itself.
        assert icmp_echo(lab, guest, server) == Outcome.OK
        assert tcp_connect(lab, guest, router, HOLD_PORT).outcome == Outcome.OK

        # A fourth connection to the outside is refused, and counted as TCP; no lookup was refused.
        assert tcp_connect(lab, guest, server, HOLD_PORT).outcome in (Outcome.RESET, Outcome.REFUSED)
        assert refused(daemon, "tcp") >= refused_tcp + 1
        assert refused(daemon, "udp") == refused_udp


def test_a_host_of_a_group_without_a_cap_opens_as_many_as_it_likes(capped: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = capped
    with holding(lab, "staff", IPERF_SERVER_V4, MAX_CONNECTIONS + 2) as outcomes:
        assert outcomes == ["ok"] * (MAX_CONNECTIONS + 2)


def test_a_host_at_its_cap_stays_at_its_cap_across_a_reload_and_its_refusals_stay_counted(
        capped: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = capped
    with holding(lab, "guest_reload", IPERF_SERVER_V4, MAX_CONNECTIONS) as outcomes:
        assert outcomes == ["ok"] * MAX_CONNECTIONS
        assert tcp_connect(lab, "guest_reload", IPERF_SERVER_V4, HOLD_PORT).outcome in (Outcome.RESET,
                                                                                         Outcome.REFUSED)
        refused_before = refused(daemon, "tcp")
        assert refused_before >= 1

        daemon.reload()  # the same policy: the table is swapped, the cap's counts must survive it

        assert refused(daemon, "tcp") == refused_before  # the named counter kept its value
        # Still at the cap: before the fix, the swap emptied the set and the host had MAX_CONNECTIONS more.
        assert tcp_connect(lab, "guest_reload", IPERF_SERVER_V4, HOLD_PORT).outcome in (Outcome.RESET,
                                                                                         Outcome.REFUSED)
        assert refused(daemon, "tcp") == refused_before + 1
