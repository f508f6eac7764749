"""The control server dispatches by a table the daemon gives it; it knows no command itself."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.control import server as server_module
from gatewayd.control.protocol import MAX_REQUEST_BYTES, Reply, encode
from gatewayd.control.server import ControlServer
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_with_text

PLAN_DIR = Path(__file__).parent / "plan"


@pytest.fixture(autouse=True)
def peer_is_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer of a socket pair is this test process; let it pass the root-only check without root."""
    monkeypatch.setattr(server_module, "peer_uid", lambda _connection: 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loop_turn(server: ControlServer, timeout: float = 0.05) -> None:
    """One turn of the daemon's main loop, as far as the control socket goes."""
    readable, writable, _ = select.select(server.fds(), server.write_fds(), [], timeout)
    server.serve_ready(readable, writable)


def connect(server: ControlServer) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(str(server.path))
    return client


def answer_of(server: ControlServer, client: socket.socket, turns: int = 40) -> dict[str, Any]:
    """Turn the loop until the client has its whole answer line (bounded)."""
    client.setblocking(False)
    received = b""
    for _ in range(turns):
        loop_turn(server)
        try:
            received += client.recv(65536)
        except BlockingIOError:
            continue
        if received.endswith(b"\n"):
            answer: dict[str, Any] = json.loads(received)
            return answer
    raise AssertionError(f"no answer within {turns} loop turns (got {received!r})")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, FakeClock]]:
    clock = FakeClock()
    server = ControlServer(tmp_path / "control.sock", {"echo": lambda request, reply: reply(
        {"ok": True, "echo": request["text"]})}, clock=clock)
    server.open()
    try:
        yield server, clock
    finally:
        server.close()


def ask(server: ControlServer, message: dict[str, Any]) -> dict[str, Any]:
    """One request over the server's socket, answered by turns of the loop."""
    server.open()
    try:
        with connect(server) as client:
            client.sendall(encode(message))
            return answer_of(server, client)
    finally:
        server.close()


def test_a_command_goes_to_its_handler_and_an_unknown_one_lists_the_table(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def echo(request: dict[str, Any], reply: Reply) -> None:
        seen.append(request)
        reply({"ok": True, "echo": request["text"]})

    def later(_request: dict[str, Any], _reply: Reply) -> None:
        pass

    server = ControlServer(tmp_path / "control.sock", {"echo": echo, "later": later})
    answer = ask(server, {"command": "echo", "text": "hi"})
    assert answer == {"ok": True, "echo": "hi"} and seen == [{"command": "echo", "text": "hi"}]
    assert ask(server, {"command": "reboot"}) == {
        "ok": False, "error": "unknown command 'reboot' (expected echo, later)"}


def test_a_handler_that_fails_answers_an_internal_error(tmp_path: Path) -> None:
    def broken(request: dict[str, Any], _reply: Reply) -> None:
        raise KeyError("policy")

    answer = ask(ControlServer(tmp_path / "control.sock", {"apply": broken}), {"command": "apply"})
    assert answer["ok"] is False
    assert answer["error"] == "internal error: KeyError: 'policy'"


def test_the_policy_comes_with_the_exact_text_it_was_loaded_from(tmp_path: Path) -> None:
    path = PLAN_DIR / "small.yaml"
    policy, text = load_policy_with_text(str(path), str(PLAN_DIR / "catalog.yaml"))
    assert text == path.read_text() and policy.interfaces.wan == "wan0"
    try:
        load_policy_with_text(str(tmp_path / "missing.yaml"))
    except PolicyError as exc:
        assert "no such file" in str(exc.issues[0])
    else:
        raise AssertionError("a missing file must raise PolicyError")


def test_an_idle_client_holds_up_nobody_and_is_closed_after_the_timeout(
        served: tuple[ControlServer, FakeClock]) -> None:
    server, clock = served
    with connect(server) as idle, connect(server) as partial:
        partial.sendall(b'{"command": "ec')  # half a request, the rest never comes
        loop_turn(server)
        started = time.monotonic()
        with connect(server) as other:
            other.sendall(encode({"command": "echo", "text": "still here"}))
            assert answer_of(server, other) == {"ok": True, "echo": "still here"}
        assert time.monotonic() - started < 1.0
        assert server.client_count == 2
        clock.now += server_module.REQUEST_TIMEOUT_SECONDS + 0.1
        loop_turn(server)
        assert server.client_count == 0
        assert idle.recv(100) == b"" and partial.recv(100) == b""  # closed by the daemon


def test_a_request_may_arrive_in_pieces(served: tuple[ControlServer, FakeClock]) -> None:
    server, _ = served
    with connect(server) as client:
        line = encode({"command": "echo", "text": "pieces"})
        for start in range(0, len(line), 5):
            client.sendall(line[start:start + 5])
            loop_turn(server, timeout=0.01)
        assert answer_of(server, client) == {"ok": True, "echo": "pieces"}


def test_an_oversized_request_is_refused_without_reading_all_of_it(served: tuple[ControlServer, FakeClock]) -> None:
    server, _ = served
    with connect(server) as client:
        client.sendall(b"x" * (MAX_REQUEST_BYTES + 10))
        answer = answer_of(server, client, turns=200)
        assert answer["ok"] is False and "longer than" in answer["error"]
        assert server.client_count == 0


def test_clients_beyond_the_limit_are_told_and_closed(served: tuple[ControlServer, FakeClock]) -> None:
    server, _ = served
    waiting = [connect(server) for _ in range(server_module.MAX_CLIENTS)]
    try:
        loop_turn(server)
        assert server.client_count == server_module.MAX_CLIENTS
        with connect(server) as one_too_many:
            answer = answer_of(server, one_too_many)
            assert answer["ok"] is False and "too many" in answer["error"]
        assert server.client_count == server_module.MAX_CLIENTS
    finally:
        for client in waiting:
            client.close()


def test_an_answer_comes_later_when_the_command_keeps_reply(served: tuple[ControlServer, FakeClock]) -> None:
    server, clock = served
    kept: list[Reply] = []
    server.commands = {"apply": lambda _request, reply: kept.append(reply)}
    with connect(server) as client:
        client.sendall(encode({"command": "apply"}))
        for _ in range(3):
            loop_turn(server)
        clock.now += 10 * server_module.REQUEST_TIMEOUT_SECONDS  # waiting on the daemon is not idling
        loop_turn(server)
        assert kept and server.client_count == 1
        kept[0]({"ok": True, "state": "kept"})
        kept[0]({"ok": True, "state": "twice"})  # a second answer is ignored
        assert answer_of(server, client) == {"ok": True, "state": "kept"}
