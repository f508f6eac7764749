"""Method, Host and path of an HTTP/1.x request at the start of a client->server stream."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

_METHODS: tuple[bytes, ...] = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT",
    b"SEARCH", b"SUBSCRIBE", b"NOTIFY", b"M-SEARCH", b"PURGE",
)
_METHOD_PREFIXES: tuple[bytes, ...] = tuple(method + b" " for method in _METHODS)
_FIRST_BYTES = frozenset(method[0] for method in _METHODS)
_LONGEST_PREFIX = max(len(prefix) for prefix in _METHOD_PREFIXES)
_MAX_REQUEST_LINE = 8192
_MAX_HEADER_LINES = 100


class HttpParse(Enum):
    NEED_MORE = "need-more"
    NOT_HTTP = "not-http"


# Final, so that `result is NEED_MORE` and the like narrow `result` for the type checker.
NEED_MORE: Final = HttpParse.NEED_MORE
NOT_HTTP: Final = HttpParse.NOT_HTTP


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    host: str | None  # lowercase, port and brackets stripped; None when the request names no host
    path: str
    version: str


def parse_request(stream: bytes | bytearray) -> HttpRequest | HttpParse:
    """Classify the start of a client->server stream. Never raises."""
    try:
        return _parse(bytes(stream))
    except Exception:
        return NOT_HTTP


def _parse(stream: bytes) -> HttpRequest | HttpParse:
    if not stream:
        return NEED_MORE
    if stream[0] not in _FIRST_BYTES:
        return NOT_HTTP
    if not stream.startswith(_METHOD_PREFIXES):
        if len(stream) < _LONGEST_PREFIX and any(prefix.startswith(stream) for prefix in _METHOD_PREFIXES):
            return NEED_MORE
        return NOT_HTTP
    line_end = stream.find(b"\n")
    if line_end < 0:
        return NEED_MORE if len(stream) < _MAX_REQUEST_LINE else NOT_HTTP
    request_line = stream[:line_end].rstrip(b"\r")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[1] or not parts[2].startswith(b"HTTP/1."):
        return NOT_HTTP
    method = parts[0].decode("ascii")
    target = parts[1].decode("latin-1")
    version = parts[2].decode("latin-1")
    host: str | None = None
    position = line_end + 1
    for _ in range(_MAX_HEADER_LINES):
        next_end = stream.find(b"\n", position)
        if next_end < 0:
            return NEED_MORE  # Host not seen yet and headers not finished
        line = stream[position:next_end].rstrip(b"\r")
        if not line:
            break  # end of headers
        if line[:5].lower() == b"host:":
            host = _normalise_host(line[5:].decode("latin-1"))
            break
        position = next_end + 1
    if host is None:
        host = _host_from_target(method, target)
    return HttpRequest(method, host, target, version)


def _normalise_host(raw: str) -> str | None:
    host = raw.strip().lower()
    if host.startswith("["):  # [v6]:port
        closing = host.find("]")
        host = host[1:closing] if closing > 0 else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    return host or None


def _host_from_target(method: str, target: str) -> str | None:
    """Host from an absolute-form target (proxies) or CONNECT's authority-form."""
    lowered = target.lower()
    for scheme in ("http://", "https://"):
        if lowered.startswith(scheme):
            authority = lowered[len(scheme):].split("/", 1)[0].rsplit("@", 1)[-1]
            return _normalise_host(authority)
    if method == "CONNECT":
        return _normalise_host(lowered)
    return None
