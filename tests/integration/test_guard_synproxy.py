"""SYN proxy for a service exposed to the WAN: real clients get through, a SYN flood never reaches the server."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest

from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.topology import INTERNET, Lab

pytestmark = pytest.mark.integration

SERVER = OFFICE_HOSTS["service"].ipv4  # an office server the policy exposes on tcp/8080
PORT = 8080
SPOOFED = "198.51.100.77"  # on the WAN link, but nobody has it: the flood's forged source
ECHO = ("import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('{SERVER}', {PORT})); s.listen(64); s.settimeout(60)\n"
        "while True:\n    c, _ = s.accept(); c.settimeout(5); c.sendall(c.recv(64)); c.close()\n")
CLIENT = (f"import socket\nc=socket.create_connection(('{SERVER}', {PORT}), timeout=5)\n"
          "c.sendall(b'hello through the proxy'); print(c.recv(64).decode())\n")


@pytest.fixture
def exposed() -> Iterator[tuple[Lab, GatewayDaemon]]:
    assert f"syn_proxy: [{PORT}]" in OFFICE_POLICY.read_text(), "office.yaml no longer exposes tcp/8080"
    with Lab(hosts=OFFICE_HOSTS) as lab:
        # Count the SYNs that reach the server's own host.
        lab.run("service", ["nft", "-f", "-"], input=(
            "table inet probe {\n chain input {\n  type filter hook input priority 0;\n"
            f"  tcp dport {PORT} tcp flags syn counter\n }}\n}}\n"))
        lab.popen("service", [sys.executable, "-c", ECHO], log_name="echo.log")
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        try:
            yield lab, daemon
        finally:
            daemon.stop()


def syns_at_server(lab: Lab) -> int:
    out = lab.run("service", ["nft", "list", "table", "inet", "probe"]).stdout
    return int(re.search(r"counter packets (\d+)", out).group(1))


def test_syn_flood_to_an_exposed_service_stops_at_the_gateway(exposed: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = exposed
    time.sleep(0.3)  # the echo server binds
    first = lab.run(INTERNET, [sys.executable, "-c", CLIENT], timeout=15)
    assert first.stdout.strip() == "hello through the proxy"
    before = syns_at_server(lab)
    lab.run(INTERNET, ["hping3", "-q", "-S", "-p", str(PORT), "-a", SPOOFED, "-c", "3000", "-i", "u200", SERVER],
            timeout=30, check=False)
    reached = syns_at_server(lab) - before
    assert reached == 0, f"{reached} forged SYNs reached the server"
    proxied = metric_value(daemon.metrics(), "gatewayd_guard_syn_proxy_packets_total")
    assert proxied >= 2500, f"the proxy answered only {proxied} packets"
    # Real clients still get through during and after the flood.
    again = lab.run(INTERNET, [sys.executable, "-c", CLIENT], timeout=15)
    assert again.stdout.strip() == "hello through the proxy"
    assert syns_at_server(lab) - before == 1  # the one real handshake, replayed by the proxy
