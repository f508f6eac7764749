"""The daemon's end of the control socket, served from the main loop without ever blocking it.

Every socket is non-blocking and driven by the main loop's select: the
listener, and each client with its own input and output buffer. A client may
take its time, but not the loop's: a request must arrive whole within
REQUEST_TIMEOUT_SECONDS and fit in MAX_REQUEST_BYTES, at most MAX_CLIENTS are
served at once, and an answer the client does not read within
REQUEST_TIMEOUT_SECONDS is dropped with the connection. An idle client that
sends nothing therefore costs one file descriptor for a few seconds, never a
verdict.

Short requests (status, confirm) are answered at once. An apply request is
answered when its health checks finish: the connection waits in the change
manager, the main loop goes on giving verdicts meanwhile.

The server knows no command itself: the daemon hands it a table of command
name -> handler, so control/ needs nothing from daemon/.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayd.control.protocol import MAX_REQUEST_BYTES, Reply, encode

log = logging.getLogger("gatewayd.control")

REQUEST_TIMEOUT_SECONDS = 5.0  # to send a whole request, and to read its answer
MAX_CLIENTS = 16  # connections served at once; more are told so and closed
SEND_CHUNK_BYTES = 65536

# A command gets the request and the way to answer it; it may keep `reply` to answer later.
CommandHandler = Callable[[dict[str, Any], Reply], None]


def peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", credentials)[1]  # struct ucred: pid, uid, gid
    return uid


class ClientState(enum.Enum):
    READING = "reading"  # the request is arriving
    WAITING = "waiting"  # a command holds `reply` (an apply waits for its health checks)
    WRITING = "writing"  # the answer is going out


@dataclass
class Client:
    connection: socket.socket
    deadline: float  # monotonic; for READING and WRITING
    state: ClientState = ClientState.READING
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)


class ControlServer:
    def __init__(self, path: Path, commands: Mapping[str, CommandHandler],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.commands = commands
        self._clock = clock
        self._listener: socket.socket | None = None
        self._clients: dict[int, Client] = {}

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.is_socket():
            self.path.unlink()  # left by a daemon that died: nobody else may own our path
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # created 0600: root only, no window with wider rights
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(MAX_CLIENTS)
        listener.setblocking(False)
        self._listener = listener

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def fds(self) -> list[int]:
        """What the loop waits to read: the listener and the clients still sending their request."""
        listening = [self._listener.fileno()] if self._listener is not None else []
        return listening + [fd for fd, client in self._clients.items() if client.state is ClientState.READING]

    def write_fds(self) -> list[int]:
        return [fd for fd, client in self._clients.items() if client.state is ClientState.WRITING]

    def seconds_to_next_deadline(self, now: float) -> float | None:
        deadlines = [c.deadline for c in self._clients.values() if c.state is not ClientState.WAITING]
        return max(0.0, min(deadlines) - now) if deadlines else None

    def serve_ready(self, readable: Iterable[int], writable: Iterable[int] = ()) -> None:
        """From the main loop, after select: accept, read, write what is ready; close what is overdue."""
        ready = set(readable)
        if self._listener is not None and self._listener.fileno() in ready:
            self._accept_all()
        for fd in ready:
            client = self._clients.get(fd)
            if client is not None and client.state is ClientState.READING:
                self._read(client)
        for fd in writable:
            client = self._clients.get(fd)
            if client is not None and client.state is ClientState.WRITING:
                self._flush(client)
        now = self._clock()
        for client in list(self._clients.values()):
            if client.state is not ClientState.WAITING and now >= client.deadline:
                log.info("event=control_client_timeout state=%s", client.state.value)
                self._drop(client)

    def _accept_all(self) -> None:
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: the loop goes on, the client retries
                log.warning("event=control_accept_failed error=%r", str(exc))
                return
            connection.setblocking(False)
            client = Client(connection, self._clock() + REQUEST_TIMEOUT_SECONDS)
            self._clients[connection.fileno()] = client
            if len(self._clients) > MAX_CLIENTS:
                self._answer(client, {"ok": False, "error": f"too many control clients (at most {MAX_CLIENTS})"})
            elif peer_uid(connection) != 0:
                self._answer(client, {"ok": False, "error": "the control socket is for root only"})

    def _read(self, client: Client) -> None:
        try:
            chunk = client.connection.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        if not chunk:  # the client closed before a whole request
            self._drop(client)
            return
        client.inbox += chunk
        line, newline, _ = client.inbox.partition(b"\n")
        if len(line) > MAX_REQUEST_BYTES:
            self._answer(client, {"ok": False, "error": f"bad request: message longer than {MAX_REQUEST_BYTES} bytes"})
        elif newline:
            self._handle(client, bytes(line))

    def _handle(self, client: Client, line: bytes) -> None:
        client.state = ClientState.WAITING
        answered = False

        def reply(message: dict[str, Any]) -> None:
            nonlocal answered
            if not answered:  # a command answers once
                answered = True
                self._answer(client, message)

        try:
            request = json.loads(line or b"{}")
        except ValueError as exc:
            reply({"ok": False, "error": f"bad request: {exc}"})
            return
        if not isinstance(request, dict):
            reply({"ok": False, "error": "bad request: expected a JSON object"})
            return
        try:
            self._dispatch(request, reply)
        except Exception as exc:  # a bug in a command must not take the gateway down
            log.exception("event=control_request_failed")
            reply({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def _answer(self, client: Client, message: dict[str, Any]) -> None:
        if self._clients.get(client.connection.fileno()) is not client:
            return  # the client went away meanwhile; the change itself goes on
        client.state = ClientState.WRITING
        client.deadline = self._clock() + REQUEST_TIMEOUT_SECONDS
        client.outbox += encode(message)
        self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            while client.outbox:
                sent = client.connection.send(client.outbox[:SEND_CHUNK_BYTES])
                del client.outbox[:sent]
        except BlockingIOError:
            return  # the rest when select says the socket is writable
        except OSError:
            pass  # the client went away
        self._drop(client)

    def _drop(self, client: Client) -> None:
        self._clients.pop(client.connection.fileno(), None)
        client.connection.close()

    def _dispatch(self, request: dict[str, Any], reply: Reply) -> None:
        command = request.get("command")
        handler = self.commands.get(command) if isinstance(command, str) else None
        if handler is None:
            reply({"ok": False, "error": f"unknown command {command!r} (expected {', '.join(self.commands)})"})
            return
        handler(request, reply)
