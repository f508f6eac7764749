"""A self-contained office built from network namespaces (for integration tests and demos).

Topology (namespace keys in brackets; real names are ``<prefix><key>``)::

    [sales1] eth0 ─┐
    [sales2] eth0 ─┤
    ...           ├─ br0 [sw] ── gw-lan ═ lan0 [gw] wan0 ═ isp0 [inet] lo: servers
    [guest1] eth0 ─┘

Address plan (documentation ranges only):

    gw   lan0  192.0.2.1/24     2001:db8:1::1/64    02:00:00:00:01:01
    gw   wan0  198.51.100.1/24  2001:db8:ff::1/64   02:00:00:00:02:01
    inet isp0  198.51.100.2/24  2001:db8:ff::2/64   02:00:00:00:02:02
    inet lo    203.0.113.N/32   2001:db8:100::N/128 (sites, DNS .53, iperf3 .100)
    LAN host   192.0.2.N/24     2001:db8:1::N/64    02:00:00:00:00:<N in hex>
               (sales1 .10, sales2 .11, service1 .40, finance1 .130, guest1 .200;
                the v6 suffix repeats the decimal digits: .130 -> 2001:db8:1::130)

Every veth is created directly inside its namespaces, so nothing ever appears in
the root namespace and interface names (lan0, wan0, eth0) are the same in every lab.
Only documentation addresses are used and the namespaces have no link to the
outside world, so lab traffic cannot leave the machine.

Cleanup is by namespace: killing every pid in a lab namespace and deleting it
removes all processes and veths, which is also how ``cleanup_stale`` recovers
from a crashed run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.lab import services as lab_services

PREFIX_ROOT = "gwl"
RUN_DIR = Path("/run/gatewayd-lab")  # per-lab workdirs + owner records (tmpfs: gone on reboot)
NETNS_ETC_DIR = Path("/etc/netns")
DEFAULT_TIMEOUT_SECONDS = 10.0

# Address plan: gateway side.
GW_LAN_V4, GW_LAN_V6 = "192.0.2.1", "2001:db8:1::1"
GW_WAN_V4, GW_WAN_V6 = "198.51.100.1", "2001:db8:ff::1"
INET_WAN_V4, INET_WAN_V6 = "198.51.100.2", "2001:db8:ff::2"
LAN_PREFIX_V4, LAN_PREFIX_V6 = "192.0.2.0/24", "2001:db8:1::/64"
GW_LAN_MAC, GW_WAN_MAC, INET_WAN_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:02:02"

GATEWAY, SWITCH, INTERNET = "gw", "sw", "inet"
INFRA_KEYS = (GATEWAY, SWITCH, INTERNET)
BRIDGE = "br0"


@dataclass(frozen=True)
class HostSpec:
    ipv4: str
    ipv6: str
    mac: str


def _default_host(last_octet: int) -> HostSpec:
    # Plan: 192.0.2.N, 2001:db8:1::N (same digits read as hex), MAC 02:00:00:00:00:<N in hex>.
    return HostSpec(f"192.0.2.{last_octet}", f"2001:db8:1::{last_octet}", f"02:00:00:00:00:{last_octet:02x}")


DEFAULT_HOSTS: Mapping[str, HostSpec] = {
    "sales1": _default_host(10),
    "sales2": _default_host(11),
    "service1": _default_host(40),
    "finance1": _default_host(130),
    "guest1": _default_host(200),
}


class LabError(RuntimeError):
    pass


class LabCommandError(LabError):
    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} -> exit {returncode}: {stderr.strip() or stdout.strip()}")
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr


# ---------------------------------------------------------------------------------------------
# Plain command helpers (root namespace)


def _run(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT_SECONDS, check: bool = True,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise LabCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def list_namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    # Lines look like "name" or "name (id: 3)".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _namespace_pids(namespace: str) -> list[int]:
    out = _run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _kill_namespace_processes(namespace: str, grace_seconds: float = 1.0) -> None:
    pids = _namespace_pids(namespace)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if _alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"  # a zombie is dead, merely not yet reaped by its parent


def process_start_time(pid: int) -> str | None:
    try:
        # Field 22 (starttime); fields after the ")" of comm start at field 3.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return None


def process_alive(pid: int, start_time: str | None) -> bool:
    """Whether the process that started at `start_time` (process_start_time) still runs as `pid`.

    The start time guards against pid reuse; a zombie is as dead as a missing process.
    """
    return _alive(pid) and process_start_time(pid) == start_time


def _remove_namespace(namespace: str) -> list[str]:
    """Kill everything inside, delete the namespace and its /etc/netns dir. Returns problems."""
    problems: list[str] = []
    _kill_namespace_processes(namespace)
    if namespace in list_namespaces():
        proc = _run(["ip", "netns", "delete", namespace], check=False)
        if proc.returncode != 0:
            problems.append(f"ip netns delete {namespace}: {proc.stderr.strip()}")
    shutil.rmtree(NETNS_ETC_DIR / namespace, ignore_errors=True)
    return problems


def cleanup_stale(prefix: str) -> list[str]:
    """Remove every namespace, /etc/netns dir and workdir whose name starts with ``prefix``.

    For leftovers of a crashed run.  ``prefix`` is matched literally, so pass a full lab
    prefix such as ``"gwl4123-"``; ``"gwl"`` would also remove labs other people are running
    (use ``cleanup_dead_labs`` for the safe variant).  Returns the namespaces removed.
    """
    if not prefix.startswith(PREFIX_ROOT):
        raise ValueError(f"refusing to clean prefix {prefix!r}: lab prefixes start with {PREFIX_ROOT!r}")
    removed: list[str] = []
    problems: list[str] = []
    for namespace in list_namespaces():
        if namespace.startswith(prefix):
            problems += _remove_namespace(namespace)
            removed.append(namespace)
    if NETNS_ETC_DIR.is_dir():
        for leftover in NETNS_ETC_DIR.glob(f"{prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)
    if RUN_DIR.is_dir():
        for workdir in RUN_DIR.glob(f"{PREFIX_ROOT}*"):
            # Workdirs are named like the prefix minus its "-"; compare with it restored
            # so "gwl1231-" does not also match lab "gwl12310-".
            if f"{workdir.name}-".startswith(prefix):
                shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        warnings.warn("lab cleanup: " + "; ".join(problems), RuntimeWarning, stacklevel=2)
    return removed


def cleanup_dead_labs() -> list[str]:
    """Remove labs whose owning process no longer exists (safe with concurrent labs).

    Returns the prefixes removed.
    """
    removed: list[str] = []
    if not RUN_DIR.is_dir():
        return removed
    for owner_file in RUN_DIR.glob(f"{PREFIX_ROOT}*/owner.json"):
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if not process_alive(int(owner["pid"]), owner["start_time"]):
            cleanup_stale(owner["prefix"])
            removed.append(owner["prefix"])
    return removed


# ---------------------------------------------------------------------------------------------
# The lab

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prefix_counter = itertools.count()
_prefix_lock = threading.Lock()
_live_labs: weakref.WeakSet[Lab] = weakref.WeakSet()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the service gets SIGTERM if the lab dies.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _allocate_prefix() -> str:
    taken_namespaces = list_namespaces()
    with _prefix_lock:
        while True:
            # Zero-padded pid part keeps prefixes unambiguous ("gwl0123-" vs "gwl1230-").
            prefix = f"{PREFIX_ROOT}{os.getpid() % 1000:03d}{next(_prefix_counter)}-"
            workdir = RUN_DIR / prefix.rstrip("-")
            if any(ns.startswith(prefix) for ns in taken_namespaces):
                continue
            try:
                workdir.mkdir(parents=True)  # atomic claim against other processes
            except FileExistsError:
                continue
            return prefix


class Lab:
    """Build the office; use as a context manager so it is always torn down.

    ``with Lab() as lab: lab.run("sales1", ["curl", ...])``

    ``hosts`` maps a namespace key to its HostSpec (default DEFAULT_HOSTS); ``sites``
    is the DNS/server table for the internet (default services.DEFAULT_SITES);
    ``start_services=False`` builds only the network (call ``start_internet`` later).
    """

    def __init__(self, hosts: Mapping[str, HostSpec] | None = None,
                 sites: Iterable[lab_services.Site] | None = None,
                 start_services: bool = True) -> None:
        self.hosts: dict[str, HostSpec] = dict(DEFAULT_HOSTS if hosts is None else hosts)
        clash = set(self.hosts) & set(INFRA_KEYS)
        if clash:
            raise ValueError(f"host keys {sorted(clash)} are reserved for lab infrastructure")
        self.sites = tuple(lab_services.DEFAULT_SITES.values() if sites is None else sites)
        self.start_services = start_services
        self.prefix = ""
        self.workdir = Path()
        self.services: lab_services.InternetServices | None = None
        self._namespaces: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._built = False

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.build()
            if self.start_services:
                self.start_internet()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cleanup()

    def build(self) -> None:
        if self._built:
            raise LabError("lab already built")
        self._built = True
        self.prefix = _allocate_prefix()
        self.workdir = RUN_DIR / self.prefix.rstrip("-")
        _live_labs.add(self)
        (self.workdir / "owner.json").write_text(json.dumps({
            "prefix": self.prefix,
            "pid": os.getpid(),
            "start_time": process_start_time(os.getpid()),
        }))
        for key in (*INFRA_KEYS, *self.hosts):
            self._add_namespace(key)
        self._build_switch()
        self._build_gateway()
        self._build_internet()
        for index, (key, spec) in enumerate(self.hosts.items()):
            self._build_host(index, key, spec)

    def start_internet(self, sites: Iterable[lab_services.Site] | None = None) -> lab_services.InternetServices:
        """Start DNS, web/ERP/BT servers and iperf3 in ``inet`` (Lab.__enter__ does this by default)."""
        if self.services is not None:
            raise LabError("internet services already running")
        if sites is not None:
            self.sites = tuple(sites)
        self._add_server_addresses(lab_services.server_addresses(self.sites))
        self.services = lab_services.start_internet(self, self.sites)
        return self.services

    def cleanup(self) -> None:
        """Idempotent teardown; never raises for leftovers (warns instead)."""
        lab_services.stop_processes(self._processes)
        self._processes.clear()
        self.services = None
        problems: list[str] = []
        for namespace in self._namespaces:
            problems += _remove_namespace(namespace)
        self._namespaces.clear()
        if self.prefix:
            # Catches anything created under our prefix that we lost track of mid-build.
            cleanup_stale(self.prefix)
            shutil.rmtree(self.workdir, ignore_errors=True)
        _live_labs.discard(self)
        if problems:
            warnings.warn("lab cleanup: " + "; ".join(problems), RuntimeWarning, stacklevel=2)

    # -- running things ----------------------------------------------------------------------

    def ns_name(self, key: str) -> str:
        if key not in INFRA_KEYS and key not in self.hosts:
            raise KeyError(f"unknown lab namespace key {key!r}; have {[*INFRA_KEYS, *self.hosts]}")
        return f"{self.prefix}{key}"

    def run(self, ns_key: str, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT_SECONDS,
            check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a lab namespace and wait (killed after ``timeout``)."""
        return _run(["ip", "netns", "exec", self.ns_name(ns_key), *argv], timeout=timeout,
                    check=check, input=input)

    def popen(self, ns_key: str, argv: Sequence[str], log_name: str | None = None,
              **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a long-running process in a namespace; it is killed at cleanup (or if we die).

        Output goes to ``<workdir>/<log_name>`` if given, else is discarded, unless the
        caller passes its own stdout/stderr.
        """
        with contextlib.ExitStack() as ours:  # the child keeps its own copy of the log's descriptor
            log = ours.enter_context(open(self.workdir / log_name, "ab")) if log_name else subprocess.DEVNULL
            popen_kwargs.setdefault("stdout", log)
            popen_kwargs.setdefault("stderr", subprocess.STDOUT if log_name else subprocess.DEVNULL)
            popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns_name(ns_key), *argv],
                                    preexec_fn=_die_with_parent,
                                    start_new_session=True,  # a Ctrl-C in pytest is ours to handle
                                    **popen_kwargs)
        self._processes.append(proc)
        return proc

    def exec_python(self, ns_key: str, code: str, args: Sequence[str] = (),
                    timeout: float = DEFAULT_TIMEOUT_SECONDS, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Python code (same interpreter as ours) inside a namespace."""
        return self.run(ns_key, [sys.executable, "-c", code, *args], timeout=timeout, check=check)

    def host_spec(self, key: str) -> HostSpec:
        return self.hosts[key]

    @property
    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    # -- construction ------------------------------------------------------------------------

    def _ip(self, ns_key: str, *args: str) -> None:
        _run(["ip", "-n", self.ns_name(ns_key), *args])

    def _sysctl(self, ns_key: str, *settings: str, required: bool = True) -> None:
        # net.* sysctls are per network namespace, so they must be written from inside it.
        for setting in settings:
            proc = self.run(ns_key, ["sysctl", "-qw", setting], check=False)
            if required and proc.returncode != 0:
                raise LabCommandError(["sysctl", setting], proc.returncode, proc.stdout, proc.stderr)

    def _add_namespace(self, key: str) -> None:
        name = self.ns_name(key)
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self._ip(key, "link", "set", "lo", "up")
        # No DAD anywhere: IPv6 (including link-local) is usable the moment a link is up.
        self._sysctl(key, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")

    def _build_switch(self) -> None:
        self._ip(SWITCH, "link", "add", BRIDGE, "type", "bridge",
                 "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
        self._ip(SWITCH, "link", "set", BRIDGE, "up")
        # The switch is layer 2 only: no IPv6 chatter of its own, and no br_netfilter
        # detour (the host has bridge-nf-call-* enabled; the knob may not exist per netns).
        self._sysctl(SWITCH, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
                     required=False)
        self._sysctl(SWITCH, "net.bridge.bridge-nf-call-iptables=0",
                     "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0",
                     required=False)

    def _attach_to_switch(self, port: str) -> None:
        self._ip(SWITCH, "link", "set", port, "master", BRIDGE)
        self._ip(SWITCH, "link", "set", port, "up")

    def _build_gateway(self) -> None:
        self._sysctl(GATEWAY, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                     "net.ipv6.conf.default.forwarding=1")
        # Per-flow byte counters for gatewayd's metrics; may be missing if nf_conntrack
        # is not loaded yet (modprobe is impossible from a netns), so best effort.
        self._sysctl(GATEWAY, "net.netfilter.nf_conntrack_acct=1", required=False)
        self._ip(GATEWAY, "link", "add", "lan0", "address", GW_LAN_MAC, "type", "veth",
                 "peer", "name", "gw-lan", "netns", self.ns_name(SWITCH))
        self._attach_to_switch("gw-lan")
        self._ip(GATEWAY, "link", "add", "wan0", "address", GW_WAN_MAC, "type", "veth",
                 "peer", "name", "isp0", "address", INET_WAN_MAC, "netns", self.ns_name(INTERNET))
        for dev, v4, v6 in (("lan0", GW_LAN_V4, GW_LAN_V6), ("wan0", GW_WAN_V4, GW_WAN_V6)):
            self._ip(GATEWAY, "addr", "add", f"{v4}/24", "dev", dev)
            self._ip(GATEWAY, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self._ip(GATEWAY, "link", "set", dev, "up")
        self._ip(GATEWAY, "route", "add", "default", "via", INET_WAN_V4, "dev", "wan0")
        self._ip(GATEWAY, "-6", "route", "add", "default", "via", INET_WAN_V6, "dev", "wan0")

    def _build_internet(self) -> None:
        self._ip(INTERNET, "addr", "add", f"{INET_WAN_V4}/24", "dev", "isp0")
        self._ip(INTERNET, "-6", "addr", "add", f"{INET_WAN_V6}/64", "dev", "isp0", "nodad")
        self._ip(INTERNET, "link", "set", "isp0", "up")
        self._ip(INTERNET, "route", "add", LAN_PREFIX_V4, "via", GW_WAN_V4, "dev", "isp0")
        self._ip(INTERNET, "-6", "route", "add", LAN_PREFIX_V6, "via", GW_WAN_V6, "dev", "isp0")

    def _add_server_addresses(self, addresses: Iterable[str]) -> None:
        # No dummy device in this kernel: host routes on lo serve the same purpose.
        existing = self.run(INTERNET, ["ip", "-br", "addr", "show", "dev", "lo"]).stdout
        for address in addresses:
            if f"{address}/" in existing:
                continue
            if ":" in address:
                self._ip(INTERNET, "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
            else:
                self._ip(INTERNET, "addr", "add", f"{address}/32", "dev", "lo")

    def _build_host(self, index: int, key: str, spec: HostSpec) -> None:
        port = f"p{index}-{key}"[:15]  # switch port name, unique by index
        self._ip(key, "link", "add", "eth0", "address", spec.mac, "type", "veth",
                 "peer", "name", port, "netns", self.ns_name(SWITCH))
        self._attach_to_switch(port)
        self._ip(key, "addr", "add", f"{spec.ipv4}/24", "dev", "eth0")
        self._ip(key, "-6", "addr", "add", f"{spec.ipv6}/64", "dev", "eth0", "nodad")
        self._ip(key, "link", "set", "eth0", "up")
        self._ip(key, "route", "add", "default", "via", GW_LAN_V4, "dev", "eth0")
        self._ip(key, "-6", "route", "add", "default", "via", GW_LAN_V6, "dev", "eth0")
        # `ip netns exec` bind-mounts this over /etc/resolv.conf for processes in the host.
        etc = NETNS_ETC_DIR / self.ns_name(key)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {lab_services.DNS_SERVER_V4}\nnameserver {lab_services.DNS_SERVER_V6}\n"
            "options timeout:2 attempts:1\n")


def _cleanup_live_labs() -> None:
    # Safety net for labs used without `with` when the interpreter exits normally.
    for lab in list(_live_labs):
        lab.cleanup()


atexit.register(_cleanup_live_labs)
