"""The NFQUEUE callback: classify a queued packet, teach the kernel, give the verdict.

Every queued packet is accepted: blocking is the kernel's job (rules chain),
so a bug here can delay a decision but never blackhole traffic. A decision
travels back in the packet mark (app bits, compile/marks.py); the enforce
chain saves it in the ct mark. Addresses learned from a DNS answer go to the
learned-address writer, which puts them into the kernel maps from its own
thread: the answer is released at once, never held behind a netlink write,
and until the write lands the client's first packet to such an address is
queued and decided from the classifier's own memory. Whether an answer may
teach at all starts with who sent it, which only the kernel knows: its rules
mark answers from the policy's resolvers and from the router's own
(compile/marks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from gatewayd.classify.dns_learning import AnswerOrigin
from gatewayd.classify.engine import Classifier, LearnedAddress
from gatewayd.classify.packet import parse_packet
from gatewayd.compile import marks
from gatewayd.compile.numbering import Numbering
from gatewayd.metrics.daemon_state import DaemonMetrics

flow_log = logging.getLogger("gatewayd.flow")
log = logging.getLogger("gatewayd.verdicts")


def answer_origin(mark: int) -> AnswerOrigin:
    """Who sent a queued packet, should it be a DNS answer, as the classify rules marked it."""
    if mark & marks.ROUTER_ANSWER:
        return AnswerOrigin.ROUTER
    if mark & marks.RESOLVER_ANSWER:
        return AnswerOrigin.NAMED_RESOLVER
    return AnswerOrigin.OTHER


class LearnedSink(Protocol):
    """Takes learned addresses for the kernel without waiting for it (apply/learned_writer.py)."""

    def submit(self, entries: Iterable[LearnedAddress]) -> None: ...


class FlowAnnouncer(Protocol):
    """Makes the kernel report a conntrack entry to its event listeners now (apply/conntrack_events.py)."""

    def announce(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bool: ...


class VerdictHandler:
    def __init__(self, classifier: Classifier, numbering: Numbering, learned_sink: LearnedSink,
                 metrics: DaemonMetrics) -> None:
        self.classifier = classifier
        self.numbering = numbering
        self.learned_sink = learned_sink
        self.metrics = metrics
        # HA: conntrackd hears a ct mark change only when a later packet of the flow is confirmed,
        # and a flow blocked on its deciding packet has none. So a flow decided for an app a block
        # rule may apply to is announced once, after its verdict, when the ct mark is final.
        self.announcer: FlowAnnouncer | None = None
        self.blockable_apps: frozenset[int] | None = frozenset()  # None: any app (CompiledRuleset)
        self._last_packet_id: int | None = None
        # The read -> verdict histogram misses the wait before the read (socket, wake-up, the loop's
        # other work): with kernel receive timestamps on (daemon/queue_wait.py), it is measured too.
        self.measure_queue_wait = False

    def __call__(self, packet: Any) -> None:
        started = time.perf_counter()
        announce, mark, payload = False, 0, b""
        try:
            if self.measure_queue_wait:
                self._observe_queue_wait(packet.get_timestamp())
            self._count_unread(packet.id)
            # The kernel marks reply-direction packets: the classifier need not see the SYN.
            mark, payload = packet.get_mark(), packet.get_payload()
            outcome = self.classifier.on_packet(payload, time.monotonic(),
                                                not mark & marks.FROM_SERVER, answer_origin(mark))
            if outcome.learned:
                # Handed over, not written: the answer goes now, the writer thread follows.
                self.learned_sink.submit(outcome.learned)
            decision = outcome.flow_decision
            if decision is not None:
                number = self.numbering.apps.numbers.get(decision.app, marks.APP_UNKNOWN)
                packet.set_mark(marks.verdict_packet_mark(mark, number))
            first = outcome.decision
            if first is not None:
                number = self.numbering.apps.numbers.get(first.app, marks.APP_UNKNOWN)
                announce = self.announcer is not None and (self.blockable_apps is None
                                                           or number in self.blockable_apps)
                self.metrics.count_decision(first.method)
                if flow_log.isEnabledFor(logging.DEBUG):
                    flow_log.debug("event=flow_decided app=%s method=%s evidence=%r",
                                   first.app, first.method, first.evidence)
        except Exception:
            self.metrics.errors.inc()
            log.exception("event=verdict_failed action=accept")
        finally:
            packet.accept()
            self.metrics.latency.observe(time.perf_counter() - started)
        if announce:  # after the verdict: the kernel has run the packet through the rules by now
            self._announce(payload, not mark & marks.FROM_SERVER)

    def _observe_queue_wait(self, received: float) -> None:
        """`received`: the kernel's receive time of the packet (wall clock), 0 when it has none (a packet
        the router sent itself, or one received before timestamps were on)."""
        if received > 0:
            self.metrics.queue_wait.observe(max(0.0, time.time() - received))

    def _announce(self, payload: bytes, from_client: bool) -> None:
        info = parse_packet(payload)
        if self.announcer is None or info is None or not info.l4_present:
            return
        try:
            if from_client:
                self.announcer.announce(info.src, info.dst, info.proto, info.sport, info.dport)
            else:  # the entry is named by its original direction: the client's
                self.announcer.announce(info.dst, info.src, info.proto, info.dport, info.sport)
        except (OSError, RuntimeError) as exc:
            self.metrics.errors.inc()
            log.warning("event=flow_announce_failed error=%r", str(exc))

    def _count_unread(self, packet_id: int) -> None:
        """The kernel numbers every packet it queues, also those our full socket buffer then
        refused (passed by fail-open, or dropped): a gap in the ids is that many packets."""
        last, self._last_packet_id = self._last_packet_id, packet_id
        if last is not None:
            self._count_ids_between(last, packet_id)

    def account_undelivered(self, kernel_sequence: int) -> None:
        """Count the ids the kernel numbered after our last packet, called while the kernel holds
        no packet for us (backlog 0): each was refused by the full socket, none is on its way.

        Without this a gap is only seen when a later packet arrives, and the packets passed
        while the daemon was behind stay uncounted until the next flow, perhaps for ever."""
        last = 0 if self._last_packet_id is None else self._last_packet_id  # a fresh queue numbers from 1
        self._last_packet_id = kernel_sequence
        self._count_ids_between(last, kernel_sequence + 1)

    def _count_ids_between(self, last_id: int, next_id: int) -> None:
        gap = (next_id - last_id - 1) & 0xFFFFFFFF  # ids are u32 and wrap
        if 0 < gap < 0x80000000:  # a "gap" of billions is an id going back (a re-bind), not a loss
            self.metrics.queue_unread.inc(gap)
