"""`gatewayd apply NEW --confirm-within S`: apply, check health, then keep or revert by itself.

    build ──▶ apply ──▶ checking (health checks in a worker thread; verdicts go on)
                 ├─ a check fails ─────────────▶ revert to the previous policy
                 ├─ ok, no confirm asked ───────▶ kept
                 └─ ok ──▶ awaiting confirm ──▶ `gatewayd confirm` ─▶ kept
                                  └── deadline passes ───────────────▶ revert

Only a kept change becomes the daemon's policy file and last-known-good copy,
so a crash while a change is unconfirmed restarts on the previous policy.
The new policy (and a revert's old one) is built off the verdict path like a
reload; the client's answer comes when the build, the apply and the checks
are done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatewayd.compile.plan import Plan
from gatewayd.control.health import HealthResult, run_checks
from gatewayd.control.protocol import Reply
from gatewayd.daemon.policy_builder import BuildRequest, SwitchDone, SwitchResult

log = logging.getLogger("gatewayd.change")


class RunningPolicy(Protocol):
    """What a change needs from the daemon: the policy in force and the two verbs that change it."""

    @property
    def plan(self) -> Plan | None: ...

    @property
    def generation(self) -> int: ...

    @property
    def policy_path(self) -> str: ...

    def change_policy(self, request: BuildRequest, done: SwitchDone) -> bool: ...

    def record_policy_in_force(self, path: str, text: str | None, *, degraded: bool) -> None: ...


@dataclass
class PendingChange:
    previous: Plan
    new_path: str
    new_text: str | None
    confirm_within: float | None
    health: Future[HealthResult]
    reply: Reply | None  # the client waiting for the outcome of the checks
    deadline: float | None = None  # monotonic; set once the checks pass
    started: float = field(default_factory=time.monotonic)

    def answer(self, message: dict[str, Any]) -> None:
        if self.reply is not None:
            self.reply(message)
            self.reply = None


class ChangeManager:
    def __init__(self, daemon: RunningPolicy, count_revert: Callable[[], None]) -> None:
        self.daemon = daemon
        self._count_revert = count_revert
        self.pending: PendingChange | None = None
        self._switching = False  # a new policy (or a revert) is being built and applied
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")

    @property
    def busy(self) -> bool:
        return self.pending is not None or self._switching

    def begin(self, path: str, confirm_within: float | None, reply: Reply) -> None:
        if self.busy:
            reply({"ok": False, "error": "another change is pending: confirm it or let it revert first"})
            return
        previous = self.daemon.plan
        assert previous is not None

        def applied(result: SwitchResult) -> None:
            self._switching = False
            self._applied(result, previous, path, confirm_within, reply)

        self._switching = True  # before the call: `applied` may run within it
        if not self.daemon.change_policy(BuildRequest(path=path), applied):
            self._switching = False
            reply({"ok": False, "error": "a reload is in progress; nothing changed, try again when it is done"})

    def _applied(self, result: SwitchResult, previous: Plan, path: str, confirm_within: float | None,
                 reply: Reply) -> None:
        if result.issues:
            reply({"ok": False, "error": "the policy does not load; nothing changed",
                   "issues": [str(issue) for issue in result.issues]})
            return
        if result.plan is None:
            reply({"ok": False, "error": f"apply failed; nothing changed: {result.apply_error}"})
            return
        log.info("event=change_applied policy=%s generation=%d confirm_within=%s", path, self.daemon.generation,
                 confirm_within)
        self.pending = PendingChange(previous, path, result.text, confirm_within,
                                     self._workers.submit(run_checks, result.plan.policy), reply)

    def confirm(self, reply: Reply) -> None:
        pending = self.pending
        if pending is None:
            reply({"ok": False, "error": "nothing to confirm"})
        elif pending.deadline is None:
            reply({"ok": False, "error": "health checks are still running; confirm again in a moment"})
        else:
            self._keep(pending)
            reply({"ok": True, "state": "kept", "generation": self.daemon.generation})

    def poll(self, now: float) -> None:
        """From the main loop: act on finished checks and passed deadlines."""
        pending = self.pending
        if pending is None:
            return
        if pending.deadline is None:
            if not pending.health.done():
                return
            result = pending.health.result()
            if not result.ok:
                reason = "health check failed: " + "; ".join(result.failures)
                checks = [list(check) for check in result.checks]
                # Answered once the previous policy is back in force, not before.
                self._revert(pending, reason, then=lambda: pending.answer(
                    {"ok": False, "state": "reverted", "reason": reason, "checks": checks}))
                return
            if pending.confirm_within is None:
                self._keep(pending)
                pending.answer({"ok": True, "state": "kept", "generation": self.daemon.generation,
                                "checks": [list(check) for check in result.checks]})
                return
            pending.deadline = now + pending.confirm_within
            pending.answer({"ok": True, "state": "awaiting_confirm", "confirm_within": pending.confirm_within,
                            "generation": self.daemon.generation,
                            "checks": [list(check) for check in result.checks]})
        elif now >= pending.deadline:
            self._revert(pending, f"no `gatewayd confirm` within {pending.confirm_within:g}s")

    def describe(self) -> dict[str, Any] | None:
        pending = self.pending
        if pending is None:
            return None
        left = None if pending.deadline is None else max(0.0, pending.deadline - time.monotonic())
        return {"policy": pending.new_path, "state": "checking" if pending.deadline is None else "awaiting_confirm",
                "seconds_left": left}

    def _keep(self, pending: PendingChange) -> None:
        self.daemon.record_policy_in_force(pending.new_path, pending.new_text, degraded=False)
        self.pending = None
        log.info("event=change_kept policy=%s generation=%d", pending.new_path, self.daemon.generation)

    def _revert(self, pending: PendingChange, reason: str, then: Callable[[], None] | None = None) -> None:
        daemon = self.daemon

        def reverted(result: SwitchResult) -> None:
            self._switching = False
            if result.plan is None:
                log.error("event=revert_failed error=%r",
                          result.apply_error or "; ".join(str(issue) for issue in result.issues))
            else:
                self._count_revert()
                log.warning("event=change_reverted reason=%r generation=%d policy=%s", reason, daemon.generation,
                            daemon.policy_path)
            if then is not None:
                then()

        self.pending, self._switching = None, True  # before the call: `reverted` may run within it
        if not daemon.change_policy(BuildRequest(policy=pending.previous.policy), reverted):
            # Cannot happen (reloads wait while a change is pending); the next poll tries again.
            self.pending, self._switching = pending, False
