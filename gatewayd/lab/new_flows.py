"""New flows, one after another, from one lab host: how long each waits for the gateway.

Each flow is new to the gateway, so its packets go through the classifier's
queue: a DNS query from a fresh UDP socket (the answer is queued, for DNS
learning) alternating with a TCP connect to a lab site. The script runs until
its stop file appears or its time is up (bounded either way) and reports each
flow's start (CLOCK_MONOTONIC, the same in every namespace), its round trip
and whether it completed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gatewayd.lab.runner import NamespaceRunner

SCRIPT = r"""
import json, os, socket, struct, sys, time
p = json.loads(sys.argv[1])
query_id = 0
def dns_query(name):
    global query_id
    query_id = (query_id + 1) & 0xFFFF
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    message = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(p["timeout"])
        s.sendto(message, (p["dns"], 53))
        while True:
            answer = s.recv(4096)
            if answer[:2] == message[:2]:
                return
def tcp_connect():
    with socket.create_connection((p["site"], p["port"]), timeout=p["timeout"]):
        pass
flows, deadline, number = [], time.monotonic() + p["seconds"], 0
print("started", flush=True)
while time.monotonic() < deadline and not os.path.exists(p["stop_file"]):
    kind = "dns" if number % 2 == 0 else "tcp"
    started = time.monotonic()
    try:
        dns_query(p["name"]) if kind == "dns" else tcp_connect()
        ok = True
    except OSError:
        ok = False
    flows.append({"kind": kind, "started": started, "seconds": time.monotonic() - started, "ok": ok})
    number += 1
    time.sleep(max(0.0, p["interval"] - (time.monotonic() - started)))
print(json.dumps(flows), flush=True)
"""


@dataclass(frozen=True)
class NewFlow:
    kind: str  # "dns" or "tcp"
    started: float  # time.monotonic()
    seconds: float  # query to answer, or SYN to established
    ok: bool


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class NewFlowProbe:
    def __init__(self, lab: NamespaceRunner, client: str, dns_server: str, name: str, site: str,
                 max_seconds: float, interval: float = 0.02, port: int = 443, timeout: float = 2.0) -> None:
        self.max_seconds = max_seconds
        self.stop_file = lab.workdir / f"new-flows-stop-{client}"
        self.stop_file.unlink(missing_ok=True)
        params = {"dns": dns_server, "name": name, "site": site, "port": port, "timeout": timeout,
                  "seconds": max_seconds, "interval": interval, "stop_file": str(self.stop_file)}
        self.process = lab.popen(client, [sys.executable, "-c", SCRIPT, json.dumps(params)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        first = self.process.stdout.readline().decode().strip()
        if first != "started":
            raise RuntimeError(f"the new-flow probe did not start: {first!r}")

    def stop(self) -> list[NewFlow]:
        Path(self.stop_file).touch()
        out, err = self.process.communicate(timeout=self.max_seconds + 30)
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"the new-flow probe reported nothing: {err.decode()[-500:]}")
        return [NewFlow(**row) for row in json.loads(lines[-1])]
