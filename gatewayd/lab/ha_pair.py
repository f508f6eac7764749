"""The office with two gateways: an HA pair on keepalived (VRRP) and conntrackd, for the failover tests.

Topology (namespace keys in brackets)::

    office hosts ── br0 [sw] ─┬─ lan0 [gw]  wan0 ─┬─ br1 [sw] ── isp0 [inet] lo: servers
                              └─ lan0 [gw2] wan0 ─┘
                           [gw] sync0 ═══ sync0 [gw2]   (conntrackd's sync link)

Node gw-a lives in `gw`, node gw-b in `gw2`. The office hosts and the internet route
through the virtual addresses, which keepalived keeps on whichever node is master.

Address plan (documentation ranges only):

    virtual  LAN 192.0.2.1/24, 2001:db8:1::1/64      WAN 198.51.100.1/24, 2001:db8:ff::1/64
    gw-a     lan0 192.0.2.2, 2001:db8:1::2   wan0 198.51.100.3, 2001:db8:ff::3   sync0 203.0.113.241/30
    gw-b     lan0 192.0.2.3, 2001:db8:1::3   wan0 198.51.100.4, 2001:db8:ff::4   sync0 203.0.113.242/30
    inet     isp0 198.51.100.2/24, 2001:db8:ff::2/64 (servers on lo as in the one-box lab)

Every process of a node (gatewayd, conntrackd, keepalived and keepalived's notify)
runs in its namespace with its files in the lab's workdir, so two labs never share a
pid file, lock or socket. `kill_node` is the box dying: SIGKILL to every process in
its namespace, then its links down.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gatewayd.lab import services as lab_services
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.long_flows import LongDownloads
from gatewayd.lab.topology import (
    BRIDGE,
    GATEWAY,
    GW_LAN_V4,
    GW_LAN_V6,
    GW_WAN_V4,
    GW_WAN_V6,
    INET_WAN_V4,
    INET_WAN_V6,
    INTERNET,
    LAN_PREFIX_V4,
    LAN_PREFIX_V6,
    SWITCH,
    HostSpec,
    Lab,
    LabError,
    _namespace_pids,
    _signal,
)

WAN_BRIDGE = "br1"
SECOND_GATEWAY = "gw2"
SYNC_PREFIX = "30"
HA_STATE_TIMEOUT_SECONDS = 30.0
NOTIFY_LOG = "ha-notify.log"
LAN_LINK_LOCAL = "fe80::1"  # the ha section's default link-local virtual address, the RAs' source
VIRTUAL_ADDRESSES = {"lan": (f"{GW_LAN_V4}/24", f"{GW_LAN_V6}/64", f"{LAN_LINK_LOCAL}/64"),
                     "wan": (f"{GW_WAN_V4}/24", f"{GW_WAN_V6}/64")}


@dataclass(frozen=True)
class HaNodeSpec:
    name: str  # the node's name in the policy's ha section
    ns_key: str
    lan_v4: str
    lan_v6: str
    wan_v4: str
    wan_v6: str
    sync_address: str
    priority: int
    mac_suffix: int  # lan0 02:00:00:00:01:NN, wan0 02:00:00:00:02:NN


# Priorities at the top of the range: a backup declares the master dead after 3 adverts plus a
# skew of (256 - its priority)/256 of an advert (RFC 5798), 0.01 s at 253 against 0.61 s at 100.
NODES = (
    HaNodeSpec("gw-a", GATEWAY, "192.0.2.2", "2001:db8:1::2", "198.51.100.3", "2001:db8:ff::3",
               "203.0.113.241", 254, 0x0A),
    HaNodeSpec("gw-b", SECOND_GATEWAY, "192.0.2.3", "2001:db8:1::3", "198.51.100.4", "2001:db8:ff::4",
               "203.0.113.242", 253, 0x0B),
)
CALL_SERVER, CALL_PORT = "203.0.113.70", 3478  # the lab internet echoes UDP there
CALL_SERVER_V6 = "2001:db8:100::70"  # the same server over IPv6: the office's IPv6 path across a failover

# The call (UDP 3478 to the wechat server address) in the realtime class, so its flow's mark
# carries a class the failover must keep; the rest in default.
HA_POLICY = """version: 1
interfaces: { lan: lan0, wan: wan0, upload: 100mbit, download: 100mbit }
groups:
  office: { members: [192.0.2.0/26, "2001:db8:1::/64"] }
applications:
  call: { name: Call, category: im, addresses: [CALL/32], ports: [udp/3478] }
classes:
  realtime: { priority: 0, guaranteed: 20%, limit: 100% }
  default: { priority: 3, guaranteed: 30% }
default: { action: allow, class: default }
rules:
  - name: calls first
    apps: [call]
    class: realtime
dns:
  resolvers: [203.0.113.53]
ha:
  nodes:
    NODES
  sync_interface: sync0
  virtual_addresses:
    lan: [VLAN4/24, "VLAN6/64"]
    wan: [VWAN4/24, "VWAN6/64"]
  advert_interval: ADVERT
"""

# A steady UDP probe: one datagram every `interval` seconds on one flow (so it is also "the
# call"), echoed by the lab internet; the longest time between two echoes is the failover gap.
UDP_PROBE_SCRIPT = r"""
import json, socket, sys, time
address, port, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((address, port))
sock.setblocking(False)
sent, received, last_echo, longest_gap = 0, 0, None, 0.0
first_echo, longest_gap_end = None, None
gaps = []  # [wall-clock end, seconds] of every gap over 0.05 s, the first 200
started = time.monotonic()
print(json.dumps({"source_port": sock.getsockname()[1]}), flush=True)
next_send = started
while time.monotonic() - started < seconds:
    now = time.monotonic()
    if now >= next_send:
        try:
            sock.send(b"probe %d" % sent)
        except OSError:
            pass  # no route for a moment: still counted as sent, the gap shows it
        sent += 1
        next_send += interval
    try:
        while sock.recv(2048):
            now = time.monotonic()
            received += 1
            if last_echo is None:
                first_echo = now
            elif now - last_echo > longest_gap:
                longest_gap, longest_gap_end = now - last_echo, time.time()
            if last_echo is not None and now - last_echo > 0.05 and len(gaps) < 200:
                gaps.append([time.time(), now - last_echo])
            last_echo = now
    except (BlockingIOError, ConnectionRefusedError):
        pass
    time.sleep(min(0.002, max(0.0, next_send - time.monotonic())))
print(json.dumps({"sent": sent, "received": received, "longest_gap": longest_gap,
                  "first_echo": first_echo, "last_echo": last_echo,
                  "longest_gap_end": longest_gap_end, "gaps": gaps}), flush=True)
"""


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    received: int
    longest_gap: float  # seconds without an echo: the time without forwarding
    first_echo: float | None
    last_echo: float | None
    longest_gap_end: float | None = None  # wall clock (time.time()) of the echo that ended the longest gap
    gaps: tuple[tuple[float, float], ...] = ()  # (wall-clock end, seconds) of each gap over 0.05 s

    def longest_gap_in(self, after: float = 0.0, before: float = math.inf) -> tuple[float, float]:
        """(wall-clock end, seconds) of the longest gap that ended between the two times ((0.0, 0.0): none)."""
        return max(((end, seconds) for end, seconds in self.gaps if after < end <= before),
                   key=lambda gap: gap[1], default=(0.0, 0.0))

    def longest_gap_after(self, wall_clock: float) -> float:
        """The longest gap that ended after `wall_clock` (0.0 if none did)."""
        return self.longest_gap_in(after=wall_clock)[1]


class UdpProbe:
    def __init__(self, lab: HaPairLab, host: str, seconds: float, interval: float = 0.01,
                 server: str = CALL_SERVER) -> None:
        self.seconds = seconds
        self.process = lab.popen(host, [sys.executable, "-c", UDP_PROBE_SCRIPT, server, str(CALL_PORT),
                                        str(seconds), str(interval)], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first:
            raise LabError("udp probe did not start")
        self.source_port: int = json.loads(first)["source_port"]

    def result(self) -> ProbeResult:
        out, _ = self.process.communicate(timeout=self.seconds + 30)
        fields = json.loads(out.decode().strip().splitlines()[-1])
        fields["gaps"] = tuple((end, seconds) for end, seconds in fields["gaps"])
        return ProbeResult(**fields)


class HaPairLab(Lab):
    """Lab with two gateways in an HA pair; use as a context manager like Lab."""

    def __init__(self, hosts: Mapping[str, HostSpec] | None = None,
                 sites: Iterable[lab_services.Site] | None = None, start_services: bool = True,
                 ra_hosts: Iterable[str] = ()) -> None:
        """`ra_hosts`: hosts whose IPv6 default route comes from the pair's Router Advertisements, as
        in a real office; the others keep the static one via the global virtual address, and ignore RAs."""
        super().__init__(hosts, sites, start_services)
        self.daemons: dict[str, GatewayDaemon] = {}
        self.ra_hosts = frozenset(ra_hosts)

    def ns_name(self, key: str) -> str:
        if key == SECOND_GATEWAY:
            return f"{self.prefix}{key}"
        return super().ns_name(key)

    def node(self, name: str) -> HaNodeSpec:
        return next(node for node in NODES if node.name == name)

    # -- construction ------------------------------------------------------------------------

    def _build_gateway(self) -> None:
        self._add_namespace(SECOND_GATEWAY)
        self._ip(SWITCH, "link", "add", WAN_BRIDGE, "type", "bridge",
                 "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
        self._ip(SWITCH, "link", "set", WAN_BRIDGE, "up")
        for node in NODES:
            self._sysctl(node.ns_key, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                         "net.ipv6.conf.default.forwarding=1")
            self._sysctl(node.ns_key, "net.netfilter.nf_conntrack_acct=1", required=False)
            for device, bridge, middle in (("lan0", BRIDGE, "01"), ("wan0", WAN_BRIDGE, "02")):
                port = f"{node.ns_key}-{device}"
                self._ip(node.ns_key, "link", "add", device, "address", f"02:00:00:00:{middle}:{node.mac_suffix:02x}",
                         "type", "veth", "peer", "name", port, "netns", self.ns_name(SWITCH))
                self._ip(SWITCH, "link", "set", port, "master", bridge)
                self._ip(SWITCH, "link", "set", port, "up")
            for device, v4, v6 in (("lan0", node.lan_v4, node.lan_v6), ("wan0", node.wan_v4, node.wan_v6)):
                self._ip(node.ns_key, "addr", "add", f"{v4}/24", "dev", device)
                self._ip(node.ns_key, "-6", "addr", "add", f"{v6}/64", "dev", device, "nodad")
                self._ip(node.ns_key, "link", "set", device, "up")
            self._ip(node.ns_key, "route", "add", "default", "via", INET_WAN_V4, "dev", "wan0")
            self._ip(node.ns_key, "-6", "route", "add", "default", "via", INET_WAN_V6, "dev", "wan0")
        first, second = NODES
        self._ip(first.ns_key, "link", "add", "sync0", "type", "veth", "peer", "name", "sync0",
                 "netns", self.ns_name(second.ns_key))
        for node in NODES:
            self._ip(node.ns_key, "addr", "add", f"{node.sync_address}/{SYNC_PREFIX}", "dev", "sync0")
            self._ip(node.ns_key, "link", "set", "sync0", "up")

    def _build_host(self, index: int, key: str, spec: HostSpec) -> None:
        super()._build_host(index, key, spec)
        if key in self.ra_hosts:
            # A host (forwarding 0) with accept_ra 1 takes its default router from RAs: fe80::1 of the master.
            self._ip(key, "-6", "route", "del", "default", "via", GW_LAN_V6, "dev", "eth0")
            self._sysctl(key, "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.eth0.accept_ra=1")
        else:
            self._sysctl(key, "net.ipv6.conf.eth0.accept_ra=0")

    def _build_internet(self) -> None:
        self._ip(INTERNET, "link", "add", "isp0", "type", "veth", "peer", "name", "inet-wan",
                 "netns", self.ns_name(SWITCH))
        self._ip(SWITCH, "link", "set", "inet-wan", "master", WAN_BRIDGE)
        self._ip(SWITCH, "link", "set", "inet-wan", "up")
        self._ip(INTERNET, "addr", "add", f"{INET_WAN_V4}/24", "dev", "isp0")
        self._ip(INTERNET, "-6", "addr", "add", f"{INET_WAN_V6}/64", "dev", "isp0", "nodad")
        self._ip(INTERNET, "link", "set", "isp0", "up")
        # The office is behind the pair's WAN virtual address, wherever it is.
        self._ip(INTERNET, "route", "add", LAN_PREFIX_V4, "via", GW_WAN_V4, "dev", "isp0")
        self._ip(INTERNET, "-6", "route", "add", LAN_PREFIX_V6, "via", GW_WAN_V6, "dev", "isp0")

    # -- the pair ----------------------------------------------------------------------------

    def write_policy(self, advert_interval: str = "1s", name: str = "ha.yaml", preempt: str | None = None) -> Path:
        """The pair's policy; `preempt` as the ha section takes it (None: left out, i.e. off)."""
        nodes = "\n    ".join(f"{node.name}: {{ priority: {node.priority}, sync_address: {node.sync_address} }}"
                               for node in NODES)
        text = (HA_POLICY.replace("NODES", nodes).replace("CALL", CALL_SERVER).replace("ADVERT", advert_interval)
                .replace("VLAN4", GW_LAN_V4).replace("VLAN6", GW_LAN_V6)
                .replace("VWAN4", GW_WAN_V4).replace("VWAN6", GW_WAN_V6))
        if preempt is not None:
            text += f"  preempt: {preempt}\n"
        path = self.workdir / name
        path.write_text(text)
        return path

    def start_pair(self, advert_interval: str = "1s") -> Path:
        """Both nodes on the pair's policy: gw-a master (takeover hold released), then gw-b backup (held)."""
        policy = self.write_policy(advert_interval=advert_interval)
        self.start_node("gw-a", policy)
        self.wait_for_master("gw-a")
        self.start_node("gw-b", policy)
        self.wait_for_backup_hold("gw-b")
        return policy

    def start_node(self, name: str, policy: Path) -> GatewayDaemon:
        """gatewayd, then conntrackd and keepalived with `gatewayd ha-config`'s files."""
        node = self.node(name)
        into = self.ha_dir(name)
        self.run(node.ns_key, [sys.executable, "-m", "gatewayd", "ha-config", str(policy), "--node", name,
                               "--into", str(into), "--gatewayd-command", str(self._notify_wrapper())], timeout=30)
        daemon = GatewayDaemon(self, policy, log_name=f"{node.ns_key}-gatewayd.log", ns_key=node.ns_key)
        daemon.start(extra_args=("--ha-dir", str(into)))
        self.daemons[name] = daemon
        self.popen(node.ns_key, ["conntrackd", "-C", str(into / "conntrackd.conf")],
                   log_name=f"{node.ns_key}-conntrackd.log")
        self._wait_for(lambda: (into / "conntrackd.ctl").exists(), f"conntrackd of {name} did not start")
        self.popen(node.ns_key, ["keepalived", "--vrrp", "--dont-fork", "--log-console", "--log-detail",
                                 "--no-syslog", "-f", str(into / "keepalived.conf"),
                                 "-p", str(into / "keepalived.pid"), "-r", str(into / "vrrp.pid")],
                   log_name=f"{node.ns_key}-keepalived.log")
        if (into / "radvd.conf").exists() and shutil.which("radvd"):
            # On both nodes: radvd sends only while its node holds fe80::1 (compile/ha.py).
            self.popen(node.ns_key, ["radvd", "--nodaemon", "-m", "stderr", "-C", str(into / "radvd.conf"),
                                     "-p", str(into / "radvd.pid")], log_name=f"{node.ns_key}-radvd.log")
        return daemon

    def _notify_wrapper(self) -> Path:
        """A shell script keepalived runs as `gatewayd`: keepalived 2.2.7 silently never ran a notify
        whose program was this venv's python (a symlink into /root/.pyenv), while a script runs."""
        wrapper = self.workdir / "gatewayd-for-keepalived"
        # Its steps (with wall-clock times) go to ha-notify.log: the failover breakdown reads them.
        log = self.workdir / NOTIFY_LOG
        wrapper.write_text(f'#!/bin/sh\necho "notify_started at=$(date +%s.%N) $*" >>{log}\n'
                           f'exec {sys.executable} -m gatewayd "$@" 2>>{log}\n')
        wrapper.chmod(0o755)
        return wrapper

    def ha_dir(self, name: str) -> Path:
        return self.workdir / f"{self.node(name).ns_key}-ha"

    def holds_virtual_address(self, name: str) -> bool:
        out = self.run(self.node(name).ns_key, ["ip", "-4", "-br", "addr", "show", "dev", "lan0"]).stdout
        return f"{GW_LAN_V4}/" in out

    def wait_for_master(self, name: str, timeout: float = HA_STATE_TIMEOUT_SECONDS) -> None:
        """Until the node holds the virtual addresses and its takeover hold is released."""
        node = self.node(name)

        def released() -> bool:
            held = self.run(node.ns_key, ["nft", "list", "set", "inet", "gatewayd_ha", "hold"], check=False)
            return held.returncode == 0 and "lan0" not in held.stdout

        self._wait_for(lambda: self.holds_virtual_address(name) and released(), f"{name} did not become master",
                       timeout, name)

    def wait_for_backup_hold(self, name: str, timeout: float = HA_STATE_TIMEOUT_SECONDS) -> None:
        """Until keepalived's backup notify has held the node's ports."""
        node = self.node(name)

        def held() -> bool:
            out = self.run(node.ns_key, ["nft", "list", "set", "inet", "gatewayd_ha", "hold"], check=False)
            return out.returncode == 0 and '"lan0"' in out.stdout

        self._wait_for(held, f"{name} did not become backup", timeout, name)

    def kill_node(self, name: str) -> None:
        """The box dies: links down, then SIGKILL to its daemons (every process in its namespace).

        Links first: keepalived's VRRP child gets SIGTERM when its parent is killed and would
        say goodbye (priority 0), a quicker handover than a dead box gives."""
        node = self.node(name)
        for device in ("lan0", "wan0", "sync0"):
            self._ip(node.ns_key, "link", "set", device, "down")
        for pid in _namespace_pids(self.ns_name(node.ns_key)):
            _signal(pid, signal.SIGKILL)

    def restart_node(self, name: str, policy: Path) -> GatewayDaemon:
        """The dead box boots again: what a reboot clears is cleared (the virtual addresses keepalived
        held when it was killed, the kernel's tables and states, stale pid files, lock and socket: the
        killed daemons are unreaped children of the lab, so keepalived would see its old pid alive),
        its links come up with its own addresses, then its daemons start as in `start_node`."""
        node = self.node(name)
        for device, side in (("lan0", "lan"), ("wan0", "wan")):
            for address in VIRTUAL_ADDRESSES[side]:
                self.run(node.ns_key, ["ip", "addr", "del", address, "dev", device], check=False)
        self.run(node.ns_key, ["nft", "flush", "ruleset"])
        self.run(node.ns_key, ["conntrack", "-F"], check=False)
        for stale in ("conntrackd.lock", "conntrackd.ctl", "keepalived.pid", "vrrp.pid", "radvd.pid"):
            (self.ha_dir(name) / stale).unlink(missing_ok=True)
        for device, v6 in (("lan0", node.lan_v6), ("wan0", node.wan_v6), ("sync0", None)):
            self._ip(node.ns_key, "link", "set", device, "up")
            if v6 is not None:  # IPv6 addresses went with the link (keep_addr_on_down is 0)
                self._ip(node.ns_key, "-6", "addr", "replace", f"{v6}/64", "dev", device, "nodad")
        self._ip(node.ns_key, "route", "replace", "default", "via", INET_WAN_V4, "dev", "wan0")
        self._ip(node.ns_key, "-6", "route", "replace", "default", "via", INET_WAN_V6, "dev", "wan0")
        return self.start_node(name, policy)

    def conntrackd(self, name: str, *flags: str) -> str:
        """`conntrackd -C <node's config> FLAGS` on a node (e.g. -e: the states synced from the peer)."""
        return self.run(self.node(name).ns_key, ["conntrackd", "-C", str(self.ha_dir(name) / "conntrackd.conf"),
                                                 *flags], check=False).stdout

    def conntrack_marks(self, name: str, *selector: str) -> dict[str, int]:
        """`conntrack -L` on a node: the mark of each flow matching `selector`, keyed by its tuple."""
        out = self.run(self.node(name).ns_key, ["conntrack", "-L", *selector], check=False).stdout
        marks: dict[str, int] = {}
        for line in out.splitlines():
            words = line.split()
            tuple_words = [word for word in words if word.split("=")[0] in ("src", "dst", "sport", "dport")][:4]
            mark = next((word.split("=")[1] for word in words if word.startswith("mark=")), None)
            if tuple_words and mark is not None:
                marks[" ".join(tuple_words)] = int(mark)
        return marks

    def node_logs(self, name: str, tail_chars: int = 3000) -> str:
        """The end of the node's keepalived and conntrackd logs, for a failure message."""
        parts = []
        for daemon in ("keepalived", "conntrackd", "radvd"):
            path = self.workdir / f"{self.node(name).ns_key}-{daemon}.log"
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            text = "\n".join(line for line in text.splitlines() if "Sending" not in line)  # not the ARPs
            parts.append(f"--- {daemon} of {name}:\n{text[-tail_chars:]}")
        return "\n".join(parts)

    def notify_times(self, name: str, state: str) -> dict[str, float]:
        """When the node's last `ha-notify STATE` started and ended each step (wall clock)."""
        path = self.workdir / NOTIFY_LOG
        return notify_times(path.read_text(errors="replace") if path.exists() else "", name, state)

    def _wait_for(self, condition: Callable[[], bool], message: str, timeout: float = 10.0,
                  node: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise LabError(message + (f"\n{self.node_logs(node)}" if node else ""))


def notify_times(log_text: str, node: str, state: str) -> dict[str, float]:
    """From ha-notify.log (the lab's notify wrapper and ha-notify's step lines), the node's last
    `ha-notify STATE`: {"started": ..., "hold": ..., "commit": ..., "release": ...} in wall-clock time."""
    times: dict[str, float] = {}
    for line in log_text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if line.startswith("notify_started") and f"ha-notify {state} --node {node} " in line:
            times = {"started": float(fields["at"])}
        elif fields.get("node") == node and fields.get("state") == state and times and "step" in fields:
            times[fields["step"]] = float(fields["at"])
    return times


@dataclass(frozen=True)
class FailoverResult:
    outcomes: list[str]  # per download: "completed", "reset", "stalled", ...
    probe: ProbeResult
    marks_before: dict[str, int]  # office flows on the old master: tuple -> ct mark
    marks_after: dict[str, int]  # the same flows on the new master
    killed_at: float = 0.0  # wall clock (time.time()) when the old master began to die
    returned_at: float | None = None  # wall clock when the old master began to boot again (None: it stayed dead)
    marks_after_return: dict[str, int] | None = None  # the flows on the master once gw-a is back
    probe_v6: ProbeResult | None = None  # the same probe over IPv6 (sales1, via the LAN's IPv6 virtual address)

    @property
    def failover_gap(self) -> tuple[float, float]:
        """(wall-clock end, seconds) of the longest gap from the kill to the old master's return."""
        return self.probe.longest_gap_in(after=self.killed_at,
                                          before=math.inf if self.returned_at is None else self.returned_at)

    @property
    def failback_gap(self) -> float | None:
        """The longest time without forwarding after the old master began to return."""
        return None if self.returned_at is None else self.probe.longest_gap_after(self.returned_at)

    @property
    def resets(self) -> int:
        return self.outcomes.count("reset")

    @property
    def verdicts_changed(self) -> int:
        """Flows whose mark (app, group, block flag, class) differs or is missing on the new master."""
        return sum(1 for flow, mark in self.marks_before.items() if self.marks_after.get(flow) != mark)


OFFICE_FLOWS = (("-p", "tcp", "--dport", "80"), ("-p", "udp", "--dport", str(CALL_PORT)))


def office_marks(lab: HaPairLab, node: str) -> dict[str, int]:
    return {flow: mark for selector in OFFICE_FLOWS for flow, mark in lab.conntrack_marks(node, *selector).items()}


def fail_over(lab: HaPairLab, downloads: int, seconds: float, kill_after: float,
              before_kill: Callable[[], None] = lambda: None, bring_back: Path | None = None,
              after_return: Callable[[], None] = lambda: None) -> FailoverResult:
    """Downloads from sales1 and the call from sales2 through gw-a; gw-a dies `kill_after` seconds in.

    `before_kill` runs just before (a test's checks of the running pair). With `bring_back` (its
    policy), gw-a boots again once gw-b is master and the downloads go on; once gw-a is backup,
    `after_return` runs (e.g. waiting for a preemption), then the master's marks are read."""
    flows = LongDownloads(lab, "sales1", [("203.0.113.60", "news.lab.example")] * downloads, seconds,
                          bytes_per_second=200_000, stall_seconds=seconds)
    probe = UdpProbe(lab, "sales2", seconds)
    probe_v6 = UdpProbe(lab, "sales1", seconds, interval=0.02, server=CALL_SERVER_V6)
    time.sleep(kill_after)
    marks_before = office_marks(lab, "gw-a")
    before_kill()
    killed_at = time.time()
    lab.kill_node("gw-a")
    lab.wait_for_master("gw-b")
    marks_after = office_marks(lab, "gw-b")
    returned_at, marks_after_return = None, None
    if bring_back is not None:
        returned_at = time.time()
        lab.restart_node("gw-a", bring_back)
        lab.wait_for_backup_hold("gw-a")
        after_return()
        marks_after_return = office_marks(lab, "gw-a" if lab.holds_virtual_address("gw-a") else "gw-b")
    outcomes = [flow.outcome for flow in flows.results()]
    return FailoverResult(outcomes, probe.result(), marks_before, marks_after, killed_at, returned_at,
                          marks_after_return, probe_v6.result())
