"""The control server dispatches by a table the daemon gives it; it knows no command itself."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from gatewayd.control import server as server_module
from gatewayd.control.protocol import Reply, encode, read_line
from gatewayd.control.server import ControlServer
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_with_text

PLAN_DIR = Path(__file__).parent / "plan"


@pytest.fixture(autouse=True)
def peer_is_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer of a socket pair is this test process; let it pass the root-only check without root."""
    monkeypatch.setattr(server_module, "peer_uid", lambda _connection: 0)


def ask(server: ControlServer, message: dict[str, Any]) -> dict[str, Any]:
    """One request over a socket pair, answered as the main loop would answer it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        ours.sendall(encode(message))
        worker = threading.Thread(target=server._handle, args=(theirs,))
        worker.start()
        worker.join(timeout=5)
        assert not worker.is_alive()
        answer: dict[str, Any] = json.loads(read_line(ours))
        return answer


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
