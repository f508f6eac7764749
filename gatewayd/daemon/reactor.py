"""The daemon's main loop: NFQUEUE socket, signals, reloads.

Signal handlers only set flags and wake the loop through a pipe
(signal.set_wakeup_fd); all work happens in the loop, on one thread, so a
reload never races with a verdict. SIGHUP reloads, SIGTERM/SIGINT stop and
remove gatewayd's kernel state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netfilterqueue import NetfilterQueue

from gatewayd.apply.applier import Applier, ApplyError
from gatewayd.apply.features import log_kernel_features
from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.control.protocol import DEFAULT_SOCKET
from gatewayd.control.server import ControlServer
from gatewayd.control.status import DaemonFacts, build_status
from gatewayd.daemon.blocklist_watch import BlocklistWatch
from gatewayd.daemon.changes import ChangeManager
from gatewayd.daemon.control_commands import control_commands
from gatewayd.daemon.host_classes import HostClassWatch
from gatewayd.daemon.last_good import DEFAULT_STATE_DIR, LastGoodStore
from gatewayd.daemon.link_health import LinkHealth, LinkReport
from gatewayd.daemon.sd_notify import SystemdNotifier
from gatewayd.daemon.verdicts import VerdictHandler
from gatewayd.metrics.server import build_registry, serve
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_with_text
from gatewayd.policy.model import Policy

log = logging.getLogger("gatewayd.daemon")

QUEUE_MAX_LEN = 4096
LOOP_TICK_SECONDS = 1.0
CHANGE_POLL_SECONDS = 0.1
GC_YOUNG_THRESHOLD = 50_000  # allocations between young-generation passes (CPython's default: 700)  # how soon a finished health check or a passed deadline is acted on


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic-GC passes while a policy is built: a big policy makes hundreds of
    thousands of objects, and every pass over the old generations would walk them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle_garbage_collector() -> None:
    """Keep cyclic-GC pauses out of the verdict path.

    The policy, catalog and tables live until the next reload: freezing them
    takes them out of every later collection. Per-packet objects are acyclic
    and freed by reference counting, so young-generation passes can be rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


class StepClock:
    """Seconds spent in each step of a policy switch, for the reload's log line."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._last = self.started
        self.steps: dict[str, float] = {}

    def step_done(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = now - self._last
        self._last = now

    def total(self) -> float:
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        return " ".join(f"{step}_seconds={value:.3f}" for step, value in self.steps.items())


class Daemon:
    def __init__(self, policy_path: str, catalog_path: str | None = None,
                 state_dir: Path = DEFAULT_STATE_DIR, control_socket: Path = DEFAULT_SOCKET) -> None:
        self.policy_path = policy_path
        self.catalog_path = catalog_path
        self.plan: Plan | None = None
        self.generation = 0
        self.started_at = time.time()
        self.degraded = False  # running the last-known-good policy, not the configured file
        self.last_good = LastGoodStore(state_dir)
        self.systemd = SystemdNotifier()
        self.applier = Applier()
        self.registry, self.metrics = build_registry(self, self.applier)
        self.changes = ChangeManager(self, count_revert=self.metrics.reverts.inc)
        self.control = ControlServer(control_socket, control_commands(self.status_report, self.changes))
        self.blocklist_watch = BlocklistWatch(self.applier.nft)
        self.host_classes = HostClassWatch(self.applier.nft, self.applier.make_host_classes)
        self.link_health = LinkHealth(self.applier.links)
        self.classifier: Classifier | None = None
        self.handler: VerdictHandler | None = None
        self.queue: NetfilterQueue | None = None
        self._want_reload = False
        self._want_stop = False
        self._wake_read, self._wake_write = os.pipe()

    def current_plan(self) -> Plan | None:
        return self.plan

    def current_classifier(self) -> Classifier | None:
        return self.classifier

    def link_reports(self) -> list[LinkReport]:
        return self.link_health.reports()

    # --- life cycle ---
    def _initial_policy(self) -> tuple[Policy, str | None, bool] | None:
        """(policy, its text, degraded): the configured policy, or else the last-known-good one, or None."""
        try:
            return (*load_policy_with_text(self.policy_path, self.catalog_path), False)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=policy_invalid where=%s message=%r", issue.location, issue.message)
        if not self.last_good.exists():
            log.error("event=no_policy reason=\"the policy file is broken and no last-known-good copy exists\"")
            return None
        try:
            policy, text = load_policy_with_text(str(self.last_good.path), self.catalog_path)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=last_good_invalid where=%s message=%r", issue.location, issue.message)
            return None
        log.warning("event=started_degraded policy=%s running=%s reason=\"the policy file does not load; "
                    "fix it and reload (SIGHUP)\"", self.policy_path, self.last_good.path)
        return policy, text, True

    def run(self) -> int:
        loaded = self._initial_policy()
        if loaded is None:
            return 1
        policy, text, degraded = loaded
        try:
            plan = self.switch_to(policy)
        except ApplyError as exc:
            log.error("event=apply_failed error=%r", str(exc))
            return 1
        # Degraded, the text is the last-known-good copy itself: nothing new to keep.
        self.record_policy_in_force(self.policy_path, None if degraded else text, degraded=degraded)
        assert self.handler is not None
        try:
            self.queue = NetfilterQueue()
            self.queue.bind(policy.classifier.queue_num, self.handler, max_len=QUEUE_MAX_LEN)
            serve(self.registry, policy.metrics_listen)
            self.control.open()
        except OSError as exc:
            log.error("event=start_failed error=%r", str(exc))
            self.applier.teardown(plan)
            return 1
        self.metrics.up_since.set(self.started_at)
        self._install_signals()
        settle_garbage_collector()  # before "started": nothing heavy may follow the ready signal
        log_kernel_features(self.applier.kernel_features())  # once: the first apply has settled the leaf kind
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
            now = time.monotonic()
            self.systemd.ping_if_due(now)
            self.changes.poll(now)
            until_ping = self.systemd.seconds_to_next_ping(now)
            timeout = LOOP_TICK_SECONDS if until_ping is None else min(LOOP_TICK_SECONDS, until_ping)
            if self.changes.busy:
                timeout = min(timeout, CHANGE_POLL_SECONDS)
            until_host_poll = self.host_classes.seconds_to_next_poll(self.plan)
            if until_host_poll is not None:
                timeout = min(timeout, until_host_poll)
            watched = [queue_fd, self._wake_read] + self.control.fds() + self.link_health.fds()
            try:
                readable, _, _ = select.select(watched, [], [], timeout)
            except InterruptedError:
                readable = []
            if queue_fd in readable:
                self._drain_queue()
            if self._wake_read in readable:
                os.read(self._wake_read, 512)
            self.control.serve_ready(readable)
            self.link_health.poll()  # probe results: failover and failback (daemon/link_health.py)
            if self._want_reload:
                self._want_reload = False
                self.reload()
            self.blocklist_watch.poll(enabled=self._guard_has_blocklist())
            self.host_classes.poll(self.plan)

    def _guard_has_blocklist(self) -> bool:
        security = self.plan.guard.security if self.plan else None
        return security is not None and security.scan is not None

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
        if self.changes.busy:
            log.warning("event=reload_deferred reason=\"a change awaits confirmation; confirm or let it revert\"")
            return False
        self.metrics.reload_time.set(time.time())
        self.systemd.reloading()
        clock = StepClock()
        try:
            with gc_paused():
                policy, text = load_policy_with_text(self.policy_path, self.catalog_path)
                clock.step_done("load")
                self.switch_to(policy, clock)
        except PolicyError as exc:
            for issue in exc.issues:
                log.error("event=reload_refused where=%s message=%r", issue.location, issue.message)
            log.error("event=reload_refused errors=%d kept_generation=%d", len(exc.issues), self.generation)
            return self._reload_failed()
        except ApplyError as exc:
            log.error("event=reload_refused error=%r kept_generation=%d", str(exc), self.generation)
            return self._reload_failed()
        self.record_policy_in_force(self.policy_path, text, degraded=False)
        settle_garbage_collector()
        log.info("event=reloaded generation=%d seconds=%.3f %s", self.generation, clock.total(), clock)
        self.systemd.ready(self._status_line())
        return True

    # --- the two verbs every policy change goes through (start, reload, apply, revert) ---
    def switch_to(self, policy: Policy, clock: StepClock | None = None) -> Plan:
        """Compile the policy against the running plan, apply it, adopt it; the running plan.

        Raises PolicyError or ApplyError with the running policy still in force.
        """
        clock = clock or StepClock()
        plan = compile_plan(policy, self.plan)
        clock.step_done("compile")
        self.applier.apply(plan, self.plan)
        clock.step_done("apply")
        self.adopt(plan)
        clock.step_done("classifier")
        return plan

    def record_policy_in_force(self, path: str, text: str | None, *, degraded: bool) -> None:
        """The running policy stands for the file at `path` (or, degraded, last-known-good stands in
        for that broken file); `text`, when given, becomes the new last-known-good copy."""
        self.policy_path = path
        self.degraded = degraded
        self.metrics.degraded.set(1 if degraded else 0)
        if text is not None:
            self.last_good.save(text)

    def adopt(self, plan: Plan) -> None:
        """Make an applied plan the running one: classifier tables, numbering, metrics."""
        previous = self.plan
        self._took_effect(plan)
        if self.classifier is None or self.handler is None:
            # Every DNS flow stays "dns": attributing a lookup to the app it names would let
            # a block rule drop the lookup itself, and a client that cannot resolve waits for
            # a DNS timeout instead of getting a quick reset (and the kernel learns nothing).
            self.classifier = Classifier(ClassifierTables.build(plan.policy.applications.values()),
                                         max_packets=plan.policy.classifier.max_packets,
                                         dns_flow_takes_queried_app=False)
            self.handler = VerdictHandler(self.classifier, plan.numbering, self.applier.nft, self.metrics)
        elif previous is None or previous.policy.applications != plan.policy.applications:
            # Rebuilt only when the apps changed: 100,000 blocklist domains take a noticeable while.
            self.classifier.replace_tables(ClassifierTables.build(plan.policy.applications.values()))
        self.handler.numbering = plan.numbering
        if previous and previous.policy.classifier.queue_num != plan.policy.classifier.queue_num:
            log.warning("event=queue_number_changed effective=after_restart")
        self.metrics.set_fail_mode(plan.policy.classifier.fail_mode)
        self.link_health.adopt(plan)

    def _reload_failed(self) -> bool:
        self.metrics.reload_success.set(0)
        self.metrics.reloads.labels("refused").inc()
        self.systemd.ready(self._status_line() + " (last reload refused: see the log)")
        return False

    def _took_effect(self, plan: Plan) -> None:
        self.plan = plan
        self.generation += 1
        self.metrics.generation.set(self.generation)
        self.metrics.reload_success.set(1)
        self.metrics.reloads.labels("applied").inc()
        for warning in plan.ruleset.warnings:
            log.warning("event=policy_warning message=%r", warning)

    def status_report(self) -> dict[str, Any]:
        assert self.plan is not None and self.classifier is not None  # the socket opens after the first apply
        facts = DaemonFacts(self.generation, self.policy_path, self.degraded, self.started_at, self.changes.describe(),
                            tuple(dataclasses.asdict(report) for report in self.link_reports()))
        return build_status(facts, self.plan, self.applier, self.classifier)

    def _shutdown(self) -> None:
        self.link_health.stop()
        self.control.close()
        if self.queue is not None:
            try:
                self.queue.unbind()
            except OSError:
                pass
        self.applier.teardown(self.plan)
        log.info("event=stopped removed=\"nft table, queue rule, qdiscs\"")

