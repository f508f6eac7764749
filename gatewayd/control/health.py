"""Health checks after a policy change: does the office still work through this box?

Run in a worker thread so the main loop keeps giving verdicts meanwhile.
Only the DNS server and probe targets the policy names are contacted.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from gatewayd.classify.dns import parse_dns
from gatewayd.policy.model import Policy

CHECK_TIMEOUT_SECONDS = 2.0
PROC_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SYS_CLASS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    checks: tuple[tuple[str, bool, str], ...]  # (name, passed, detail)

    @property
    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, passed, detail in self.checks if not passed]


def check_forwarding(policy: Policy) -> tuple[bool, str]:
    try:
        if PROC_FORWARD.read_text().strip() != "1":
            return False, "IPv4 forwarding is off (net.ipv4.ip_forward=0)"
    except OSError as exc:
        return False, f"cannot read {PROC_FORWARD}: {exc}"
    for name in (policy.interfaces.wan, *policy.interfaces.lan):
        state_file = SYS_CLASS_NET / name / "operstate"
        if not state_file.exists():
            return False, f"interface {name} does not exist"
        if state_file.read_text().strip() == "down":
            return False, f"interface {name} is down"
    return True, "forwarding on, interfaces up"


def dns_query(name: str) -> tuple[int, bytes]:
    txid = secrets.randbits(16)
    labels = b"".join(len(part).to_bytes(1, "big") + part.encode() for part in name.strip(".").split("."))
    return txid, struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", 1, 1)


def check_dns(server: str, name: str) -> tuple[bool, str]:
    txid, query = dns_query(name)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(CHECK_TIMEOUT_SECONDS)
        try:
            sock.sendto(query, (server, 53))
            while True:
                answer = parse_dns(sock.recv(4096))
                if answer is not None and answer.transaction_id == txid:
                    break
        except OSError as exc:
            return False, f"{name} via {server}: {exc or 'no answer'}"
    if answer.rcode != 0 or not answer.answers:
        return False, f"{name} via {server}: rcode {answer.rcode}, {len(answer.answers)} answers"
    return True, f"{name} resolves via {server}"


def check_probe(address: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((address, port), timeout=CHECK_TIMEOUT_SECONDS):
            return True, f"{address}:{port} accepts TCP"
    except OSError as exc:
        return False, f"{address}:{port}: {os.strerror(exc.errno) if exc.errno else exc}"


def run_checks(policy: Policy) -> HealthResult:
    checks = [("forwarding", *check_forwarding(policy))]
    health = policy.health
    if health is not None:
        if health.dns_server and health.dns_name:
            checks.append(("dns", *check_dns(health.dns_server, health.dns_name)))
        for address, port in health.probes:
            checks.append((f"probe {address}:{port}", *check_probe(address, port)))
    return HealthResult(all(passed for _, passed, _ in checks), tuple(checks))
