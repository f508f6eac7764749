"""The lab internet's services: DNS (dnsmasq), web/ERP/BitTorrent (internet_server.py), iperf3.

Everything runs inside the lab's ``inet`` namespace and only on documentation
addresses (203.0.113.0/24, 2001:db8:100::/64).  dnsmasq never forwards: it is
started with ``--no-resolv --no-hosts`` and ``local=/#/`` so any name not in the
site table is answered NXDOMAIN locally.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gatewayd.lab.runner import NamespaceRunner

DNS_SERVER_V4 = "203.0.113.53"
DNS_SERVER_V6 = "2001:db8:100::53"
IPERF_SERVER_V4 = "203.0.113.100"
IPERF_SERVER_V6 = "2001:db8:100::100"
# Several iperf3 servers per address: one iperf3 server runs one test at a time,
# and QoS tests need several LAN hosts measuring concurrently.
IPERF_PORTS: tuple[int, ...] = (5201, 5202, 5203, 5204)

HTTP_PORT = 80
HTTPS_PORT = 443
ERP_HTTPS_PORT = 8443
BITTORRENT_PORT = 6881
# UDP echo: 7 (classic echo), 443 (looks like QUIC to a classifier), 3478 (STUN/TURN
# relays) and 8000 (QQ's servers): a test sees whether its datagrams got through.
UDP_ECHO_PORTS: tuple[int, ...] = (7, 443, 3478, 8000)

DNS_TTL_SECONDS = 120
INTERNET_SERVER_SCRIPT = Path(__file__).with_name("internet_server.py")


@dataclass(frozen=True)
class Site:
    """One name the lab DNS answers.

    If ``cname`` is set, ``hostname`` is published as a CNAME to ``cname`` and the
    addresses are attached to the CNAME target (exercises CNAME following).
    """

    key: str
    hostname: str
    ipv4: str | None
    ipv6: str | None = None
    cname: str | None = None

    @property
    def address_name(self) -> str:
        """The name that carries the A/AAAA records."""
        return self.cname or self.hostname


def _site(key: str, hostname: str, last: int, cname: str | None = None) -> Site:
    # Address plan: site N lives at 203.0.113.N and 2001:db8:100::N (same digits).
    return Site(key, hostname, f"203.0.113.{last}", f"2001:db8:100::{last}", cname)


DEFAULT_SITES: Mapping[str, Site] = {
    site.key: site
    for site in (
        _site("dingtalk", "im.dingtalk.com", 10),
        _site("erp", "erp.example.com", 20),
        _site("crm", "crm.example.com", 21),
        _site("youku", "www.youku.com", 30, cname="youku.cdn.lab.example"),
        _site("bilibili", "www.bilibili.com", 31),
        _site("steam", "store.steampowered.com", 40),
        _site("bittorrent", "tracker.bt.lab.example", 50),
        _site("news", "news.lab.example", 60),
        _site("wechat", "web.wechat.com", 70),
        _site("iperf", "iperf.lab.example", 100),
        _site("dns", "ns.lab.example", 53),
    )
}


def server_addresses(sites: Iterable[Site]) -> list[str]:
    """Every address the inet namespace must own: sites plus DNS and iperf3."""
    addresses: list[str] = [DNS_SERVER_V4, DNS_SERVER_V6, IPERF_SERVER_V4, IPERF_SERVER_V6]
    for site in sites:
        addresses += [a for a in (site.ipv4, site.ipv6) if a]
    return list(dict.fromkeys(addresses))  # de-duplicate, keep order


def dnsmasq_config(sites: Iterable[Site], pid_file: Path, log_file: Path | None = None) -> str:
    lines = [
        "no-resolv",  # never read /etc/resolv.conf: no upstream at all
        "no-hosts",  # never serve the machine's /etc/hosts
        "local=/#/",  # every domain is local: unknown names get NXDOMAIN, never forwarded
        f"local-ttl={DNS_TTL_SECONDS}",
        f"listen-address={DNS_SERVER_V4}",
        f"listen-address={DNS_SERVER_V6}",
        "bind-interfaces",  # bind the two addresses only, not the wildcard
        "port=53",
        "user=root",  # stays root inside the throw-away namespace; keeps pid-file writable
        f"pid-file={pid_file}",
    ]
    if log_file is not None:
        lines += ["log-queries", f"log-facility={log_file}"]
    for site in sites:
        addresses = [a for a in (site.ipv4, site.ipv6) if a]
        if addresses:
            lines.append(f"host-record={site.address_name},{','.join(addresses)}")
        if site.cname:
            lines.append(f"cname={site.hostname},{site.cname}")
    return "\n".join(lines) + "\n"


def make_self_signed_certificate(cert_path: Path, key_path: Path, names: Iterable[str],
                                 addresses: Iterable[str]) -> None:
    """Write a self-signed server cert; clients use ``curl -k`` so SANs are informative only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # fast to generate, unlike RSA
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatewayd lab internet")])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class InternetServices:
    """Handles to the processes serving the lab internet (all in the ``inet`` namespace)."""

    sites: tuple[Site, ...]
    dnsmasq: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]
    iperf3: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pid_files: list[Path] = field(default_factory=list)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.dnsmasq, self.server, *self.iperf3]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self, grace_seconds: float = 2.0) -> None:
        stop_processes(self.processes, grace_seconds)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], grace_seconds: float = 2.0) -> None:
    """SIGTERM, wait a little, then SIGKILL whatever is still alive."""
    alive = [p for p in processes if p.poll() is None]
    for proc in alive:
        _signal(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for proc in alive:
        try:
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass  # unkillable (D state); namespace teardown still proceeds


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def start_internet(lab: NamespaceRunner, sites: Iterable[Site] | None = None,
                   ready_timeout: float = 10.0) -> InternetServices:
    """Start DNS, the Python server and iperf3 servers in ``lab``'s inet namespace."""
    site_list = tuple(DEFAULT_SITES.values() if sites is None else sites)
    workdir = lab.workdir
    addresses = server_addresses(site_list)
    names = [n for s in site_list for n in (s.hostname, s.cname) if n]

    cert, key = workdir / "server.crt", workdir / "server.key"
    make_self_signed_certificate(cert, key, names, addresses)

    dns_pid = workdir / "dnsmasq.pid"
    dns_conf = workdir / "dnsmasq.conf"
    dns_conf.write_text(dnsmasq_config(site_list, dns_pid, workdir / "dnsmasq.log"))
    # --keep-in-foreground so the lab owns the process (and its death signal).
    dnsmasq = lab.popen("inet", ["dnsmasq", f"--conf-file={dns_conf}", "--keep-in-foreground"],
                        log_name="dnsmasq.stderr")

    server_conf = workdir / "internet_server.json"
    ready_file = workdir / "internet_server.ready"
    server_conf.write_text(json.dumps({
        "cert": str(cert),
        "key": str(key),
        "http_ports": [HTTP_PORT],
        "https_ports": [HTTPS_PORT, ERP_HTTPS_PORT],
        "bittorrent_ports": [BITTORRENT_PORT],
        "udp_echo_ports": list(UDP_ECHO_PORTS),
        "addresses": addresses,
        "ready_file": str(ready_file),
        "parent_pid": os.getpid(),
    }))
    server = lab.popen("inet", [sys.executable, str(INTERNET_SERVER_SCRIPT), str(server_conf)],
                       log_name="internet_server.log")

    pid_files = [dns_pid]
    iperf_servers: list[subprocess.Popen[bytes]] = []
    for address in (IPERF_SERVER_V4, IPERF_SERVER_V6):
        for port in IPERF_PORTS:
            pid_file = workdir / f"iperf3-{port}-{'v6' if ':' in address else 'v4'}.pid"
            pid_files.append(pid_file)
            iperf_servers.append(lab.popen(
                "inet", ["iperf3", "-s", "-B", address, "-p", str(port), "-I", str(pid_file)],
                log_name=pid_file.with_suffix(".log").name))

    services = InternetServices(site_list, dnsmasq, server, iperf_servers, pid_files)
    try:
        _wait_ready(lab, services, ready_file, ready_timeout)
    except BaseException:
        services.stop()
        raise
    return services


def _wait_ready(lab: NamespaceRunner, services: InternetServices, ready_file: Path, timeout: float) -> None:
    """Wait until every service listens, so the first test packet is never refused."""
    want_tcp = {HTTP_PORT, HTTPS_PORT, ERP_HTTPS_PORT, BITTORRENT_PORT, *IPERF_PORTS}
    deadline = time.monotonic() + timeout
    while True:
        dead = [p.args for p in services.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"lab internet service exited at start: {dead}; logs in {lab.workdir}")
        listening = _listening_ports(lab)
        if ready_file.exists() and want_tcp <= listening["tcp"] and 53 in listening["udp"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"lab internet not ready after {timeout}s: {listening}; logs in {lab.workdir}")
        time.sleep(0.05)


def _listening_ports(lab: NamespaceRunner) -> dict[str, set[int]]:
    result: dict[str, set[int]] = {}
    for proto, flag in (("tcp", "-Hlnt"), ("udp", "-Hlnu")):
        out = lab.run("inet", ["ss", flag], timeout=5, check=False).stdout
        # Local address is column 4, e.g. "203.0.113.53:53" or "[2001:db8:100::53]:53".
        result[proto] = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
                         if len(line.split()) >= 4}
    return result
