"""The lab internet's application server (standalone script, run inside the ``inet`` namespace).

Usage: ``python3 internet_server.py CONFIG.json``.  Binds dual-stack wildcard sockets,
so it serves every address the namespace owns (all lab server addresses):

* HTTP (port 80): any Host; ``GET /bytes/N`` returns N bytes (capped at 50 MB),
  ``POST`` discards the body and reports its size; anything else returns a short text.
* HTTPS (443, and 8443 for the ERP): the same handler behind TLS with the lab's
  self-signed certificate; any SNI is accepted because there is a single cert.
* BitTorrent peer (6881): reads a 68-byte handshake, answers with its own.
* UDP echo (7, 443), bound on each configured server address.

Bounded: at most MAX_CONNECTIONS handler threads and a timeout on every socket.
Exits when the lab process that started it goes away (parent-pid watchdog), and then
also stops every other process in the inet namespace (dnsmasq, iperf3).
No imports from gatewayd: it must run with nothing but the standard library.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_CONNECTIONS = 256
MAX_BYTES = 50 * 1024 * 1024
SOCKET_TIMEOUT_SECONDS = 30.0
BT_PROTOCOL = b"BitTorrent protocol"
BT_HANDSHAKE_LEN = 1 + len(BT_PROTOCOL) + 8 + 20 + 20  # = 68
BT_PEER_ID = b"-GL0001-labpeer00000"  # 20 bytes, Azureus-style client id
CHUNK = b"\x00" * 65536

_connection_slots = threading.BoundedSemaphore(MAX_CONNECTIONS)


class _ServerStub(socketserver.BaseServer):
    """What BaseHTTPRequestHandler expects of ``self.server``: a server that never listens
    (connections are accepted elsewhere), plus the scheme and port the handler reports."""

    def __init__(self, scheme: str, port: int) -> None:
        super().__init__(("", port), LabHttpHandler)
        self.scheme = scheme
        self.port = port


class LabHttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection keeps the server simple
    server_version = "gatewayd-lab"
    server: _ServerStub

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_POST(self) -> None:
        remaining = min(int(self.headers.get("Content-Length") or 0), MAX_BYTES)
        received = 0
        while remaining > 0:
            data = self.rfile.read(min(remaining, 65536))
            if not data:
                break
            received += len(data)
            remaining -= len(data)
        self._send_text(f"received {received} bytes\n")

    def _respond(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/bytes/"):
            try:
                size = min(int(path.removeprefix("/bytes/")), MAX_BYTES)
            except ValueError:
                self.send_error(400, "bad size")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if send_body:
                remaining = size
                while remaining > 0:
                    piece = CHUNK[: min(remaining, len(CHUNK))]
                    self.wfile.write(piece)
                    remaining -= len(piece)
            return
        host = self.headers.get("Host", "")
        self._send_text(f"lab site {host} via {self.server.scheme} port {self.server.port} path {path}\n",
                        send_body)

    def _send_text(self, text: str, send_body: bool = True) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the lab must stay quiet; failures surface in client results


def serve_http(conn: socket.socket, addr: Any, port: int, tls: ssl.SSLContext | None) -> None:
    if tls is not None:
        conn = tls.wrap_socket(conn, server_side=True)  # handshake happens here
    LabHttpHandler(conn, addr, _ServerStub("https" if tls else "http", port))


def serve_bittorrent(conn: socket.socket, addr: Any, port: int, tls: ssl.SSLContext | None) -> None:
    handshake = _recv_exactly(conn, BT_HANDSHAKE_LEN)
    if handshake is None or handshake[0] != len(BT_PROTOCOL) or handshake[1:20] != BT_PROTOCOL:
        return
    info_hash = handshake[28:48]
    conn.sendall(bytes([len(BT_PROTOCOL)]) + BT_PROTOCOL + bytes(8) + info_hash + BT_PEER_ID)
    # Linger briefly so the client reads the answer before our FIN.
    conn.settimeout(5)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        piece = conn.recv(size - len(data))
        if not piece:
            return None
        data += piece
    return data


Handler = Callable[[socket.socket, Any, int, "ssl.SSLContext | None"], None]


def _dual_stack_socket(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    return sock


def _accept_loop(listener: socket.socket, port: int, handler: Handler, tls: ssl.SSLContext | None) -> None:
    while True:
        conn, addr = listener.accept()
        if not _connection_slots.acquire(blocking=False):
            conn.close()  # over the bound: shed load rather than queue forever
            continue
        conn.settimeout(SOCKET_TIMEOUT_SECONDS)
        threading.Thread(target=_handle, args=(conn, addr, port, handler, tls), daemon=True).start()


def _handle(conn: socket.socket, addr: Any, port: int, handler: Handler, tls: ssl.SSLContext | None) -> None:
    try:
        handler(conn, addr, port, tls)
    except (OSError, ssl.SSLError, ValueError):
        pass  # client went away / bad TLS / garbage: nothing to report server-side
    finally:
        try:
            conn.close()
        except OSError:
            pass
        _connection_slots.release()


def _udp_echo_loop(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)


def _watch_parent(parent_pid: int) -> None:
    # Re-parenting (to init or a subreaper) means the lab died without cleanup.
    while True:
        if os.getppid() != parent_pid:
            _kill_namespace_companions()
            os._exit(0)
        time.sleep(0.5)


def _kill_namespace_companions() -> None:
    """Take the other inet services down with us.

    dnsmasq changes its credentials at start, which clears the parent-death signal the
    lab set, so it would otherwise outlive a crashed lab.  Only processes in our own
    network namespace (the lab's inet) are touched.
    """
    own_netns = os.readlink("/proc/self/ns/net")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == own_netns:
                os.kill(int(entry), signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(config["cert"], config["key"])

    listeners: list[tuple[socket.socket, int, Handler, ssl.SSLContext | None]] = []
    for port in config["http_ports"]:
        listeners.append((_dual_stack_socket(socket.SOCK_STREAM, port), port, serve_http, None))
    for port in config["https_ports"]:
        listeners.append((_dual_stack_socket(socket.SOCK_STREAM, port), port, serve_http, tls))
    for port in config["bittorrent_ports"]:
        listeners.append((_dual_stack_socket(socket.SOCK_STREAM, port), port, serve_bittorrent, None))
    for sock, port, handler, ctx in listeners:
        sock.listen(128)
        threading.Thread(target=_accept_loop, args=(sock, port, handler, ctx), daemon=True).start()
    # UDP is bound per address, not to the wildcard: a wildcard socket would answer from
    # the route's source address (198.51.100.2), which connected clients ignore.
    for address in config["addresses"]:
        for port in config["udp_echo_ports"]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((address, port))
            threading.Thread(target=_udp_echo_loop, args=(udp,), daemon=True).start()

    parent_pid = int(config["parent_pid"])

    def on_sigterm(signum: int, frame: Any) -> None:
        # SIGTERM comes from lab cleanup or from the parent-death signal; in the latter
        # case nobody else will stop our companions.
        if os.getppid() != parent_pid:
            _kill_namespace_companions()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    Path(config["ready_file"]).write_text(str(os.getpid()))
    _watch_parent(parent_pid)


if __name__ == "__main__":
    main(sys.argv[1])
