"""Head office and a branch: two gateways joined over an emulated Internet, a WireGuard tunnel between.

Topology (namespace keys in brackets)::

    [hqsrv] eth0 ═ lan0 [gw] wan0 ═ hq0 [inet] br0 ═ up0 [modem] down0 ═ wan0 [brgw] lan0 ═ eth0 [brhost]
                           wgh<N> ◀───── WireGuard (wireguard-go, UDP 51820) ─────▶ wgb<N>

Address plan (documentation ranges only):

    head office LAN  192.0.2.0/24       gw lan0 .1, hqsrv .20 (ERP on 8443 and 8444, iperf3)
    head office WAN  198.51.100.0/28    gw wan0 .1, inet hq0 .2
    branch line      198.51.100.16/28   brgw wan0 .17, modem down0 .18
    modem uplink     198.51.100.48/28   modem up0 .49, inet br0 .50
    tunnel           198.51.100.32/28   gw wgh<N> .33, brgw wgb<N> .34 (N: the lab's number)
    branch LAN       203.0.113.128/26   brgw lan0 .129, brhost .130
    internet server  203.0.113.100      on inet's lo (iperf3)

The modem is the branch's real line: a token bucket at LINE_RATE with a deep
buffer (LINE_BUFFER_MS), as DSL/cable modems have; the branch gateway shapes
just below it, so with gatewayd the queue builds in gatewayd's classes and
not in the modem. The test kernel has no WireGuard module: wireguard-go
(userspace, a tun device) stands in, as WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD allows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gatewayd.lab import link_echo
from gatewayd.lab.topology import GATEWAY, INTERNET, Lab, LabError
from gatewayd.lab.traffic import iperf3

HQ_SERVER, MODEM, BRANCH_GATEWAY, BRANCH_HOST = "hqsrv", "modem", "brgw", "brhost"
EXTRA_KEYS = (HQ_SERVER, MODEM, BRANCH_GATEWAY, BRANCH_HOST)
HQ_SERVER_ADDRESS = "192.0.2.20"
ERP_PORT, ERP_BULK_PORT = 8443, 8444
INTERNET_SERVER = "203.0.113.100"
BULK_PORT = 5201
WG_PORT = 51820
LINE_RATE = "20mbit"
LINE_BUFFER_MS = 200
LINK_ECHO_SCRIPT = Path(link_echo.__file__)
WIREGUARD_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}

# Inner traffic shaped on the tunnel at half the branch's upload; ERP first inside; the tunnel's
# outer UDP flow first on the WAN, guaranteed more than the tunnel's share. Both offices classify
# alike; each names its own WAN rates and the networks at the far end of its tunnel.
SHARED_POLICY = """applications:
  erp: { name: Company ERP, category: erp-crm-oa, addresses: [192.0.2.20/32], ports: [tcp/8443, tcp/8444] }
classes:
  tunnel: { priority: 0, guaranteed: 55%, limit: 100% }
  business: { priority: 1, guaranteed: 30%, limit: 100% }
  default: { priority: 4, guaranteed: 15%, limit: 100% }
rules:
  - { name: erp, apps: [erp], class: business }
"""
BRANCH_POLICY = f"""version: 1
interfaces: {{ lan: lan0, wan: wan0, upload: 19mbit, download: 100mbit }}
{SHARED_POLICY}tunnels:
  hq: {{ interface: TUNNEL_INTERFACE, networks: [192.0.2.0/24], share: 50%, port: 51820, class: tunnel }}
"""
HQ_POLICY = f"""version: 1
interfaces: {{ lan: lan0, wan: wan0, upload: 100mbit, download: 100mbit }}
{SHARED_POLICY}tunnels:
  branch: {{ interface: TUNNEL_INTERFACE, networks: [203.0.113.128/26], share: 50%, port: 51820, class: tunnel }}
"""


class BranchLab(Lab):
    """Use as a context manager; `branch_gateway` runs a GatewayDaemon in the branch's gateway."""

    def __init__(self) -> None:
        super().__init__(hosts={}, sites=(), start_services=False)
        self.tunnel_interfaces: dict[str, str] = {}

    def policy(self, key: str) -> Path:
        """The gateway's policy (GATEWAY: head office, BRANCH_GATEWAY: branch), written to the workdir."""
        text = (HQ_POLICY if key == GATEWAY else BRANCH_POLICY).replace("TUNNEL_INTERFACE", self.tunnel_interfaces[key])
        path = self.workdir / f"{key}.yaml"
        path.write_text(text)
        return path

    def ns_name(self, key: str) -> str:
        if key in EXTRA_KEYS:
            return f"{self.prefix}{key}"
        return super().ns_name(key)

    def _build_switch(self) -> None:
        # No office switch here: this first build step makes the namespaces the default lab lacks.
        for key in EXTRA_KEYS:
            self._add_namespace(key)

    def _veth(self, left: str, left_name: str, left_address: str, right: str, right_name: str,
              right_address: str) -> None:
        self._ip(left, "link", "add", left_name, "type", "veth", "peer", "name", right_name,
                 "netns", self.ns_name(right))
        for key, name, address in ((left, left_name, left_address), (right, right_name, right_address)):
            self._ip(key, "addr", "add", address, "dev", name)
            self._ip(key, "link", "set", name, "up")

    def _build_gateway(self) -> None:
        for key in (GATEWAY, INTERNET, MODEM, BRANCH_GATEWAY):
            self._sysctl(key, "net.ipv4.ip_forward=1")
        self._veth(HQ_SERVER, "eth0", f"{HQ_SERVER_ADDRESS}/24", GATEWAY, "lan0", "192.0.2.1/24")
        self._veth(GATEWAY, "wan0", "198.51.100.1/28", INTERNET, "hq0", "198.51.100.2/28")
        self._veth(BRANCH_GATEWAY, "wan0", "198.51.100.17/28", MODEM, "down0", "198.51.100.18/28")
        self._veth(MODEM, "up0", "198.51.100.49/28", INTERNET, "br0", "198.51.100.50/28")
        self._veth(BRANCH_HOST, "eth0", "203.0.113.130/26", BRANCH_GATEWAY, "lan0", "203.0.113.129/26")
        for key, via in ((HQ_SERVER, "192.0.2.1"), (GATEWAY, "198.51.100.2"), (BRANCH_GATEWAY, "198.51.100.18"),
                         (MODEM, "198.51.100.50"), (BRANCH_HOST, "203.0.113.129")):
            self._ip(key, "route", "add", "default", "via", via)
        self._ip(MODEM, "route", "add", "203.0.113.128/26", "via", "198.51.100.17")
        for network in ("198.51.100.16/28", "203.0.113.128/26"):
            self._ip(INTERNET, "route", "add", network, "via", "198.51.100.49")
        self._ip(INTERNET, "addr", "add", f"{INTERNET_SERVER}/32", "dev", "lo")
        self._sysctl(GATEWAY, "net.netfilter.nf_conntrack_acct=1", required=False)
        self._sysctl(BRANCH_GATEWAY, "net.netfilter.nf_conntrack_acct=1", required=False)
        # The branch's line: the modem's upload queue, deep as consumer modems' are.
        self._ip(MODEM, "link", "set", "up0", "txqueuelen", "10000")
        self.run(MODEM, ["tc", "qdisc", "add", "dev", "up0", "root", "tbf", "rate", LINE_RATE, "burst", "32kb",
                         "latency", f"{LINE_BUFFER_MS}ms"])

    def _build_internet(self) -> None:
        self._tunnel()

    def _tunnel(self) -> None:
        # wireguard-go's control socket is /var/run/wireguard/NAME.sock, shared by every namespace:
        # the names must be unique on the machine, not only in the namespace.
        number = "".join(c for c in self.prefix if c.isdigit())
        self.tunnel_interfaces = {GATEWAY: f"wgh{number}", BRANCH_GATEWAY: f"wgb{number}"}
        keys = {}
        for key in (GATEWAY, BRANCH_GATEWAY):
            private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
            public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                                    check=True).stdout.strip()
            (self.workdir / f"{key}.wgkey").write_text(private + "\n")
            os.chmod(self.workdir / f"{key}.wgkey", 0o600)
            keys[key] = public
            self.popen(key, ["wireguard-go", "-f", self.tunnel_interfaces[key]], log_name=f"wireguard-{key}.log",
                       env={**os.environ, **WIREGUARD_ENV})
        for key, address, peer, endpoint, allowed in (
                (GATEWAY, "198.51.100.33/28", BRANCH_GATEWAY, "198.51.100.17", "203.0.113.128/26,198.51.100.34/32"),
                (BRANCH_GATEWAY, "198.51.100.34/28", GATEWAY, "198.51.100.1", "192.0.2.0/24,198.51.100.33/32")):
            wg = self.tunnel_interfaces[key]
            self._wait_for_interface(key, wg)
            self.run(key, ["wg", "set", wg, "listen-port", str(WG_PORT), "private-key",
                           str(self.workdir / f"{key}.wgkey"), "peer", keys[peer], "endpoint",
                           f"{endpoint}:{WG_PORT}", "allowed-ips", allowed, "persistent-keepalive", "5"])
            self._ip(key, "addr", "add", address, "dev", wg)
            self._ip(key, "link", "set", wg, "up")
        # What wg-quick would add from AllowedIPs.
        self._ip(GATEWAY, "route", "add", "203.0.113.128/26", "dev", self.tunnel_interfaces[GATEWAY])
        self._ip(BRANCH_GATEWAY, "route", "add", "192.0.2.0/24", "dev", self.tunnel_interfaces[BRANCH_GATEWAY])

    def _wait_for_interface(self, key: str, name: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(key, ["ip", "link", "show", name], check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise LabError(f"{name} did not appear in {key} (wireguard-go missing? run ./scripts/setup)")

    def start_servers(self, timeout: float = 10.0) -> None:
        """ERP (an echo on 8443, iperf3 on 8444) and bulk iperf3 at head office; iperf3 on the internet."""
        self.popen(HQ_SERVER, [sys.executable, str(LINK_ECHO_SCRIPT), "server", HQ_SERVER_ADDRESS, str(ERP_PORT)],
                   log_name="erp_echo.log")
        for key, address, port in ((HQ_SERVER, HQ_SERVER_ADDRESS, ERP_BULK_PORT),
                                   (HQ_SERVER, HQ_SERVER_ADDRESS, BULK_PORT), (INTERNET, INTERNET_SERVER, BULK_PORT)):
            self.popen(key, ["iperf3", "-s", "-B", address, "-p", str(port)], log_name=f"iperf3-{key}-{port}.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hq = self.run(HQ_SERVER, ["ss", "-Htln"]).stdout
            inet = self.run(INTERNET, ["ss", "-Htln"]).stdout
            if all(f":{p}" in hq for p in (ERP_PORT, ERP_BULK_PORT, BULK_PORT)) and f":{BULK_PORT}" in inet:
                return
            time.sleep(0.05)
        raise LabError("servers did not start")

    def branch_gateway(self) -> BranchGatewayRunner:
        return BranchGatewayRunner(self)

    def erp_rtt(self, rounds: int = 100, seconds: float = 30.0) -> dict[str, float]:
        """ERP round trips from the branch host to head office: at most `rounds`, within `seconds`."""
        out = self.run(BRANCH_HOST, [sys.executable, str(LINK_ECHO_SCRIPT), "rtt", HQ_SERVER_ADDRESS, str(ERP_PORT),
                                     str(rounds), f"{seconds:g}"], timeout=seconds + 20).stdout
        result: dict[str, float] = json.loads(out)
        return result

    def erp_rtt_under_load(self, seconds: float, rounds: int = 100) -> dict[str, float]:
        """ERP round trips while `bulk` saturates the tunnel and the line: from 2 s in (the queues
        fill) to 2 s before the bulk ends, so every round is under load."""
        bulk = self.bulk(seconds)
        try:
            time.sleep(2.0)
            return self.erp_rtt(rounds, seconds=seconds - 4.0)
        finally:
            for process in bulk:
                process.wait(timeout=seconds + 30)

    def erp_rate(self, bitrate_bps: int, seconds: float = 4.0) -> float:
        """An ERP transfer asking for `bitrate_bps` (iperf3 to the ERP's second port): received bit/s."""
        return iperf3(self, BRANCH_HOST, HQ_SERVER_ADDRESS, seconds=seconds, bitrate=bitrate_bps, port=ERP_BULK_PORT)

    def bulk(self, seconds: float) -> list[subprocess.Popen[bytes]]:
        """Bulk uploads from the branch that saturate both the tunnel and the line: 4 streams to head
        office (inside the tunnel) and 4 to the internet (beside it)."""
        return [self.popen(BRANCH_HOST, ["iperf3", "-c", server, "-p", str(BULK_PORT), "-t", f"{seconds:g}",
                                         "-P", "4", "--connect-timeout", "3000"], log_name=f"bulk-{server}.log")
                for server in (HQ_SERVER_ADDRESS, INTERNET_SERVER)]


class BranchGatewayRunner:
    """The branch gateway namespace seen as a lab's "gw" (what GatewayDaemon runs in), with its own workdir."""

    def __init__(self, lab: BranchLab) -> None:
        self.lab = lab
        self._workdir = lab.workdir / "branch"
        self._workdir.mkdir(exist_ok=True)

    @property
    def workdir(self) -> Path:
        return self._workdir

    def _key(self, ns_key: str) -> str:
        return BRANCH_GATEWAY if ns_key == GATEWAY else ns_key

    def run(self, ns_key: str, argv: Sequence[str], timeout: float = 10.0, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self._key(ns_key), argv, timeout, check, input)

    def popen(self, ns_key: str, argv: Sequence[str], log_name: str | None = None,
              **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        if log_name:  # the lab writes logs to its own workdir: keep the branch's apart
            log_name = f"branch/{log_name}"
        return self.lab.popen(self._key(ns_key), argv, log_name, **popen_kwargs)

    def exec_python(self, ns_key: str, code: str, args: Sequence[str] = (), timeout: float = 10.0,
                    check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.exec_python(self._key(ns_key), code, args, timeout, check)
