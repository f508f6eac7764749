"""A DNS answer flood of many distinct names, for the daemon's memory figures (bench/memory_abuse.py --flood dns).

A resolver the policy names (so its answers teach) answers every AAAA query for
n<N>.<domain> with `records` addresses of its own, distinct for every name, in
2001:db8:dd::/48 (documentation addresses, never contacted). Every office host
asks for names nobody else asks for, one query per UDP flow (a lookup flow is
queued for its first DNS_MAX_PACKETS packets only), each answer awaited (bounded).
What limits the daemon's memory is then the learning's own bounds: each client's
token bucket and share of the map (classify/dns_learning.py), the writer's book
(apply/learned_writer.py).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayd.lab.office import OFFICE_POLICY
from gatewayd.lab.topology import INTERNET, Lab

FLOOD_RESOLVER = "203.0.113.67"  # not a site's; named in the flood's policy
FLOOD_PREFIX = "2001:db8:dd::"

RESOLVER = r"""
import ipaddress, socket, struct, sys, time
address, prefix, records, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
base = int(ipaddress.IPv6Address(prefix))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((address, 53))
sock.settimeout(0.5)
print("ready", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        data, peer = sock.recvfrom(512)
    except socket.timeout:
        continue
    txid, flags = struct.unpack_from("!HH", data)
    end = 12
    while data[end]:
        end += data[end] + 1
    end += 5  # the root label, type and class
    label = data[13:13 + data[12]].decode()
    qtype = struct.unpack_from("!H", data, end - 4)[0]
    answers = []
    if qtype == 28 and label.startswith("n") and label[1:].isdigit():
        first = base + int(label[1:]) * records
        answers = [b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 600, 16) + (first + k).to_bytes(16, "big")
                   for k in range(records)]
    header = struct.pack("!HHHHHH", txid, 0x8180 | (flags & 0x0100), 1, len(answers), 0, 0)
    sock.sendto(header + data[12:end] + b"".join(answers), peer)
"""

CLIENT = r"""
import socket, struct, sys, time
resolver, domain = sys.argv[1], sys.argv[2]
first, count, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
deadline = time.monotonic() + seconds
sent = answered = 0
for n in range(first, first + count):
    if time.monotonic() > deadline:
        break
    name = b"".join(bytes([len(label)]) + label for label in f"n{n}.{domain}".encode().split(b".")) + b"\0"
    query = struct.pack("!HHHHHH", n & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 28, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a flow of its own
        sock.settimeout(1.0)
        sock.sendto(query, (resolver, 53))
        sent += 1
        try:
            sock.recv(4096)
            answered += 1
        except socket.timeout:
            pass
print(sent, answered)
"""


@dataclass(frozen=True)
class DnsFloodReport:
    names: int  # distinct names asked
    answered: int
    addresses: int  # distinct addresses the answers named
    seconds: float


def flood_policy(directory: Path, source: Path = OFFICE_POLICY) -> Path:
    """`source` with the flood's resolver added to dns.resolvers."""
    text, changed = re.subn(r"(?m)^(  resolvers: \[)", rf"\g<1>{FLOOD_RESOLVER}, ", source.read_text())
    if changed != 1:
        raise RuntimeError("office.yaml's dns.resolvers moved; update flood_policy")
    policy = directory / "dns_flood.yaml"
    policy.write_text(text)
    return policy


def dns_answer_flood(lab: Lab, hosts: list[str], names_per_host: int, records: int, domain: str,
                     seconds: float) -> DnsFloodReport:
    """Every host asks `names_per_host` distinct names; bounded by `seconds` (the resolver stops itself)."""
    lab.run(INTERNET, ["ip", "addr", "add", f"{FLOOD_RESOLVER}/32", "dev", "lo"])
    log = lab.workdir / "flood_resolver.log"
    resolver = lab.popen(INTERNET, [sys.executable, "-c", RESOLVER, FLOOD_RESOLVER, FLOOD_PREFIX, str(records),
                                    str(seconds + 30)], log_name=log.name)
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and "ready" in log.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError("the flood's resolver did not start")
            time.sleep(0.1)
        started = time.monotonic()
        clients = [lab.popen(host, [sys.executable, "-c", CLIENT, FLOOD_RESOLVER, domain,
                                    str(index * names_per_host), str(names_per_host), str(seconds)],
                             log_name=f"flood_client_{host}.log") for index, host in enumerate(hosts)]
        for client in clients:
            client.wait(seconds + 30)
        took = time.monotonic() - started
        sent = answered = 0
        for host in hosts:
            words = (lab.workdir / f"flood_client_{host}.log").read_text().split()
            sent, answered = sent + int(words[-2]), answered + int(words[-1])
    finally:
        resolver.kill()
    return DnsFloodReport(sent, answered, answered * records, took)
