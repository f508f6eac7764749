"""One JSON object per line each way, over a Unix stream socket only root can open."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = Path("/run/gatewayd/control.sock")
MAX_REQUEST_BYTES = 65536

# How the daemon answers one request; called once (an apply answers when its checks finish).
Reply = Callable[[dict[str, Any]], None]


class ControlError(RuntimeError):
    pass


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True).encode() + b"\n"


def read_line(connection: socket.socket, limit: int = MAX_REQUEST_BYTES) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ControlError(f"message longer than {limit} bytes")
    return data


def request(path: Path, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request and wait for its answer (apply waits for the health checks)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path))
            connection.sendall(encode(message))
            answer = read_line(connection, limit=16 * 1024 * 1024)
    except FileNotFoundError:
        raise ControlError(f"no gatewayd control socket at {path}: is the daemon running?") from None
    except PermissionError:
        raise ControlError(f"no permission to open {path}: the control socket is root's") from None
    except TimeoutError:
        raise ControlError(f"gatewayd did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to gatewayd at {path}: {exc}") from None
    if not answer:
        raise ControlError("gatewayd closed the connection without an answer")
    reply = json.loads(answer)
    if not isinstance(reply, dict):
        raise ControlError(f"gatewayd answered with JSON that is not an object: {answer[:200]!r}")
    return reply
