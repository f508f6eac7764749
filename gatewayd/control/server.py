"""The daemon's end of the control socket, served from the main loop.

Short requests (status, confirm) are answered at once. An apply request is
answered when its health checks finish: the connection waits in the change
manager, the main loop goes on giving verdicts meanwhile.

The server knows no command itself: the daemon hands it a table of command
name -> handler, so control/ needs nothing from daemon/.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gatewayd.control.protocol import ControlError, Reply, encode, read_line

log = logging.getLogger("gatewayd.control")

REQUEST_TIMEOUT_SECONDS = 1.0

# A command gets the request and the way to answer it; it may keep `reply` to answer later.
CommandHandler = Callable[[dict[str, Any], Reply], None]


def peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", credentials)[1]  # struct ucred: pid, uid, gid
    return uid


class ControlServer:
    def __init__(self, path: Path, commands: Mapping[str, CommandHandler]) -> None:
        self.path = path
        self.commands = commands
        self._listener: socket.socket | None = None

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
        listener.listen(8)
        listener.setblocking(False)
        self._listener = listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def fds(self) -> list[int]:
        return [self._listener.fileno()] if self._listener is not None else []

    def serve_ready(self, readable: list[int]) -> None:
        if self._listener is None or self._listener.fileno() not in readable:
            return
        while True:
            try:
                connection, _ = self._listener.accept()
            except BlockingIOError:
                return
            self._handle(connection)

    def _handle(self, connection: socket.socket) -> None:
        connection.setblocking(True)
        connection.settimeout(REQUEST_TIMEOUT_SECONDS)

        def reply(message: dict[str, Any]) -> None:
            try:
                connection.sendall(encode(message))
            except OSError:
                pass  # the client went away; the change itself goes on
            finally:
                connection.close()

        try:
            if peer_uid(connection) != 0:
                reply({"ok": False, "error": "the control socket is for root only"})
                return
            request = json.loads(read_line(connection) or b"{}")
            self._dispatch(request, reply)
        except (ControlError, ValueError, OSError) as exc:
            reply({"ok": False, "error": f"bad request: {exc}"})
        except Exception as exc:  # a bug in a command must not take the gateway down
            log.exception("event=control_request_failed")
            reply({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def _dispatch(self, request: dict[str, Any], reply: Reply) -> None:
        command = request.get("command")
        handler = self.commands.get(command) if isinstance(command, str) else None
        if handler is None:
            reply({"ok": False, "error": f"unknown command {command!r} (expected {', '.join(self.commands)})"})
            return
        handler(request, reply)
