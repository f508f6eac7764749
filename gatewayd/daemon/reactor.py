"""The daemon's main loop: NFQUEUE socket, signals, reloads.

Signal handlers only set flags and wake the loop through a pipe
(signal.set_wakeup_fd); all work happens in the loop, on one thread, so a
reload never races with a verdict. SIGHUP reloads, SIGTERM/SIGINT stop and
remove gatewayd's kernel state.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from pathlib import Path

from netfilterqueue import NetfilterQueue

from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.daemon.applier import Applier, ApplyError
from gatewayd.daemon.last_good import DEFAULT_STATE_DIR, LastGoodStore
from gatewayd.daemon.sd_notify import SystemdNotifier
from gatewayd.daemon.verdicts import VerdictHandler
from gatewayd.metrics.server import build_registry, serve
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy, load_policy_text
from gatewayd.policy.model import Policy

log = logging.getLogger("gatewayd.daemon")

QUEUE_MAX_LEN = 4096
LOOP_TICK_SECONDS = 1.0


def load_with_text(path: str, catalog_path: str | None) -> tuple[Policy, str | None]:
    """The policy and the exact text it was loaded from (what last-known-good keeps)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return load_policy(path, catalog_path), None  # raises PolicyError with the reason
    return load_policy_text(text, path, catalog_path), text


class Daemon:
    def __init__(self, policy_path: str, catalog_path: str | None = None,
                 state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.policy_path = policy_path
        self.catalog_path = catalog_path
        self.plan: Plan | None = None
        self.generation = 0
        self.started_at = time.time()
        self.degraded = False  # running the last-known-good policy, not the configured file
        self.last_good = LastGoodStore(state_dir)
        self.systemd = SystemdNotifier()
        self.applier = Applier()
        self.registry, self.metrics = build_registry(self)
        self.classifier: Classifier | None = None
        self.handler: VerdictHandler | None = None
        self.queue: NetfilterQueue | None = None
        self._want_reload = False
        self._want_stop = False
        self._wake_read, self._wake_write = os.pipe()

    def current_plan(self) -> Plan | None:
        return self.plan

    # --- life cycle ---
    def _initial_policy(self) -> tuple[Policy, str | None] | None:
        """The configured policy, or else the last-known-good one (degraded), or None."""
        try:
            return load_with_text(self.policy_path, self.catalog_path)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=policy_invalid where=%s message=%r", issue.location, issue.message)
        if not self.last_good.exists():
            log.error("event=no_policy reason=\"the policy file is broken and no last-known-good copy exists\"")
            return None
        try:
            policy, text = load_with_text(str(self.last_good.path), self.catalog_path)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=last_good_invalid where=%s message=%r", issue.location, issue.message)
            return None
        self.degraded = True
        log.warning("event=started_degraded policy=%s running=%s reason=\"the policy file does not load; "
                    "fix it and reload (SIGHUP)\"", self.policy_path, self.last_good.path)
        return policy, text

    def run(self) -> int:
        loaded = self._initial_policy()
        if loaded is None:
            return 1
        policy, text = loaded
        plan = compile_plan(policy)
        try:
            self.applier.apply(plan, None)
        except ApplyError as exc:
            log.error("event=apply_failed error=%r", str(exc))
            return 1
        self._took_effect(plan, None if self.degraded else text)
        # Every DNS flow stays "dns": attributing a lookup to the app it names would let
        # a block rule drop the lookup itself, and a client that cannot resolve waits for
        # a DNS timeout instead of getting a quick reset (and the kernel learns nothing).
        self.classifier = Classifier(ClassifierTables.build(policy.applications.values()),
                                     max_packets=policy.classifier.max_packets,
                                     dns_flow_takes_queried_app=False)
        self.handler = VerdictHandler(self.classifier, plan.numbering, self.applier.nft, self.metrics)
        try:
            self.queue = NetfilterQueue()
            self.queue.bind(policy.classifier.queue_num, self.handler, max_len=QUEUE_MAX_LEN)
            serve(self.registry, policy.metrics_listen)
        except OSError as exc:
            log.error("event=start_failed error=%r", str(exc))
            self.applier.teardown(plan)
            return 1
        self.metrics.set_fail_mode(policy.classifier.fail_mode)
        self.metrics.up_since.set(self.started_at)
        self.metrics.degraded.set(1 if self.degraded else 0)
        self._install_signals()
        log.info("event=started policy=%s generation=%d fail_mode=%s queue=%d queue_backend=%s "
                 "leaf_qdisc=%s metrics=http://%s/metrics", self.policy_path, self.generation,
                 policy.classifier.fail_mode, policy.classifier.queue_num, self.applier.queue.backend,
                 self.applier.tc.leaf_kind, policy.metrics_listen)
        self.systemd.ready(self._status_line())
        try:
            self._loop()
        finally:
            self.systemd.stopping()
            self._shutdown()
        return 0

    def _status_line(self) -> str:
        state = "DEGRADED: running the last-known-good policy" if self.degraded else "policy applied"
        return f"{state}, generation {self.generation}, fail mode {self.plan.policy.classifier.fail_mode if self.plan else '?'}"

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._want_reload = True

    def _on_stop(self, _signum: int, _frame: object) -> None:
        self._want_stop = True

    def _loop(self) -> None:
        assert self.queue is not None
        queue_fd = self.queue.get_fd()
        os.set_blocking(queue_fd, False)
        while not self._want_stop:
            self.systemd.ping_if_due(time.monotonic())
            until_ping = self.systemd.seconds_to_next_ping(time.monotonic())
            timeout = LOOP_TICK_SECONDS if until_ping is None else min(LOOP_TICK_SECONDS, until_ping)
            try:
                readable, _, _ = select.select([queue_fd, self._wake_read], [], [], timeout)
            except InterruptedError:
                readable = []
            if queue_fd in readable:
                self._drain_queue()
            if self._wake_read in readable:
                os.read(self._wake_read, 512)
            if self._want_reload:
                self._want_reload = False
                self.reload()

    def _drain_queue(self) -> None:
        assert self.queue is not None
        try:
            self.queue.run(block=False)
        except OSError as exc:
            # ENOBUFS: the kernel dropped queued packets for lack of socket buffer;
            # they are counted in the nfqueue metrics, and the loop goes on.
            log.warning("event=queue_read_failed error=%r", str(exc))

    def reload(self) -> bool:
        """Validate, compile and apply the policy file again; on any failure keep the running one."""
        self.metrics.reload_time.set(time.time())
        self.systemd.reloading()
        started = time.perf_counter()
        try:
            policy, text = load_with_text(self.policy_path, self.catalog_path)
            plan = compile_plan(policy, self.plan)
            self.applier.apply(plan, self.plan)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=reload_refused where=%s message=%r", issue.location, issue.message)
            log.error("event=reload_refused errors=%d kept_generation=%d", len(exc.issues), self.generation)
            return self._reload_failed()
        except ApplyError as exc:
            log.error("event=reload_refused error=%r kept_generation=%d", str(exc), self.generation)
            return self._reload_failed()
        previous = self.plan
        self.degraded = False
        self.metrics.degraded.set(0)
        self._took_effect(plan, text)
        assert self.classifier is not None and self.handler is not None
        self.classifier.replace_tables(ClassifierTables.build(policy.applications.values()))
        self.handler.numbering = plan.numbering
        if previous and previous.policy.classifier.queue_num != policy.classifier.queue_num:
            log.warning("event=queue_number_changed effective=after_restart")
        self.metrics.set_fail_mode(policy.classifier.fail_mode)
        log.info("event=reloaded generation=%d seconds=%.3f", self.generation, time.perf_counter() - started)
        self.systemd.ready(self._status_line())
        return True

    def _reload_failed(self) -> bool:
        self.metrics.reload_success.set(0)
        self.metrics.reloads.labels("refused").inc()
        self.systemd.ready(self._status_line() + " (last reload refused: see the log)")
        return False

    def _took_effect(self, plan: Plan, text: str | None) -> None:
        if text is not None:
            self.last_good.save(text)
        self.plan = plan
        self.generation += 1
        self.metrics.generation.set(self.generation)
        self.metrics.reload_success.set(1)
        self.metrics.reloads.labels("applied").inc()
        for warning in plan.ruleset.warnings:
            log.warning("event=policy_warning message=%r", warning)

    def _shutdown(self) -> None:
        if self.queue is not None:
            try:
                self.queue.unbind()
            except OSError:
                pass
        self.applier.teardown(self.plan)
        log.info("event=stopped removed=\"nft table, queue rule, qdiscs\"")

