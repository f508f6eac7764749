"""Commit-confirm without a daemon: ChangeManager against a stand-in for the policy in force."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.control.health import HealthResult
from gatewayd.daemon import changes as changes_module
from gatewayd.daemon.changes import ChangeManager, RunningPolicy
from gatewayd.daemon.policy_builder import (
    BuildRequest,
    SwitchDone,
    SwitchResult,
    build_policy,
)
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy
from gatewayd.policy.model import Policy

PLAN_DIR = Path(__file__).parent / "plan"
CATALOG = str(PLAN_DIR / "catalog.yaml")
SMALL = PLAN_DIR / "small.yaml"


class StandInDaemon:
    """Records the two verbs a change may use; building compiles for real, nothing touches the kernel.

    A switch finishes at once, or, with `deferred`, when the test calls `finish_switch` (as the
    daemon's worker would finish some loop turns later)."""

    def __init__(self, deferred: bool = False) -> None:
        self.plan: Plan | None = compile_plan(load_policy(str(SMALL), CATALOG))
        self.generation = 1
        self.policy_path = str(SMALL)
        self.switched: list[Policy] = []
        self.recorded: list[tuple[str, str | None, bool]] = []
        self.deferred = deferred
        self.refuse_switches = False  # as while a reload is being built
        self._in_flight: Callable[[], None] | None = None

    def change_policy(self, request: BuildRequest, done: SwitchDone) -> bool:
        if self.refuse_switches or self._in_flight is not None:
            return False

        def finish() -> None:
            try:
                built = build_policy(request, self.plan, self.generation, CATALOG)
            except PolicyError as exc:
                done(SwitchResult(None, issues=tuple(exc.issues)))
                return
            self.plan = built.plan
            self.generation += 1
            self.switched.append(built.plan.policy)
            done(SwitchResult(built.plan, built.text, clock=built.clock))

        if self.deferred:
            self._in_flight = finish
        else:
            finish()
        return True

    def finish_switch(self) -> None:
        finish, self._in_flight = self._in_flight, None
        assert finish is not None, "no switch in flight"
        finish()

    def record_policy_in_force(self, path: str, text: str | None, *, degraded: bool) -> None:
        self.recorded.append((path, text, degraded))


class Replies:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


@pytest.fixture
def new_policy(tmp_path: Path) -> Path:
    path = tmp_path / "new.yaml"
    path.write_text(SMALL.read_text().replace("upload: 20mbit", "upload: 30mbit"))
    return path


def health_says(monkeypatch: pytest.MonkeyPatch, ok: bool) -> None:
    detail = "all good" if ok else "wan0 is down"
    monkeypatch.setattr(changes_module, "run_checks",
                        lambda _policy: HealthResult(ok, (("forwarding", ok, detail),)))


def checks_finished(manager: ChangeManager) -> None:
    assert manager.pending is not None
    manager.pending.health.result(timeout=5)


def test_the_stand_in_is_a_running_policy() -> None:
    daemon: RunningPolicy = StandInDaemon()  # mypy checks the Protocol here
    assert daemon.plan is not None


def test_a_policy_that_does_not_load_changes_nothing(tmp_path: Path) -> None:
    daemon, replies = StandInDaemon(), Replies()
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ninterfaces: [\n")
    manager = ChangeManager(daemon, count_revert=lambda: pytest.fail("nothing to revert"))
    manager.begin(str(broken), 30.0, replies)
    assert replies.messages[0]["ok"] is False and replies.messages[0]["issues"]
    assert daemon.switched == [] and daemon.recorded == [] and not manager.busy


def test_a_confirmed_change_becomes_the_policy_in_force(monkeypatch: pytest.MonkeyPatch, new_policy: Path) -> None:
    health_says(monkeypatch, ok=True)
    daemon, replies = StandInDaemon(), Replies()
    manager = ChangeManager(daemon, count_revert=lambda: pytest.fail("a confirmed change must not revert"))
    manager.begin(str(new_policy), 30.0, replies)
    assert len(daemon.switched) == 1 and daemon.recorded == []  # applied, not yet the policy in force
    checks_finished(manager)
    manager.poll(time.monotonic())
    assert replies.messages[-1]["state"] == "awaiting_confirm"
    confirmed = Replies()
    manager.confirm(confirmed)
    assert confirmed.messages == [{"ok": True, "state": "kept", "generation": 2}]
    assert daemon.recorded == [(str(new_policy), new_policy.read_text(), False)]
    assert not manager.busy


def test_a_failed_health_check_switches_back_and_counts_a_revert(monkeypatch: pytest.MonkeyPatch,
                                                                  new_policy: Path) -> None:
    health_says(monkeypatch, ok=False)
    daemon, replies = StandInDaemon(), Replies()
    previous = daemon.plan
    assert previous is not None
    reverts: list[int] = []
    manager = ChangeManager(daemon, count_revert=lambda: reverts.append(1))
    manager.begin(str(new_policy), None, replies)
    checks_finished(manager)
    manager.poll(time.monotonic())
    assert replies.messages[-1]["state"] == "reverted" and "wan0 is down" in replies.messages[-1]["reason"]
    assert daemon.switched[-1] is previous.policy and len(daemon.switched) == 2
    assert reverts == [1] and daemon.recorded == [] and not manager.busy


def test_no_confirm_before_the_deadline_reverts(monkeypatch: pytest.MonkeyPatch, new_policy: Path) -> None:
    health_says(monkeypatch, ok=True)
    daemon, replies = StandInDaemon(), Replies()
    reverts: list[int] = []
    manager = ChangeManager(daemon, count_revert=lambda: reverts.append(1))
    manager.begin(str(new_policy), 30.0, replies)
    checks_finished(manager)
    now = time.monotonic()
    manager.poll(now)
    manager.poll(now + 29)
    assert reverts == [] and manager.busy
    manager.poll(now + 31)
    assert reverts == [1] and len(daemon.switched) == 2 and daemon.recorded == [] and not manager.busy


def test_a_change_waits_for_its_build_and_refuses_a_second_one_meanwhile(monkeypatch: pytest.MonkeyPatch,
                                                                        new_policy: Path) -> None:
    health_says(monkeypatch, ok=True)
    daemon, replies = StandInDaemon(deferred=True), Replies()
    manager = ChangeManager(daemon, count_revert=lambda: pytest.fail("nothing to revert"))
    manager.begin(str(new_policy), 30.0, replies)
    assert manager.busy and replies.messages == [] and daemon.switched == []  # built off the loop
    second = Replies()
    manager.begin(str(new_policy), 30.0, second)
    assert second.messages[0]["ok"] is False and "pending" in second.messages[0]["error"]
    daemon.finish_switch()
    assert len(daemon.switched) == 1 and manager.pending is not None
    checks_finished(manager)
    manager.poll(time.monotonic())
    assert replies.messages[-1]["state"] == "awaiting_confirm"


def test_a_change_during_a_reload_is_refused_and_changes_nothing(new_policy: Path) -> None:
    daemon, replies = StandInDaemon(), Replies()
    daemon.refuse_switches = True
    manager = ChangeManager(daemon, count_revert=lambda: pytest.fail("nothing to revert"))
    manager.begin(str(new_policy), 30.0, replies)
    assert replies.messages[0]["ok"] is False and "reload is in progress" in replies.messages[0]["error"]
    assert daemon.switched == [] and not manager.busy


def test_a_failed_check_is_answered_only_once_the_previous_policy_is_back(monkeypatch: pytest.MonkeyPatch,
                                                                         new_policy: Path) -> None:
    health_says(monkeypatch, ok=False)
    daemon, replies = StandInDaemon(deferred=True), Replies()
    previous = daemon.plan
    assert previous is not None
    reverts: list[int] = []
    manager = ChangeManager(daemon, count_revert=lambda: reverts.append(1))
    manager.begin(str(new_policy), None, replies)
    daemon.finish_switch()
    checks_finished(manager)
    manager.poll(time.monotonic())
    assert replies.messages == [] and manager.busy and reverts == []  # the revert is still being built
    daemon.finish_switch()
    assert replies.messages[-1]["state"] == "reverted" and daemon.switched[-1] is previous.policy
    assert reverts == [1] and not manager.busy
