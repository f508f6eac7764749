"""The office with two Internet lines: two ISP namespaces between the gateway and the internet.

Topology (namespace keys in brackets)::

    office hosts ── br0 [sw] ── lan0 [gw] wan1 ═ down0 [isp1] up0 ═ isp1 ┐
                                          wan2 ═ down0 [isp2] up0 ═ isp2 ┴ [inet] lo: servers

Address plan (198.51.100.0/24 in /28s; documentation ranges only):

    link 1   gw wan1 198.51.100.1/28    isp1 down0 198.51.100.2/28
    link 2   gw wan2 198.51.100.17/28   isp2 down0 198.51.100.18/28
    uplinks  isp1 up0 198.51.100.33/28 ═ inet 198.51.100.34/28,  isp2 up0 198.51.100.49/28 ═ inet 198.51.100.50/28

    IPv6 (2001:db8::/32; each ISP its own prefix, as an office with two ISPs gets):
    link 1   gw wan1 2001:db8:ff01::1/64  isp1 down0 2001:db8:ff01::2/64, next hop fe80::2 (link-local)
    link 2   gw wan2 2001:db8:ff02::1/64  isp2 down0 2001:db8:ff02::2/64, next hop 2001:db8:ff02::2
    uplinks  isp1 up0 2001:db8:ff11::1 ═ inet 2001:db8:ff11::2,  isp2 up0 2001:db8:ff12::1 ═ inet 2001:db8:ff12::2

gatewayd masquerades per link, so a server sees 198.51.100.1 or 198.51.100.17
(2001:db8:ff01::1 or 2001:db8:ff02::1 over IPv6): the line the connection took
(lab/link_echo.py tells the client). The gateway's main table routes by link 1,
in both families, as a box does before gatewayd starts. `cut_upstream`
makes an ISP silently drop everything it would forward (its line stays up, as
when an ISP's network fails behind a working modem).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.compile import marks
from gatewayd.lab import link_echo
from gatewayd.lab import services as lab_services
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.topology import (
    GATEWAY,
    GW_LAN_MAC,
    GW_LAN_V4,
    GW_LAN_V6,
    INTERNET,
    HostSpec,
    Lab,
    LabError,
)

ISPS = ("isp1", "isp2")
LINK_ECHO_SCRIPT = Path(link_echo.__file__)
ECHO_ADDRESS = "203.0.113.80"  # balanced
PINNED_ECHO_ADDRESS = "203.0.113.81"  # tests pin it to a link
APP_ECHO_ADDRESS = "203.0.113.82"  # found by DNS name: tests pin the app
ECHO_SITE = lab_services.Site("echo", "echo.lab.example", APP_ECHO_ADDRESS)
LISTED_ECHO_ADDRESS = "203.0.113.97"  # tests list its network in a file of destinations
ECHO_ADDRESS_V6 = "2001:db8:100::80"  # balanced over IPv6
ECHO_ADDRESSES = (ECHO_ADDRESS, PINNED_ECHO_ADDRESS, APP_ECHO_ADDRESS, LISTED_ECHO_ADDRESS, ECHO_ADDRESS_V6)
ECHO_PORT = 7000
CUT_TABLE = "lab_cut"

# Weights one:two = ONE_WEIGHT:1; probes at their defaults (every 500 ms, down after 3 silent rounds),
# line two's over IPv6 (only its own IPv6 table reaches them: the main one goes by line one);
# line two uploads at 20 Mbit/s (its own HTB tree), line one at 100.
MULTIWAN_POLICY = """version: 1
interfaces: { lan: lan0 }
links:
  one:
    interface: wan1
    gateway: 198.51.100.2
    gateway6: fe80::2
    upload: 100mbit
    download: 100mbit
    weight: ONE_WEIGHT
    probe: { icmp: [203.0.113.53] }
  two:
    interface: wan2
    gateway: 198.51.100.18
    gateway6: 2001:db8:ff02::2
    upload: 20mbit
    download: 100mbit
    weight: 1
    probe: { tcp: ["[2001:db8:100::53]:53"], dns: ["2001:db8:100::53"] }
groups:
  finance: { members: [192.0.2.130] }
applications:
  echoapp: { name: Echo, category: web, domains: [echo.lab.example] }
classes:
  default: { priority: 3, guaranteed: 10%, limit: 100% }
dns:
  resolvers: [203.0.113.53]  # DNS learning (the echo-app pin) trusts only these
link_pins:
  - { name: measured, destinations: [PINNED/32], links: [one, two] }
  - { name: isp-two-networks, destinations: isp-two.txt, links: two }
  - { name: finance, groups: [finance], links: two }
  - { name: echo-app, apps: [echoapp], links: [two, one] }
"""
ISP_TWO_NETWORKS = "# networks best reached over ISP two\n203.0.113.96/28\n"


@dataclass(frozen=True)
class IspLink:
    key: str  # namespace key
    gateway_interface: str  # on the gateway
    gateway_address: str  # the gateway's address on the link: what servers see
    isp_address: str  # the next hop
    uplink_isp: str  # isp end of the uplink to the internet
    uplink_inet: str  # internet end
    prefix: str
    gateway_address6: str  # the same four, IPv6 (/64 each)
    isp_address6: str  # the ISP's global address on the link
    next_hop6: str  # the policy's gateway6 (isp1: its link-local address)
    uplink_isp6: str
    uplink_inet6: str


LINKS = (
    IspLink("isp1", "wan1", "198.51.100.1", "198.51.100.2", "198.51.100.33", "198.51.100.34", "28",
            "2001:db8:ff01::1", "2001:db8:ff01::2", "fe80::2", "2001:db8:ff11::1", "2001:db8:ff11::2"),
    IspLink("isp2", "wan2", "198.51.100.17", "198.51.100.18", "198.51.100.49", "198.51.100.50", "28",
            "2001:db8:ff02::1", "2001:db8:ff02::2", "2001:db8:ff02::2", "2001:db8:ff12::1", "2001:db8:ff12::2"),
)


class MultiWanLab(Lab):
    """Lab with two ISPs; use as a context manager like Lab."""

    def __init__(self, hosts: Mapping[str, HostSpec] | None = None,
                 sites: Iterable[lab_services.Site] | None = None, start_services: bool = True) -> None:
        super().__init__(hosts, [*lab_services.DEFAULT_SITES.values(), ECHO_SITE] if sites is None else sites,
                         start_services)
        self.echo: subprocess.Popen[bytes] | None = None

    def ns_name(self, key: str) -> str:
        if key in ISPS:
            return f"{self.prefix}{key}"
        return super().ns_name(key)

    def _build_gateway(self) -> None:
        for isp in ISPS:
            self._add_namespace(isp)
        self._sysctl(GATEWAY, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self._sysctl(GATEWAY, "net.netfilter.nf_conntrack_acct=1", required=False)
        # Replies to the gateway's own probes come back on the probed line while the main
        # table points at link 1: strict reverse-path filtering would drop them.
        self._sysctl(GATEWAY, "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2")
        self._ip(GATEWAY, "link", "add", "lan0", "address", GW_LAN_MAC, "type", "veth",
                 "peer", "name", "gw-lan", "netns", self.ns_name("sw"))
        self._attach_to_switch("gw-lan")
        self._ip(GATEWAY, "addr", "add", f"{GW_LAN_V4}/24", "dev", "lan0")
        self._ip(GATEWAY, "-6", "addr", "add", f"{GW_LAN_V6}/64", "dev", "lan0", "nodad")
        self._ip(GATEWAY, "link", "set", "lan0", "up")
        for link in LINKS:
            self._ip(GATEWAY, "link", "add", link.gateway_interface, "type", "veth",
                     "peer", "name", "down0", "netns", self.ns_name(link.key))
            self._ip(GATEWAY, "addr", "add", f"{link.gateway_address}/{link.prefix}", "dev", link.gateway_interface)
            self._ip(GATEWAY, "-6", "addr", "add", f"{link.gateway_address6}/64", "dev", link.gateway_interface,
                     "nodad")
            self._ip(GATEWAY, "link", "set", link.gateway_interface, "up")
            self._sysctl(link.key, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
            self._ip(link.key, "addr", "add", f"{link.isp_address}/{link.prefix}", "dev", "down0")
            self._ip(link.key, "-6", "addr", "add", f"{link.isp_address6}/64", "dev", "down0", "nodad")
            if link.next_hop6.startswith("fe80:"):
                self._ip(link.key, "-6", "addr", "add", f"{link.next_hop6}/64", "dev", "down0", "nodad")
            self._ip(link.key, "link", "set", "down0", "up")
        first = LINKS[0]
        self._ip(GATEWAY, "route", "add", "default", "via", first.isp_address, "dev", first.gateway_interface)
        self._ip(GATEWAY, "-6", "route", "add", "default", "via", first.next_hop6, "dev", first.gateway_interface)

    def _build_internet(self) -> None:
        for link in LINKS:
            self._ip(link.key, "link", "add", "up0", "type", "veth", "peer", "name", link.key,
                     "netns", self.ns_name(INTERNET))
            self._ip(link.key, "addr", "add", f"{link.uplink_isp}/{link.prefix}", "dev", "up0")
            self._ip(link.key, "link", "set", "up0", "up")
            self._ip(link.key, "-6", "addr", "add", f"{link.uplink_isp6}/64", "dev", "up0", "nodad")
            self._ip(link.key, "route", "add", "default", "via", link.uplink_inet)
            self._ip(link.key, "-6", "route", "add", "default", "via", link.uplink_inet6)
            self._ip(INTERNET, "addr", "add", f"{link.uplink_inet}/{link.prefix}", "dev", link.key)
            self._ip(INTERNET, "-6", "addr", "add", f"{link.uplink_inet6}/64", "dev", link.key, "nodad")
            self._ip(INTERNET, "link", "set", link.key, "up")
            # The gateway's address on this line is reached through this ISP only.
            self._ip(INTERNET, "route", "add", f"{link.gateway_address}/32", "via", link.uplink_isp)
            self._ip(INTERNET, "-6", "route", "add", f"{link.gateway_address6}/128", "via", link.uplink_isp6)

    def write_policy(self, one_weight: int = 2) -> Path:
        """The two-line policy (MULTIWAN_POLICY) and its destination file, in the lab's workdir."""
        (self.workdir / "isp-two.txt").write_text(ISP_TWO_NETWORKS)
        path = self.workdir / "multiwan.yaml"
        path.write_text(MULTIWAN_POLICY.replace("ONE_WEIGHT", str(one_weight)).replace("PINNED", PINNED_ECHO_ADDRESS))
        return path

    def start_echo(self, timeout: float = 10.0) -> None:
        """The link_echo server on ECHO_ADDRESSES (port ECHO_PORT)."""
        self._add_server_addresses(ECHO_ADDRESSES)
        listen = [part for address in ECHO_ADDRESSES for part in (address, str(ECHO_PORT))]
        self.echo = self.popen(INTERNET, [sys.executable, str(LINK_ECHO_SCRIPT), "server", *listen],
                               log_name="link_echo.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listening = self.run(INTERNET, ["ss", "-Htln", f"sport = :{ECHO_PORT}"]).stdout
            if listening.count("LISTEN") >= len(ECHO_ADDRESSES):
                return
            time.sleep(0.05)
        raise LabError("link_echo server did not start")

    def cut_upstream(self, isp: str) -> None:
        """The ISP stops forwarding (and answering): its line to the gateway stays up."""
        drop_all = "{ type filter hook forward priority 0; policy drop; }"
        self.run(isp, ["nft", f"add table inet {CUT_TABLE}; add chain inet {CUT_TABLE} forward {drop_all}"])

    def restore_upstream(self, isp: str) -> None:
        self.run(isp, ["nft", f"delete table inet {CUT_TABLE}"])

    def count_links(self, host: str, connections: int, address: str = ECHO_ADDRESS,
                    timeout: float = 60.0) -> dict[str, int]:
        """How many of `connections` new connections left by each gateway address ("failed" for errors)."""
        out = self.run(host, [sys.executable, str(LINK_ECHO_SCRIPT), "count", address, str(ECHO_PORT),
                              str(connections)], timeout=timeout).stdout
        counts: dict[str, int] = json.loads(out)
        return counts

    def hold_connections(self, host: str, connections: int, seconds: float,
                         address: str = ECHO_ADDRESS) -> HeldConnections:
        proc = self.popen(host, [sys.executable, str(LINK_ECHO_SCRIPT), "hold", address, str(ECHO_PORT),
                                 str(connections), str(seconds)], stdout=subprocess.PIPE)
        return HeldConnections(proc, seconds)

    def links_on_wire(self, family: str = "ipv4", port: int = ECHO_PORT) -> list[int]:
        """The link numbers in the ct marks of the gateway's established `family` connections to `port`."""
        out = self.run(GATEWAY, ["conntrack", "-L", "-f", family, "-p", "tcp", "--dport", str(port),
                                 "--state", "ESTABLISHED"], check=False).stdout
        return [marks.link_number_of(int(m)) for m in re.findall(r"mark=(\d+)", out)]

    def hold_across_reweighting(self, daemon: GatewayDaemon, host: str, address: str,
                                family: str = "ipv4") -> tuple[HeldConnections, dict[str, Any], list[int]]:
        """Connections held while a reload rewrites the balance (weights 1:1, then back): the held
        connections, their result, and the sorted link numbers their conntrack entries carry meanwhile."""
        held = self.hold_connections(host, 12, seconds=4, address=address)
        self.write_policy(one_weight=1)
        daemon.reload()
        try:
            on_wire = sorted(self.links_on_wire(family))
            result = held.result()
        finally:
            self.write_policy()
            daemon.reload()
        return held, result, on_wire

    def wait_for_peer(self, host: str, peer: str, seconds: float,
                      address: str = PINNED_ECHO_ADDRESS) -> PeerWatch:
        proc = self.popen(host, [sys.executable, str(LINK_ECHO_SCRIPT), "until", address, str(ECHO_PORT), peer,
                                 str(seconds)], stdout=subprocess.PIPE)
        return PeerWatch(proc, seconds)


class HeldConnections:
    """Long-lived connections pinged until the end: which line each took, which ones died."""

    def __init__(self, proc: subprocess.Popen[bytes], seconds: float) -> None:
        self.proc, self.seconds = proc, seconds
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise LabError("link_echo hold: no connections opened")
        self.opened: list[str] = json.loads(line)["opened"]

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=self.seconds + 30)
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result


class PeerWatch:
    """A client trying new connections until one leaves by the expected line."""

    def __init__(self, proc: subprocess.Popen[bytes], seconds: float) -> None:
        self.proc, self.seconds = proc, seconds
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise LabError("link_echo until: did not start")

    def answered_at(self) -> float | None:
        """Monotonic time (system-wide, so comparable across namespaces) of the first answer via the peer."""
        out, _ = self.proc.communicate(timeout=self.seconds + 30)
        at: float | None = json.loads(out.decode().strip().splitlines()[-1])["at"]
        return at
