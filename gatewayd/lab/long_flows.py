"""Long-lived downloads from one lab host, to watch what a reload does to open connections.

Each flow is a plain HTTP GET of a large body, read at a capped pace for a
fixed time through a small receive buffer; the script then closes cleanly and reports, per flow, how it
ended: "completed", "reset" (RST from anywhere), "closed" (FIN before time),
"stalled" (no byte for `stall_seconds`, 2 s unless told), with the wall-clock time of its last byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from gatewayd.lab.runner import NamespaceRunner

SCRIPT = r"""
import json, socket, sys, threading, time
targets, seconds, rate = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
stall = float(sys.argv[4])
results = [None] * len(targets)
def one(index, address, host):
    started = time.time()
    last_byte, received, outcome = started, 0, "completed"
    try:
        # A small receive buffer: what the reader sees is what just crossed the gateway,
        # not seconds of data queued in the socket.
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.settimeout(5)
        sock.connect((address, 80))
        sock.settimeout(stall)
        sock.sendall(f"GET /bytes/50000000 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while time.time() - started < seconds:
            try:
                chunk = sock.recv(16384)
            except socket.timeout:
                outcome = "stalled"
                break
            if not chunk:
                outcome = "closed"
                break
            received += len(chunk)
            last_byte = time.time()
            ahead = received / rate - (last_byte - started)
            if ahead > 0:
                time.sleep(min(ahead, 0.05))
        sock.close()
    except ConnectionResetError:
        outcome = "reset"
    except OSError as exc:
        outcome = f"error: {exc}"
    results[index] = {"host": host, "outcome": outcome, "bytes": received, "last_byte": last_byte}
threads = [threading.Thread(target=one, args=(i, a, h)) for i, (a, h) in enumerate(targets)]
for thread in threads:
    thread.start()
print("started", flush=True)
for thread in threads:
    thread.join()
print(json.dumps(results), flush=True)
"""


@dataclass(frozen=True)
class FlowResult:
    host: str
    outcome: str
    bytes: int
    last_byte: float  # time.time() of the last byte received


class LongDownloads:
    def __init__(self, lab: NamespaceRunner, client: str, targets: list[tuple[str, str]], seconds: float,
                 bytes_per_second: float = 300_000, stall_seconds: float = 2.0) -> None:
        """targets: (server address, HTTP Host) pairs, one flow each."""
        self.seconds = seconds
        self.process = lab.popen(client, [sys.executable, "-c", SCRIPT, json.dumps(targets), str(seconds),
                                          str(bytes_per_second), str(stall_seconds)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        first = self.process.stdout.readline().decode().strip()
        if first != "started":
            raise RuntimeError(f"long downloads did not start: {first!r}")

    def results(self) -> list[FlowResult]:
        out, err = self.process.communicate(timeout=self.seconds + 30)
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"long downloads reported nothing: {err.decode()[-500:]}")
        return [FlowResult(**row) for row in json.loads(lines[-1])]
