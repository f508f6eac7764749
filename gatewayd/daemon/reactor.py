"""The daemon's main loop: NFQUEUE socket, signals, reloads.

Signal handlers only set flags and wake the loop through a pipe
(signal.set_wakeup_fd). Verdicts, applies and control requests happen in the
loop, on one thread, so a reload never races with a verdict; only reading,
validating and compiling a policy runs in a worker (daemon/policy_builder.py),
so a big or slow policy file never holds queued packets back. The apply's
kernel transaction runs in a thread of its own while the loop serves only the
queue, with the running plan's verdicts, until it returns
(daemon/background_apply.py), and DNS-learned addresses reach the kernel
through a writer thread (apply/learned_writer.py): no verdict waits for a
netlink write. SIGHUP reloads (one at a time; a SIGHUP during a reload asks
for one more), SIGTERM/SIGINT stop and remove gatewayd's kernel state.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from netfilterqueue import NetfilterQueue

from gatewayd.apply.applier import Applier, ApplyError
from gatewayd.apply.conntrack_events import ConntrackAnnouncer
from gatewayd.apply.features import log_kernel_features
from gatewayd.apply.guard_state import blocklist_by_netlink
from gatewayd.apply.host_sets import waiting_hosts_by_netlink
from gatewayd.apply.nfqueue_config import QueueConfigError, set_fail_open
from gatewayd.apply.set_dump_netlink import SetReader
from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile.ha import DEFAULT_RUNTIME_DIR as DEFAULT_HA_RUNTIME_DIR
from gatewayd.compile.plan import Plan
from gatewayd.control.protocol import DEFAULT_SOCKET
from gatewayd.control.server import ControlServer
from gatewayd.control.status import DaemonFacts, build_status
from gatewayd.daemon.background_apply import run_beside_loop
from gatewayd.daemon.blocklist_watch import BlocklistWatch
from gatewayd.daemon.changes import ChangeManager
from gatewayd.daemon.control_commands import control_commands
from gatewayd.daemon.gateway_arp import KernelGatewayArpDefence
from gatewayd.daemon.ha_peer import HaPeer
from gatewayd.daemon.ha_state_sync import HaStateSync
from gatewayd.daemon.heap import limit_arenas, release_freed_heap
from gatewayd.daemon.host_classes import HostClassWatch
from gatewayd.daemon.last_good import DEFAULT_STATE_DIR, LastGoodStore
from gatewayd.daemon.link_health import LinkHealth, LinkReport
from gatewayd.daemon.policy_builder import (
    BuildOutcome,
    BuildRequest,
    PolicyBuilder,
    StepClock,
    SwitchDone,
    SwitchResult,
    build_policy,
    refuse_unless_regular_file,
)
from gatewayd.daemon.queue_wait import enable_receive_timestamps
from gatewayd.daemon.schedule_epochs import ScheduleEpochs
from gatewayd.daemon.scheduling import current_scheduling
from gatewayd.daemon.sd_notify import SystemdNotifier
from gatewayd.daemon.verdicts import VerdictHandler
from gatewayd.metrics.ha_sync import HaSyncMetrics
from gatewayd.metrics.nfqueue import read_queue_line
from gatewayd.metrics.server import build_registry, serve
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_with_text
from gatewayd.policy.model import Policy
from gatewayd.policy.security import referenced_files

log = logging.getLogger("gatewayd.daemon")

# Packets waiting for a verdict. Above what the socket buffer holds (NetfilterQueue asks for
# 2 x 2.4 MB, about 6,000 small packets): so the buffer overflows first, and every packet the
# kernel then lets through without a verdict (fail-open) leaves a gap in the packet ids, which
# VerdictHandler counts. A packet passed because the queue itself is full is counted nowhere.
QUEUE_MAX_LEN = 16384
LOOP_TICK_SECONDS = 1.0
# How often, at most, the loop reads /proc after draining the queue to count the ids the kernel
# numbered but never delivered (VerdictHandler.account_undelivered); a drain within this time of
# the last count is counted once the queue stays silent as long. One /proc read costs ~30 us.
UNDELIVERED_CHECK_SECONDS = 0.05
APPLY_POLL_SECONDS = 0.1  # bound on one wait for queued packets while an apply runs (its end wakes it)
CHANGE_POLL_SECONDS = 0.1  # how soon a finished health check or a passed deadline is acted on
# Allocations between young-generation passes (CPython's default: 700). Kept at 50,000 after
# bench/gc_pauses.py at a paced 2,000 new flows/s (2 rounds, 40 s each): 50,000 made no pass at
# all; 10,000 one pass per run, 1.2-1.4 ms; 2,000 nine, longest 4.1-5.6 ms; 700 twenty-four,
# longest 4.5-4.7 ms. A lower threshold does not shorten the longest pause: it is a young pass
# in a metrics-scrape thread freeing what the scrape left (CPU time = wall time, logged as
# event=gc_pause_long), and more passes only make one land in a scrape sooner.
GC_YOUNG_THRESHOLD = 50_000


def settle_garbage_collector(*, collect: bool) -> None:
    """Keep cyclic-GC pauses out of the verdict path.

    The policy, catalog and tables live until the next reload: freezing them
    takes them out of every later collection. Per-packet objects are acyclic
    and freed by reference counting, so young-generation passes can be rarer.
    A full collection walks every object with the GIL held (about 50 ms for a
    100,000-domain policy), so only the start, before any verdict, does one;
    after a reload the few cyclic leftovers of a build (under 100 objects,
    measured) stay frozen instead.
    """
    if collect:
        gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


class Daemon:
    def __init__(self, policy_path: str, catalog_path: str | None = None,
                 state_dir: Path = DEFAULT_STATE_DIR, control_socket: Path = DEFAULT_SOCKET,
                 ha_dir: Path = Path(DEFAULT_HA_RUNTIME_DIR), *, measure_queue_wait: bool = False) -> None:
        self.policy_path = policy_path
        self.measure_queue_wait = measure_queue_wait
        self._timestamp_keeper: socket.socket | None = None  # open while receive timestamps are wanted
        self.catalog_path = catalog_path
        self.plan: Plan | None = None
        self.generation = 0
        self.started_at = time.time()
        self.degraded = False  # running the last-known-good policy, not the configured file
        self.last_good = LastGoodStore(state_dir)
        self.systemd = SystemdNotifier()
        self.applier = Applier()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self.builder = PolicyBuilder(catalog_path, wake=self._wake_loop)
        # A scrape's nft listings fill libnftables caches (~3 MiB with policies/office.yaml), freed
        # when it ends but kept by glibc in the scrape thread's arena: given back after every scrape.
        self.registry, self.metrics = build_registry(self, self.applier, after_scrape=release_freed_heap)
        self.changes = ChangeManager(self, count_revert=self.metrics.reverts.inc)
        self.control = ControlServer(control_socket, control_commands(self.status_report, self.changes))
        # Both read kernel sets by netlink dumps of just those sets, not libnftables listings
        # (bench/loop_work.py): the waiting hosts on the loop's tick (~20 us every 0.1 s), the
        # blocklist (~0.3 ms of kernel time every second) in the watch's own thread, with its socket.
        self.set_reader = SetReader()
        self.blocklist_reader = SetReader()
        self.blocklist_watch = BlocklistWatch(lambda: blocklist_by_netlink(self.blocklist_reader))
        self.gateway_arp = KernelGatewayArpDefence(self.current_plan, self.metrics.gateway_announcements.inc)
        self.host_classes = HostClassWatch(self.applier.make_host_classes,
                                           lambda: waiting_hosts_by_netlink(self.set_reader))
        self.link_health = LinkHealth(self.applier.links)
        self.ha_peer = HaPeer(ha_dir)
        self.ha_sync = HaStateSync(self.applier.nft, HaSyncMetrics(self.registry))
        self.schedule_epochs = ScheduleEpochs(self._advance_epoch)
        self.classifier: Classifier | None = None
        self.handler: VerdictHandler | None = None
        self.flow_announcer = ConntrackAnnouncer()  # its socket opens at the first announcement
        self.queue: NetfilterQueue | None = None
        self._want_reload = False
        self._undelivered_check_due = False  # the queue was read since the last count of undelivered ids
        self._undelivered_checked_at = 0.0
        self._want_stop = False

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
            refuse_unless_regular_file(self.policy_path)
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
        limit_arenas()  # before the builder and metrics threads exist
        loaded = self._initial_policy()
        if loaded is None:
            return 1
        policy, text, degraded = loaded
        # No verdicts yet: the first build runs right here.
        result = self._finish_switch(build_policy(BuildRequest(policy=policy), None, self.generation,
                                                  self.catalog_path))
        if result.plan is None:
            log.error("event=apply_failed error=%r", result.apply_error)
            return 1
        plan = result.plan
        # Degraded, the text is the last-known-good copy itself: nothing new to keep.
        self.record_policy_in_force(self.policy_path, None if degraded else text, degraded=degraded)
        assert self.handler is not None
        try:
            self.queue = NetfilterQueue()
            self.queue.bind(policy.classifier.queue_num, self.handler, max_len=QUEUE_MAX_LEN)
            self._set_queue_fail_open(policy.classifier.fail_mode)
            serve(self.registry, policy.metrics_listen)
            self.control.open()
        except OSError as exc:
            log.error("event=start_failed error=%r", str(exc))
            self.applier.teardown(plan)
            return 1
        self.applier.learned_writer.start()
        self.blocklist_watch.start(enabled=self._guard_has_blocklist)
        self.gateway_arp.start()
        if self.measure_queue_wait:
            self._start_measuring_queue_wait()
        self.metrics.up_since.set(self.started_at)
        self._install_signals()
        settle_garbage_collector(collect=True)  # before "started": nothing heavy may follow the ready signal
        self.metrics.gc_pauses.install()  # from here on, every collection's pause is a verdict's wait
        release_freed_heap()  # what the first build and apply freed
        log_kernel_features(self.applier.kernel_features())  # once: the first apply has settled the leaf kind
        log.info("event=started policy=%s generation=%d fail_mode=%s queue=%d queue_backend=%s "
                 "leaf_qdisc=%s scheduling=%s metrics=http://%s/metrics", self.policy_path, self.generation,
                 policy.classifier.fail_mode, policy.classifier.queue_num, self.applier.queue.backend,
                 self.applier.tc.leaf_kind, current_scheduling(), policy.metrics_listen)
        self.systemd.ready(self._status_line())
        try:
            self._loop()
        finally:
            self.systemd.stopping()
            self._shutdown()
        return 0

    def _start_measuring_queue_wait(self) -> None:
        assert self.handler is not None
        try:
            self._timestamp_keeper = enable_receive_timestamps()
        except OSError as exc:
            log.warning("event=queue_wait_unmeasured error=%r", str(exc))
            return
        self.handler.measure_queue_wait = True

    def _status_line(self) -> str:
        state = "DEGRADED: running the last-known-good policy" if self.degraded else "policy applied"
        fail_mode = self.plan.policy.classifier.fail_mode if self.plan else "?"
        return f"{state}, generation {self.generation}, fail mode {fail_mode}"

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._want_reload = True

    def _on_stop(self, _signum: int, _frame: object) -> None:
        self._want_stop = True

    def _wake_loop(self) -> None:
        """From the worker: a build is done, let the loop's select return now."""
        try:
            os.write(self._wake_write, b"b")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _loop(self) -> None:
        assert self.queue is not None
        queue_fd = self.queue.get_fd()
        os.set_blocking(queue_fd, False)
        while not self._want_stop:
            now = time.monotonic()
            self.systemd.ping_if_due(now)
            self.builder.poll(now)
            self.changes.poll(now)
            until_ping = self.systemd.seconds_to_next_ping(now)
            timeout = LOOP_TICK_SECONDS if until_ping is None else min(LOOP_TICK_SECONDS, until_ping)
            if self.changes.busy:
                timeout = min(timeout, CHANGE_POLL_SECONDS)
            if self._undelivered_check_due:
                timeout = min(timeout, UNDELIVERED_CHECK_SECONDS)
            for until in (self.host_classes.seconds_to_next_poll(self.plan),
                          self.control.seconds_to_next_deadline(now),
                          self.ha_sync.seconds_to_next_round(now), self.schedule_epochs.seconds_to_next()):
                if until is not None:
                    timeout = min(timeout, until)
            watched = [queue_fd, self._wake_read] + self.control.fds() + self.link_health.fds()
            watched += self.ha_peer.fds() + self.ha_sync.fds()
            try:
                readable, writable, _ = select.select(watched, self.control.write_fds(), [], timeout)
            except InterruptedError:
                readable, writable = [], []
            if queue_fd in readable:
                self._drain_queue()
                self._undelivered_check_due = True
            if self._undelivered_check_due:
                self._account_undelivered_if_due(quiet=queue_fd not in readable)
            if self._wake_read in readable:
                os.read(self._wake_read, 512)
            self.control.serve_ready(readable, writable)
            self.link_health.poll()  # probe results: failover and failback (daemon/link_health.py)
            if self.ha_peer.poll():  # the peer's state and policy hash, once a second (daemon/ha_peer.py)
                self.metrics.set_ha(self.ha_peer.own_state(), self.ha_peer.peer_state(), self.ha_peer.same_policy())
            if self.ha_sync.wants_poll(readable, time.monotonic()):  # learned, blocked, blocklist sets to the backup
                self.ha_sync.poll(self.ha_peer.own_state(), self.ha_peer.peer_state())  # (daemon/ha_state_sync.py)
            if self._want_reload:
                self._start_reload()
            self.schedule_epochs.poll()
            self.host_classes.poll(self.plan)

    def _advance_epoch(self) -> int:
        assert self.plan is not None  # the watch has boundaries only once a plan is adopted
        return self.applier.advance_epoch(self.plan)

    def _guard_has_blocklist(self) -> bool:
        security = self.plan.guard.security if self.plan else None
        return security is not None and security.scan is not None

    def _drain_queue(self) -> None:
        if self.queue is None:
            return  # the first apply comes before the queue is bound
        try:
            self.queue.run(block=False)
        except OSError as exc:
            # ENOBUFS: the kernel dropped queued packets for lack of socket buffer;
            # they are counted in the nfqueue metrics, and the loop goes on.
            log.warning("event=queue_read_failed error=%r", str(exc))

    def _account_undelivered_if_due(self, *, quiet: bool) -> None:
        drained_at = time.monotonic()
        if quiet or drained_at - self._undelivered_checked_at >= UNDELIVERED_CHECK_SECONDS:
            self._undelivered_check_due = False
            self._undelivered_checked_at = drained_at
            self._account_undelivered()

    def _account_undelivered(self) -> None:
        """Right after a drain (or once the queue is quiet), while the kernel holds nothing for us,
        count what it numbered and never delivered: after a backlog, the last packets the full
        socket refused (fail-open passes them) leave a gap no later packet may come to reveal,
        and a scrape right after the backlog must see them."""
        if self.handler is None or self.plan is None:
            return
        stats = read_queue_line(self.plan.policy.classifier.queue_num)
        if stats is None or stats["backlog"] or not stats["sequence"]:
            return  # packets on their way carry ids of their own; the next lull counts the rest
        self.handler.account_undelivered(stats["sequence"])

    def _start_reload(self) -> None:
        """Start re-reading the policy file; the result is handled by `_reload_done` on the loop."""
        if self.changes.busy:
            self._want_reload = False
            log.warning("event=reload_deferred reason=\"a change awaits confirmation; confirm or let it revert\"")
            return
        if self.builder.busy:
            return  # still wanted: starts once the build in progress is done (SIGHUPs meanwhile coalesce)
        self._want_reload = False
        self.metrics.reload_time.set(time.time())
        self.systemd.reloading()
        log.info("event=reload_started policy=%s", self.policy_path)
        self.change_policy(BuildRequest(path=self.policy_path), self._reload_done)

    def _reload_done(self, result: SwitchResult) -> None:
        if result.issues:
            for issue in result.issues:
                log.error("event=reload_refused where=%s message=%r", issue.location, issue.message)
            log.error("event=reload_refused errors=%d kept_generation=%d", len(result.issues), self.generation)
            self._reload_failed()
            return
        if result.plan is None:
            log.error("event=reload_refused error=%r kept_generation=%d", result.apply_error, self.generation)
            self._reload_failed()
            return
        self.record_policy_in_force(self.policy_path, result.text, degraded=False)
        settle_garbage_collector(collect=False)
        release_freed_heap()  # the build's parse trees and texts, freed in the worker's arena
        clock = result.clock or StepClock()
        log.info("event=reloaded generation=%d seconds=%.3f %s", self.generation, clock.total(), clock)
        self.systemd.ready(self._status_line())

    # --- the two verbs every policy change goes through (reload, apply, revert; start uses the second half) ---
    def change_policy(self, request: BuildRequest, done: SwitchDone) -> bool:
        """Build the policy in the worker, then apply and adopt it on the loop and call `done`.

        False (nothing started) while another change is being built: one at a time."""
        return self.builder.start(request, self.plan, self.generation,
                                  lambda outcome: done(self._finish_switch(outcome)),
                                  held_domains=self.classifier.tables.domains if self.classifier else None)

    def _finish_switch(self, outcome: BuildOutcome) -> SwitchResult:
        """On the loop: apply a built plan (one nft transaction) and adopt it, or say why not."""
        if isinstance(outcome, PolicyError):
            return SwitchResult(None, issues=tuple(outcome.issues))
        if outcome.running_generation != self.generation:
            # Cannot happen while every change goes through the one builder; kept as a guard.
            return SwitchResult(None, apply_error="the running policy changed while this one was built")
        clock = outcome.clock
        try:
            self._apply(outcome.plan)
        except ApplyError as exc:
            return SwitchResult(None, apply_error=str(exc), clock=clock)
        clock.step_done("apply")
        self.adopt(outcome.plan, outcome.tables)
        clock.step_done("adopt")
        return SwitchResult(outcome.plan, outcome.text, clock=clock)

    def _apply(self, plan: Plan) -> None:
        """Apply `plan`, serving the queue meanwhile with the running plan's verdicts (its table is
        in force until the transaction commits; the swap keeps the tables' hooks, so packets
        waiting in the queue survive it: NftTable.swap_script)."""
        previous = self.plan
        if self.queue is None:  # the first apply: no queue to serve yet
            self.applier.apply(plan, previous)
            return
        queue_fd = self.queue.get_fd()

        def serve_queue() -> None:
            try:
                readable, _, _ = select.select([queue_fd, self._wake_read], [], [], APPLY_POLL_SECONDS)
            except InterruptedError:
                return
            if queue_fd in readable:
                self._drain_queue()
                self._undelivered_check_due = True
            if self._wake_read in readable:
                os.read(self._wake_read, 512)

        run_beside_loop(lambda: self.applier.apply(plan, previous), serve_queue, self._wake_loop)

    def record_policy_in_force(self, path: str, text: str | None, *, degraded: bool) -> None:
        """The running policy stands for the file at `path` (or, degraded, last-known-good stands in
        for that broken file); `text`, when given, becomes the new last-known-good copy."""
        self.policy_path = path
        self.degraded = degraded
        self.metrics.degraded.set(1 if degraded else 0)
        if text is not None:
            # The plan in force is the one just switched to: its policy names the files to keep.
            self.last_good.save(text, referenced_files(self.plan.policy) if self.plan else ())

    def adopt(self, plan: Plan, tables: ClassifierTables | None) -> None:
        """Make an applied plan the running one: classifier tables (None: the apps did not change),
        numbering, metrics."""
        previous = self.plan
        self._took_effect(plan)
        if self.classifier is None or self.handler is None:
            # Every DNS flow stays "dns": attributing a lookup to the app it names would let
            # a block rule drop the lookup itself, and a client that cannot resolve waits for
            # a DNS timeout instead of getting a quick reset (and the kernel learns nothing).
            assert tables is not None  # the first build has no running apps to keep
            self.classifier = Classifier(tables, max_packets=plan.policy.classifier.max_packets,
                                         dns_flow_takes_queried_app=False)
            self.handler = VerdictHandler(self.classifier, plan.numbering, self.applier.learned_writer, self.metrics)
            self.applier.learned_writer.on_written = self.ha_sync.note_learned
        elif tables is not None:
            self.classifier.replace_tables(tables)
        self.handler.numbering = plan.numbering
        self.handler.blockable_apps = plan.ruleset.blockable_apps
        self.handler.announcer = self.flow_announcer if plan.policy.ha is not None else None
        if previous and previous.policy.classifier.queue_num != plan.policy.classifier.queue_num:
            log.warning("event=queue_number_changed effective=after_restart")
        if previous and previous.policy.classifier.fail_mode != plan.policy.classifier.fail_mode:
            self._set_queue_fail_open(plan.policy.classifier.fail_mode)
        self.metrics.set_fail_mode(plan.policy.classifier.fail_mode)
        self.link_health.adopt(plan)
        self.schedule_epochs.adopt(plan.policy)
        self.ha_peer.adopt(plan.policy.ha, plan.policy.content_sha256)  # of the text loaded, not the file now
        self.ha_sync.adopt(self.ha_peer.node, self.ha_peer.peer,
                           plan.policy.ha.sync_interface if plan.policy.ha else None,
                           plan.numbering.apps.numbers, self._guard_has_blocklist())

    def _set_queue_fail_open(self, fail_mode: str) -> None:
        """fail_mode open: a packet the queue cannot take passes (counted) instead of being dropped."""
        if self.queue is None:
            return  # not bound yet: run() sets it right after binding
        queue_num = self.plan.policy.classifier.queue_num if self.plan else 0
        enabled = fail_mode == "open"
        try:
            set_fail_open(self.queue, queue_num, enabled)
        except QueueConfigError as exc:
            self.metrics.queue_fail_open.set(0)
            log.warning("event=queue_fail_open_failed error=%r effect=\"a full queue drops packets\"", str(exc))
            return
        self.metrics.queue_fail_open.set(1 if enabled else 0)
        log.info("event=queue_fail_open enabled=%s queue=%d max_len=%d", "yes" if enabled else "no", queue_num,
                 QUEUE_MAX_LEN)

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
        return {**build_status(facts, self.plan, self.applier, self.classifier), "ha": self.ha_peer.report()}

    def _shutdown(self) -> None:
        if self._timestamp_keeper is not None:
            self._timestamp_keeper.close()
        self.link_health.stop()
        self.ha_peer.close()
        self.ha_sync.close()
        self.flow_announcer.close()
        self.metrics.gc_pauses.uninstall()
        self.blocklist_watch.stop()  # before its socket closes
        self.gateway_arp.stop()
        self.blocklist_reader.close()
        self.set_reader.close()
        self.builder.close()
        self.control.close()
        if self.queue is not None:
            try:
                self.queue.unbind()
            except OSError:
                pass
        self.applier.teardown(self.plan)
        log.info("event=stopped removed=\"nft table, queue rule, qdiscs\"")

