"""`gatewayd apply NEW --confirm-within S`: apply, check health, then keep or revert by itself.

    apply ──▶ checking (health checks in a worker thread; verdicts go on)
                 ├─ a check fails ─────────────▶ revert to the previous policy
                 ├─ ok, no confirm asked ───────▶ kept
                 └─ ok ──▶ awaiting confirm ──▶ `gatewayd confirm` ─▶ kept
                                  └── deadline passes ───────────────▶ revert

Only a kept change becomes the daemon's policy file and last-known-good copy,
so a crash while a change is unconfirmed restarts on the previous policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatewayd.apply.applier import ApplyError
from gatewayd.compile.plan import Plan
from gatewayd.control.health import HealthResult, run_checks
from gatewayd.control.protocol import Reply
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_with_text
from gatewayd.policy.model import Policy

log = logging.getLogger("gatewayd.change")


class RunningPolicy(Protocol):
    """What a change needs from the daemon: the policy in force and the two verbs that change it."""

    @property
    def plan(self) -> Plan | None: ...

    @property
    def generation(self) -> int: ...

    @property
    def policy_path(self) -> str: ...

    @property
    def catalog_path(self) -> str | None: ...

    def switch_to(self, policy: Policy) -> Plan: ...

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
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def begin(self, path: str, confirm_within: float | None, reply: Reply) -> None:
        if self.pending is not None:
            reply({"ok": False, "error": "another change is pending: confirm it or let it revert first"})
            return
        daemon = self.daemon
        previous = daemon.plan
        assert previous is not None
        try:
            policy, text = load_policy_with_text(path, daemon.catalog_path)
            daemon.switch_to(policy)
        except PolicyError as exc:
            reply({"ok": False, "error": "the policy does not load; nothing changed",
                   "issues": [str(issue) for issue in exc.issues]})
            return
        except ApplyError as exc:
            reply({"ok": False, "error": f"apply failed; nothing changed: {exc}"})
            return
        log.info("event=change_applied policy=%s generation=%d confirm_within=%s", path, daemon.generation,
                 confirm_within)
        self.pending = PendingChange(previous, path, text, confirm_within,
                                     self._workers.submit(run_checks, policy), reply)

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
                self._revert(pending, reason)
                pending.answer({"ok": False, "state": "reverted", "reason": reason,
                                "checks": [list(check) for check in result.checks]})
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

    def _revert(self, pending: PendingChange, reason: str) -> None:
        daemon = self.daemon
        self.pending = None
        try:
            daemon.switch_to(pending.previous.policy)
        except ApplyError as exc:
            log.error("event=revert_failed error=%r", str(exc))
            return
        self._count_revert()
        log.warning("event=change_reverted reason=%r generation=%d policy=%s", reason, daemon.generation,
                    daemon.policy_path)
