"""One lab host opening many TCP flows that each send part of a TLS ClientHello and never finish it.

The abuse the classifier's memory budgets are for (classify/flow_budget.py):
every flow leaves a reassembly buffer in the classifier. A sink in the
internet namespace accepts and holds the connections without reading; the
flooding host connects, sends its segments one `send` each (TCP_NODELAY, so
each is a segment of its own) and keeps the sockets open until it is told to
stop. Both sides are bounded: a flow count, a deadline, a file-descriptor limit.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from gatewayd.lab.office import OFFICE_POLICY
from gatewayd.lab.quic_initial import client_hello
from gatewayd.lab.topology import INTERNET

if TYPE_CHECKING:
    from gatewayd.lab.topology import Lab

FIRST_SINK_PORT = 9001  # no catalog app owns 9001-9099: the classifier must look at the payload
ANNOUNCED_HELLO_BYTES = 16124  # what the unfinished hello claims; it never sends that much
# Each process holds its flows' sockets; the lab machine's hard descriptor limit (20,000 here,
# not raisable without CAP_SYS_RESOURCE) caps a process, so big floods are split over pairs
# of flooder and sink, one sink port each.
FLOWS_PER_PROCESS = 16000

SINK_SCRIPT = r"""
import resource, select, socket, sys, time
address, port, limit, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit + 64, hard), hard))
listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, port))
listener.listen(4096)
listener.setblocking(False)
poller = select.epoll()
poller.register(listener.fileno(), select.EPOLLIN)
print("listening", flush=True)
held, deadline = [], time.monotonic() + seconds
while time.monotonic() < deadline:
    if poller.poll(0.5):
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            held.append(connection)  # never read: the hello is never finished anyway
            if len(held) > limit:
                held.pop(0).close()
"""

FLOOD_SCRIPT = r"""
import json, resource, socket, struct, sys, time
address, port = sys.argv[1], int(sys.argv[2])
flows, seconds, segments = int(sys.argv[3]), float(sys.argv[4]), [bytes.fromhex(s) for s in sys.argv[5].split(",")]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(flows + 64, hard), hard))
family = socket.AF_INET6 if ":" in address else socket.AF_INET
started = time.monotonic()
deadline = started + seconds
held, failed, sent = [], 0, 0
for index in range(flows):
    if time.monotonic() > deadline:
        break
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST, no TIME_WAIT
    sock.settimeout(2.0)
    try:
        sock.connect((address, port))
        for segment in segments:
            sock.send(segment)
            sent += 1
    except OSError:
        failed += 1
        sock.close()
        continue
    held.append(sock)
print(json.dumps({"opened": len(held), "failed": failed, "segments": sent,
                  "seconds": round(time.monotonic() - started, 2)}), flush=True)
sys.stdin.readline()  # hold the flows open until told to stop (or the lab kills us)
for sock in held:
    sock.close()
"""


# A full segment on the lab's 1500-byte links: MSS 1460 less the 12 bytes of TCP timestamps.
# A 1460-byte send would leave as two segments (1448 + 12), each queued to the classifier.
SEGMENT_BYTES = 1448


def unfinished_hello(segments: int, segment_size: int = SEGMENT_BYTES) -> list[bytes]:
    """The first `segments` segments of a ClientHello that announces ~16,000 bytes."""
    head = (b"\x16\x03\x01" + (ANNOUNCED_HELLO_BYTES + 4).to_bytes(2, "big")
            + b"\x01" + ANNOUNCED_HELLO_BYTES.to_bytes(3, "big") + b"\x03\x03")
    body = head + bytes(range(256)) * 64
    return [body[index * segment_size:(index + 1) * segment_size] for index in range(segments)]


def tls_client_hello(server_name: str, key_share_size: int = 32) -> bytes:
    """A complete ClientHello in a TLS record (a key share of 1,800 bytes makes it two segments)."""
    handshake = client_hello(server_name, alpn=("h2", "http/1.1"), key_share_size=key_share_size)
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def unshaped_office_policy(directory: Path) -> Path:
    """office.yaml with a 1 Gbit/s link: the guests' bulk ceiling (30% of 20 Mbit/s) would
    otherwise drop the flood's segments, and what is measured is memory, not shaping."""
    text, changed = re.subn(r"(?m)^(  (?:upload|download): )\w+", r"\g<1>1gbit", OFFICE_POLICY.read_text())
    if changed != 2:
        raise RuntimeError("office.yaml's link rates moved; update unshaped_office_policy")
    policy = directory / "office.yaml"
    policy.write_text(text)
    return policy


@dataclass(frozen=True)
class FloodReport:
    opened: int  # flows connected and holding their segments
    failed: int  # connects or sends that failed (timeouts, resets)
    segments: int
    seconds: float


class HelloFlood:
    """Start the sinks, then the flood from `host`; `stop()` closes every flow. Use as a context manager."""

    def __init__(self, lab: Lab, host: str, address: str, flows: int, segments: list[bytes],
                 seconds: float) -> None:
        self.lab, self.host, self.address, self.flows = lab, host, address, flows
        self.segments, self.seconds = segments, seconds
        self._processes: list[subprocess.Popen[bytes]] = []
        self._flooders: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        shares = [min(FLOWS_PER_PROCESS, self.flows - start) for start in range(0, self.flows, FLOWS_PER_PROCESS)]
        segments = ",".join(s.hex() for s in self.segments)
        for index, share in enumerate(shares):
            port = str(FIRST_SINK_PORT + index)
            # The sink outlives the flood by a margin, so no flow is reset while it is held.
            sink = self.lab.popen(INTERNET, [sys.executable, "-c", SINK_SCRIPT, self.address, port, str(share),
                                             str(self.seconds + 120)], stdout=subprocess.PIPE)
            self._processes.append(sink)
            assert sink.stdout is not None
            if sink.stdout.readline().decode().strip() != "listening":
                raise RuntimeError("a hello-flood sink did not start")
        for index, share in enumerate(shares):
            flooder = self.lab.popen(self.host, [sys.executable, "-c", FLOOD_SCRIPT, self.address,
                                                 str(FIRST_SINK_PORT + index), str(share), str(self.seconds),
                                                 segments],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self._processes.append(flooder)
            self._flooders.append(flooder)
        return self

    def wait_opened(self) -> FloodReport:
        """Block until every flow is open and has sent its segments (or the deadline passed)."""
        reports = []
        for flooder in self._flooders:
            assert flooder.stdout is not None and flooder.stderr is not None
            line = flooder.stdout.readline().decode().strip()
            if not line:
                raise RuntimeError(f"a hello flooder reported nothing: {flooder.stderr.read().decode()[-500:]}")
            reports.append(json.loads(line))
        return FloodReport(opened=sum(r["opened"] for r in reports), failed=sum(r["failed"] for r in reports),
                           segments=sum(r["segments"] for r in reports),
                           seconds=max(r["seconds"] for r in reports))

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
