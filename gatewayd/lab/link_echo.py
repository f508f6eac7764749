"""Which line did a connection take? A TCP server that tells each client the address it came from.

Behind per-link NAT the server sees the gateway's address on the link the
connection left by, so the first line it sends names the link. Run as a script
in a lab namespace (stdlib only, bounded everywhere):

  server ADDRESS PORT [ADDRESS PORT ...]   answer "PEER\\n", then echo lines until the client closes
  count ADDRESS PORT N                     N connections one after another: JSON {peer: count}
  hold ADDRESS PORT N SECONDS              N connections kept open and pinged every 0.2 s: prints
                                           {"opened": [peer...]} then, at the end,
                                           {"alive": [i...], "dead": {i: seconds_after_start}}
  until ADDRESS PORT PEER SECONDS          prints "ready", then a new connection every 50 ms until one
                                           comes from PEER: {"at": monotonic time of that answer}
  rtt ADDRESS PORT COUNT [SECONDS]         one connection, COUNT request/answer round trips 20 ms apart
                                           (fewer if SECONDS pass first): {"median_ms", "p90_ms", "lost", "rounds"}
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time

CONNECT_TIMEOUT = 1.0
PING_EVERY = 0.2


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(f"{self.client_address[0]}\n".encode())
        for line in self.rfile:  # the client decides how long a connection lives
            self.wfile.write(line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(pairs: list[tuple[str, int]]) -> None:
    servers = [(_Server6 if ":" in address else _Server)((address, port), _Echo) for address, port in pairs]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def ask(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> tuple[socket.socket, str]:
    sock = socket.create_connection((address, port), timeout=timeout)
    peer = sock.makefile("r").readline().strip()
    if not peer:
        sock.close()
        raise OSError("no answer")
    return sock, peer


def count(address: str, port: int, connections: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(connections):
        try:
            sock, peer = ask(address, port)
            sock.close()
        except OSError:
            peer = "failed"
        seen[peer] = seen.get(peer, 0) + 1
    return seen


def hold(address: str, port: int, connections: int, seconds: float) -> None:
    opened = [ask(address, port) for _ in range(connections)]
    print(json.dumps({"opened": [peer for _, peer in opened]}), flush=True)
    readers = [sock.makefile("r") for sock, _ in opened]
    started = time.monotonic()
    dead: dict[int, float] = {}
    while time.monotonic() - started < seconds:
        for index, (sock, _) in enumerate(opened):
            if index in dead:
                continue
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.sendall(b"ping\n")
                if readers[index].readline() != "ping\n":
                    raise OSError("closed")
            except OSError:
                dead[index] = round(time.monotonic() - started, 2)
        time.sleep(PING_EVERY)
    alive = [i for i in range(connections) if i not in dead]
    print(json.dumps({"alive": alive, "dead": dead}), flush=True)


def until(address: str, port: int, peer: str, seconds: float) -> None:
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock, answered = ask(address, port, timeout=0.3)
            sock.close()
            if answered == peer:
                print(json.dumps({"at": time.monotonic()}), flush=True)
                return
        except OSError:
            pass
        time.sleep(0.05)
    print(json.dumps({"at": None}), flush=True)


def rtt(address: str, port: int, rounds: int, seconds: float = 3600.0) -> dict[str, float]:
    """Round trips of a small request on one connection, as an ERP client's clicks are."""
    deadline = time.monotonic() + seconds
    sock, _ = ask(address, port, timeout=3.0)
    reader = sock.makefile("r")
    sock.settimeout(2.0)
    samples: list[float] = []
    lost = 0
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        started = time.monotonic()
        try:
            sock.sendall(b"erp request\n")
            if reader.readline() != "erp request\n":
                raise OSError("closed")
            samples.append((time.monotonic() - started) * 1000)
        except OSError:
            lost += 1
            break
        time.sleep(0.02)
    sock.close()
    samples.sort()
    if not samples:
        return {"median_ms": float("inf"), "p90_ms": float("inf"), "lost": float(lost), "rounds": 0.0}
    return {"median_ms": round(samples[len(samples) // 2], 3),
            "p90_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.9))], 3), "lost": float(lost),
            "rounds": float(len(samples))}


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "server":
        serve([(args[i], int(args[i + 1])) for i in range(0, len(args), 2)])
    elif mode == "count":
        print(json.dumps(count(args[0], int(args[1]), int(args[2]))), flush=True)
    elif mode == "hold":
        hold(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif mode == "rtt":
        print(json.dumps(rtt(args[0], int(args[1]), int(args[2]), *(float(a) for a in args[3:4]))), flush=True)
    elif mode == "until":
        until(args[0], int(args[1]), args[2], float(args[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
