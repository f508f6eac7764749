"""Client-side probes run from a LAN host namespace; each is time-bounded and returns data.

Failures of the *network* (reset, timeout, refused, ...) are results, not exceptions,
because tests assert on them (a blocked app must see a reset or a timeout).  Only a
broken probe (bad output, iperf3 error) raises TrafficError.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gatewayd.lab.runner import NamespaceRunner
from gatewayd.lab.services import BITTORRENT_PORT, DNS_SERVER_V4, IPERF_PORTS

# `ip netns exec` + interpreter/curl start-up, added to the probe's own timeout so the
# probe (not subprocess) decides the outcome in the normal case.
_SPAWN_SLACK_SECONDS = 5.0


class TrafficError(RuntimeError):
    pass


class Outcome(StrEnum):
    OK = "ok"  # connected / got an HTTP response / got a UDP reply
    ANSWERED = "answered"  # BitTorrent peer returned its handshake
    RESET = "reset"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    CLOSED = "closed"  # connected, then EOF before the expected answer
    DNS_FAILURE = "dns"
    TLS_ERROR = "tls"
    ERROR = "error"


@dataclass(frozen=True)
class HttpResult:
    ok: bool  # got any HTTP response (check http_code for the status)
    http_code: int | None
    error: Outcome | None
    curl_exit: int
    elapsed_seconds: float
    bytes_downloaded: int
    remote_ip: str | None
    stderr: str = ""


@dataclass(frozen=True)
class DnsResult:
    status: str  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, TIMEOUT, ...
    answers: list[str]  # rdata in answer order, like `dig +short` (CNAME targets keep the dot)
    records: list[tuple[str, str, str]] = field(default_factory=list)  # (owner, type, rdata)

    @property
    def addresses(self) -> list[str]:
        return [rdata for _, rtype, rdata in self.records if rtype in ("A", "AAAA")]


@dataclass(frozen=True)
class TcpResult:
    outcome: Outcome
    connected: bool
    received: bytes
    elapsed_seconds: float
    detail: str = ""


@dataclass(frozen=True)
class UdpResult:
    outcome: Outcome
    sent: int
    replies: int
    detail: str = ""


# ---------------------------------------------------------------------------------------------
# HTTP(S) with curl


def https_get(lab: NamespaceRunner, host: str, url_or_name: str, timeout: float = 5.0,
              ip_version: int | None = None, path: str = "/") -> HttpResult:
    """GET over HTTPS with ``curl -k``; ``url_or_name`` is a URL or a bare host name."""
    return _curl(lab, host, _url("https", url_or_name, path), timeout, ip_version)


def http_get(lab: NamespaceRunner, host: str, url_or_name: str, timeout: float = 5.0,
             ip_version: int | None = None, path: str = "/") -> HttpResult:
    return _curl(lab, host, _url("http", url_or_name, path), timeout, ip_version)


def concurrent_downloads(lab: NamespaceRunner, downloads: Sequence[tuple[str, str]], seconds: float,
                         rate_limit: str | None = None, ip_version: int | None = None) -> None:
    """Each (host, host name) pair downloads over HTTP at once for `seconds` (curl's --max-time), at most
    50 MB each (the lab server's cap), each at most `rate_limit` bytes a second (curl's syntax: 500K)."""
    options = (["--limit-rate", rate_limit] if rate_limit else []) + ([f"-{ip_version}"] if ip_version else [])
    processes = [lab.popen(host, ["curl", "-s", "-o", "/dev/null", "--max-time", f"{seconds:g}", *options,
                                  f"http://{name}/bytes/50000000"]) for host, name in downloads]
    for process in processes:
        try:
            process.wait(seconds + _SPAWN_SLACK_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_SPAWN_SLACK_SECONDS)


def _url(scheme: str, url_or_name: str, path: str) -> str:
    if "://" in url_or_name:
        return url_or_name
    if ":" in url_or_name and not url_or_name.startswith("["):  # bare IPv6 literal
        url_or_name = f"[{url_or_name}]"
    return f"{scheme}://{url_or_name}{path}"


def _curl(lab: NamespaceRunner, host: str, url: str, timeout: float, ip_version: int | None) -> HttpResult:
    argv = ["curl", "-sS", "-k", "--noproxy", "*", "-o", "/dev/null",
            "-w", "%{http_code} %{size_download} %{time_total} %{remote_ip}",
            "--max-time", f"{timeout:g}", "--connect-timeout", f"{timeout:g}"]
    if ip_version in (4, 6):
        argv.append(f"-{ip_version}")
    argv.append(url)
    started = time.monotonic()
    try:
        proc = lab.run(host, argv, timeout=timeout + _SPAWN_SLACK_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return HttpResult(False, None, Outcome.TIMEOUT, 28, time.monotonic() - started, 0, None)
    fields = proc.stdout.split()
    code = int(fields[0]) if fields and fields[0].isdigit() else 0
    size = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    elapsed = float(fields[2]) if len(fields) > 2 else time.monotonic() - started
    remote_ip = fields[3] if len(fields) > 3 else None
    if proc.returncode == 0 and code:
        return HttpResult(True, code, None, 0, elapsed, size, remote_ip, proc.stderr)
    error = _curl_error_kind(proc.returncode, proc.stderr)
    return HttpResult(False, code or None, error, proc.returncode, elapsed, size, remote_ip, proc.stderr.strip())


def _curl_error_kind(exit_code: int, stderr: str) -> Outcome:
    text = stderr.lower()
    if "reset by peer" in text:  # may show up as exit 35 (TLS) or 56 (recv)
        return Outcome.RESET
    if exit_code == 28 or "timed out" in text:
        return Outcome.TIMEOUT
    if exit_code == 6:
        return Outcome.DNS_FAILURE
    if exit_code == 7:
        # curl 7.88 says "Couldn't connect to server" for ECONNREFUSED: a reset answering the SYN.
        if "refused" in text or "couldn't connect" in text:
            return Outcome.REFUSED
        if "no route" in text or "unreachable" in text:
            return Outcome.UNREACHABLE
        return Outcome.ERROR
    if exit_code in (35, 60):
        return Outcome.TLS_ERROR
    if exit_code in (52, 56):
        return Outcome.CLOSED
    return Outcome.ERROR


# ---------------------------------------------------------------------------------------------
# DNS with dig


def dns_query(lab: NamespaceRunner, host: str, name: str, rrtype: str = "A",
              server: str = DNS_SERVER_V4, timeout: float = 2.0, tcp: bool = False) -> DnsResult:
    """One query, one try (``+time=2 +tries=1``) to the lab DNS server; over TCP with ``tcp``."""
    argv = ["dig", f"@{server}", name, rrtype, f"+time={max(1, round(timeout))}", "+tries=1",
            "+noall", "+comments", "+answer"]  # status header + answer section, nothing else
    if tcp:
        argv.append("+tcp")
    try:
        proc = lab.run(host, argv, timeout=timeout + _SPAWN_SLACK_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return DnsResult("TIMEOUT", [])
    if proc.returncode == 9:  # dig: no reply from server
        return DnsResult("TIMEOUT", [])
    if proc.returncode != 0:
        raise TrafficError(f"dig failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    status = "UNKNOWN"
    records: list[tuple[str, str, str]] = []
    for line in proc.stdout.splitlines():
        if "status:" in line:
            status = line.split("status:", 1)[1].split(",", 1)[0].strip()
        elif line and not line.startswith(";"):
            parts = line.split(None, 4)  # owner ttl class type rdata
            if len(parts) == 5:
                records.append((parts[0], parts[3], parts[4]))
    return DnsResult(status, [rdata for _, _, rdata in records], records)


# ---------------------------------------------------------------------------------------------
# Raw sockets via a small Python program run inside the namespace

_TCP_PROBE = r"""
import errno, json, socket, sys, time
p = json.loads(sys.argv[1])
family = socket.AF_INET6 if ":" in p["address"] else socket.AF_INET
out = {"outcome": "ok", "connected": False, "received": "", "detail": ""}
start = time.monotonic()
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(p["timeout"])
data = b""
try:
    s.connect((p["address"], p["port"]))
    out["connected"] = True
    if p["payload"]:
        s.sendall(bytes.fromhex(p["payload"]))
    while len(data) < p["expect"]:
        piece = s.recv(p["expect"] - len(data))
        if not piece:
            out["outcome"] = "closed"
            break
        data += piece
except socket.timeout:
    out["outcome"] = "timeout"
except ConnectionRefusedError:
    out["outcome"] = "refused"
except ConnectionResetError:
    out["outcome"] = "reset"
except OSError as exc:
    unreachable = (errno.EHOSTUNREACH, errno.ENETUNREACH)
    out["outcome"] = "unreachable" if exc.errno in unreachable else "error"
    out["detail"] = str(exc)
finally:
    s.close()
out["received"] = data.hex()
out["elapsed"] = time.monotonic() - start
print(json.dumps(out))
"""

_UDP_PROBE = r"""
import json, socket, sys, time
p = json.loads(sys.argv[1])
family = socket.AF_INET6 if ":" in p["address"] else socket.AF_INET
out = {"outcome": "ok", "sent": 0, "replies": 0, "detail": ""}
s = socket.socket(family, socket.SOCK_DGRAM)
s.connect((p["address"], p["port"]))  # connected: ICMP port-unreachable becomes ECONNREFUSED
payload = bytes.fromhex(p["payload"])
def read_replies(wanted, deadline):
    while out["replies"] < wanted and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            s.recv(65535)
            out["replies"] += 1
        except socket.timeout:
            break
try:
    for _ in range(p["count"]):
        s.send(payload)
        out["sent"] += 1
        if p["paced"]:  # request and answer in turn, as STUN's transactions go
            read_replies(out["sent"], time.monotonic() + p["timeout"])
    if p["expect_reply"] and not p["paced"]:
        read_replies(p["count"], time.monotonic() + p["timeout"])
    if p["expect_reply"] and out["replies"] == 0:
        out["outcome"] = "timeout"
except ConnectionRefusedError:
    out["outcome"] = "refused"
except OSError as exc:
    out["outcome"] = "error"
    out["detail"] = str(exc)
print(json.dumps(out))
"""


def _python_probe(lab: NamespaceRunner, host: str, code: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        proc = lab.exec_python(host, code, args=[json.dumps(params)],
                               timeout=timeout + _SPAWN_SLACK_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "detail": "probe process timed out"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise TrafficError(f"probe failed in {host}: {proc.stderr.strip()}")
    report: dict[str, Any] = json.loads(lines[-1])  # the probe's last line: one JSON object it prints
    return report


def tcp_connect(lab: NamespaceRunner, host: str, address: str, port: int, timeout: float = 3.0,
                payload: bytes = b"", expect_bytes: int = 0) -> TcpResult:
    """Connect, optionally send ``payload`` and wait for ``expect_bytes`` of answer."""
    raw = _python_probe(lab, host, _TCP_PROBE, {
        "address": address, "port": port, "timeout": timeout,
        "payload": payload.hex(), "expect": expect_bytes}, timeout)
    return TcpResult(Outcome(raw["outcome"]), bool(raw.get("connected")),
                     bytes.fromhex(raw.get("received", "")), float(raw.get("elapsed", timeout)),
                     raw.get("detail", ""))


BT_PROTOCOL = b"BitTorrent protocol"


def bittorrent_handshake_bytes(info_hash: bytes = b"\x11" * 20, peer_id: bytes = b"-LB0001-labclient000") -> bytes:
    """The 68-byte BitTorrent handshake a classifier should recognise."""
    return bytes([len(BT_PROTOCOL)]) + BT_PROTOCOL + bytes(8) + info_hash + peer_id


def bittorrent_handshake(lab: NamespaceRunner, host: str, address: str, timeout: float = 5.0,
                         port: int = BITTORRENT_PORT) -> TcpResult:
    """Send a BT handshake; outcome ANSWERED if the peer's handshake came back."""
    handshake = bittorrent_handshake_bytes()
    result = tcp_connect(lab, host, address, port, timeout, payload=handshake, expect_bytes=len(handshake))
    answered = (result.outcome == Outcome.OK and result.received[1:20] == BT_PROTOCOL
                and result.received[28:48] == handshake[28:48])
    if answered:
        return TcpResult(Outcome.ANSWERED, True, result.received, result.elapsed_seconds)
    return result


def udp_send(lab: NamespaceRunner, host: str, address: str, port: int, payload: bytes = b"lab", count: int = 1,
             expect_reply: bool = False, timeout: float = 2.0, paced: bool = False) -> UdpResult:
    """Send ``count`` datagrams; with ``expect_reply`` count echoes (inet echoes on UDP 7, 443, 3478, 8000).

    ``paced``: wait for each echo (at most ``timeout``) before the next datagram, as a
    request/response protocol does; otherwise all go at once and the echoes are read after.
    """
    raw = _python_probe(lab, host, _UDP_PROBE, {
        "address": address, "port": port, "payload": payload.hex(), "count": count,
        "expect_reply": expect_reply or paced, "timeout": timeout, "paced": paced},
        timeout * (count if paced else 1))
    return UdpResult(Outcome(raw["outcome"]), int(raw.get("sent", 0)), int(raw.get("replies", 0)),
                     raw.get("detail", ""))


# Raw sockets (we are root in the namespace): the lab has no ping binary.
_ICMP_ECHO_PROBE = r"""
import json, socket, struct, sys, time
p = json.loads(sys.argv[1])
v6 = ":" in p["address"]
request_type, reply_type = (128, 129) if v6 else (8, 0)
ident = 0x4c42
def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
header = struct.pack("!BBHHH", request_type, 0, 0, ident, 1) + b"gatewayd-lab"
if not v6:  # the kernel fills in ICMPv6 checksums of raw sockets itself
    header = header[:2] + struct.pack("!H", checksum(header)) + header[4:]
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.sendto(header, (p["address"], 0))
out = {"outcome": "timeout"}
deadline = time.monotonic() + p["timeout"]
while time.monotonic() < deadline:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data, _ = s.recvfrom(2048)
    except socket.timeout:
        break
    icmp = data if v6 else data[(data[0] & 0x0F) * 4:]  # IPv4 raw sockets include the IP header
    if icmp[0] == reply_type and struct.unpack("!H", icmp[4:6])[0] == ident:
        out["outcome"] = "ok"
        break
print(json.dumps(out))
"""


def icmp_echo(lab: NamespaceRunner, host: str, address: str, timeout: float = 2.0) -> Outcome:
    """One ICMP/ICMPv6 echo request: OK when its reply comes back within ``timeout``."""
    raw = _python_probe(lab, host, _ICMP_ECHO_PROBE, {"address": address, "timeout": timeout}, timeout)
    return Outcome(raw["outcome"])


# ---------------------------------------------------------------------------------------------
# Throughput with iperf3


def iperf3(lab: NamespaceRunner, host: str, server: str, seconds: float = 1.0, reverse: bool = False,
           bitrate: str | int | None = None, port: int = IPERF_PORTS[0], udp: bool = False) -> float:
    """Run an iperf3 test and return the receiver-side rate in bits per second.

    ``reverse`` measures download (server sends).  Each address has servers on
    ``IPERF_PORTS``; give concurrent tests different ports.  Raises TrafficError if the
    test cannot run (server busy, connection blocked, ...).
    """
    options = ["-t", f"{seconds:g}"]
    if reverse:
        options.append("-R")
    if udp:
        options.append("-u")
    if bitrate is not None:
        options += ["-b", str(bitrate)]
    report = iperf3_report(lab, host, server, port, options, timeout=seconds + 10)
    end = report["end"]
    summary = end["sum"] if udp else end["sum_received"]
    return float(summary["bits_per_second"])


def iperf3_report(lab: NamespaceRunner, host: str, server: str, port: int, options: list[str],
                  timeout: float) -> dict[str, Any]:
    """Run an iperf3 client with `options` and return its JSON report; TrafficError if it cannot run."""
    argv = ["iperf3", "-c", server, "-p", str(port), "-J", "--connect-timeout", "3000", *options]
    try:
        proc = lab.run(host, argv, timeout=timeout + _SPAWN_SLACK_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TrafficError(f"iperf3 from {host} to {server}:{port} timed out") from exc
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise TrafficError(f"iperf3 output unreadable: {proc.stderr.strip() or proc.stdout[:200]}") from exc
    if "error" in report:
        raise TrafficError(f"iperf3 from {host} to {server}:{port}: {report['error']}")
    return report
