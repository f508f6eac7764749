"""WAN link health: probe each link off the verdict path, fail over and back in the main loop.

One prober thread per probed link runs a round (daemon/link_probes.py) every
`interval` and posts the result to a queue, waking the main loop through a pipe.
The main loop (Daemon._loop) reads the results with `poll`, on its own thread
like every other kernel change: a state change rewrites the link choice in one
nft transaction and, for a failed link, deletes the conntrack entries whose ct
mark carries that link (apply/links.py), and nothing else.

Worst case from the upstream going silent to the link taken out of the choice:
one interval (the round in flight may still have been answered) plus `fall`
rounds; the defaults (500 ms, fall 3) make that 2 s.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from gatewayd.compile import marks
from gatewayd.compile.plan import Plan
from gatewayd.daemon.link_probes import RoundResult, probe_round
from gatewayd.policy.model import LinkProbe, WanLink

log = logging.getLogger("gatewayd.links")

QUALITY_WINDOW = 10  # rounds that loss and latency are judged over
MIN_QUALITY_ROUNDS = 5  # judge quality only with this many rounds seen


class LinkSwitch(Protocol):
    """What link health needs from the apply layer (apply/links.py LinkKernel)."""

    def choose_links(self, plan: Plan, up: frozenset[str]) -> None: ...

    def end_connections(self, link_number: int) -> int: ...


class LinkState:
    """One link's verdict from its probe rounds: fall/rise counting and the quality window."""

    def __init__(self, probe: LinkProbe | None) -> None:
        self.probe = probe
        self.up = True
        self.bad_in_a_row = 0
        self.good_in_a_row = 0
        self.window: deque[RoundResult] = deque(maxlen=QUALITY_WINDOW)
        self.first_bad_at: float | None = None  # monotonic time of the first bad round of this run

    def loss(self) -> float | None:
        if not self.window:
            return None
        return sum(1 for r in self.window if not r.answered) / len(self.window)

    def mean_rtt(self) -> float | None:
        rtts = [r.rtt_seconds for r in self.window if r.rtt_seconds is not None]
        return sum(rtts) / len(rtts) if rtts else None

    def quality_failing(self) -> str | None:
        """Why the window breaks the probe's thresholds, or None."""
        if self.probe is None or len(self.window) < MIN_QUALITY_ROUNDS:
            return None
        loss, rtt = self.loss(), self.mean_rtt()
        if self.probe.max_loss is not None and loss is not None and loss > self.probe.max_loss:
            return f"loss {loss:.0%} over {self.probe.max_loss:.0%}"
        if self.probe.max_latency_ms is not None and rtt is not None and rtt * 1000 > self.probe.max_latency_ms:
            return f"latency {rtt * 1000:.0f}ms over {self.probe.max_latency_ms}ms"
        return None

    def record(self, result: RoundResult, at: float) -> str | None:
        """Count one round; the reason when the link changes state ("down: ..." / "up"), else None."""
        assert self.probe is not None
        self.window.append(result)
        if result.answered:
            self.good_in_a_row += 1
            self.bad_in_a_row = 0
        else:
            self.bad_in_a_row += 1
            self.good_in_a_row = 0
            if self.bad_in_a_row == 1:
                self.first_bad_at = at
        quality = self.quality_failing()
        if self.up and self.bad_in_a_row >= self.probe.fall:
            self.up = False
            return f"{self.bad_in_a_row} rounds unanswered"
        if self.up and quality:
            self.up = False
            return quality
        if not self.up and self.good_in_a_row >= self.probe.rise and quality is None:
            self.up = True
            return "answering again"
        return None


@dataclass
class _LinkCounts:
    failovers: int = 0
    failbacks: int = 0
    ended: int = 0  # connections ended by failovers
    since: float = field(default_factory=time.time)  # wall clock of the last change


@dataclass(frozen=True)
class LinkReport:
    """A link as metrics and `gatewayd status` show it."""

    name: str
    interface: str
    weight: int
    probed: bool
    up: bool
    rtt_seconds: float | None
    loss: float | None
    failovers: int
    failbacks: int
    ended_connections: int
    since: float  # wall-clock time of the last change (or of start)


class _Prober(threading.Thread):
    def __init__(self, link: WanLink, mark: int, results: queue.SimpleQueue[tuple[str, RoundResult, float]],
                 wake_fd: int) -> None:
        super().__init__(name=f"probe-{link.name}", daemon=True)
        assert link.probe is not None
        self.link, self.probe, self.mark = link, link.probe, mark
        self.results, self.wake_fd = results, wake_fd
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = self.probe.interval_ms / 1000
        next_round = time.monotonic()
        while not self.stopping.wait(max(0.0, next_round - time.monotonic())):
            next_round = max(next_round + interval, time.monotonic())
            try:
                result = probe_round(self.probe, self.mark, self.link.interface)
            except OSError as exc:  # e.g. the interface vanished: the round simply failed
                log.debug("event=probe_failed link=%s error=%r", self.link.name, str(exc))
                result = RoundResult(False, None)
            self.results.put((self.link.name, result, time.monotonic()))
            try:
                os.write(self.wake_fd, b"l")
            except BlockingIOError:
                pass  # the loop is already due to wake


class LinkHealth:
    def __init__(self, switch: LinkSwitch) -> None:
        self.switch = switch
        self.plan: Plan | None = None
        self.states: dict[str, LinkState] = {}
        self.counts: dict[str, _LinkCounts] = {}
        self.results: queue.SimpleQueue[tuple[str, RoundResult, float]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._probers: list[_Prober] = []

    def fds(self) -> list[int]:
        return [self._wake_read] if self._probers else []

    def adopt(self, plan: Plan) -> None:
        """A new plan applied: keep the verdict of links whose line and probe did not change,
        restart the probers, and re-point the choice if a link is still down (the new table
        came with every link in the choice)."""
        self._stop_probers()
        policy = plan.policy
        old = {link.name: link for link in self.plan.policy.links} if self.plan else {}
        self.plan = plan
        states: dict[str, LinkState] = {}
        for link in policy.links:
            previous = old.get(link.name)
            same = previous is not None and (previous.interface, previous.probe) == (link.interface, link.probe)
            states[link.name] = self.states[link.name] if same else LinkState(link.probe)
            self.counts.setdefault(link.name, _LinkCounts())
        self.states = states
        if any(not state.up for state in states.values()):
            self._choose()
        numbers = plan.numbering.links.numbers
        for link in policy.links:
            if link.probe is not None:
                prober = _Prober(link, marks.link_bits(numbers[link.name]), self.results, self._wake_write)
                prober.start()
                self._probers.append(prober)

    def poll(self) -> None:
        """Take the probers' results; act on links that changed state."""
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass
        changed: list[tuple[str, str]] = []
        while True:
            try:
                name, result, at = self.results.get_nowait()
            except queue.Empty:
                break
            state = self.states.get(name)
            if state is None or state.probe is None:
                continue  # a link of a policy replaced since the round started
            reason = state.record(result, at)
            if reason is not None:
                changed.append((name, reason))
        if changed:
            self._act(changed)

    def _up(self) -> frozenset[str]:
        return frozenset(name for name, state in self.states.items() if state.up)

    def _choose(self) -> None:
        assert self.plan is not None
        try:
            self.switch.choose_links(self.plan, self._up())
        except Exception as exc:
            log.error("event=link_choice_failed error=%r", str(exc))

    def _act(self, changed: list[tuple[str, str]]) -> None:
        assert self.plan is not None
        started = time.monotonic()
        self._choose()  # first: no new connection may go to a failed link
        numbers = self.plan.numbering.links.numbers
        for name, reason in changed:
            state, counts = self.states[name], self.counts[name]
            counts.since = time.time()
            if state.up:
                counts.failbacks += 1
                log.warning("event=link_up link=%s reason=%r up=%s", name, reason, ",".join(sorted(self._up())))
                continue
            counts.failovers += 1
            try:
                ended = self.switch.end_connections(numbers[name])
            except Exception as exc:
                log.error("event=link_connections_not_ended link=%s error=%r", name, str(exc))
                ended = 0
            counts.ended += ended
            detected = started - state.first_bad_at if state.first_bad_at is not None else 0.0
            log.warning("event=link_down link=%s reason=%r ended_connections=%d first_failed_round_seconds_ago=%.2f "
                        "switch_seconds=%.3f up=%s", name, reason, ended, detected, time.monotonic() - started,
                        ",".join(sorted(self._up())) or "none")

    def reports(self) -> list[LinkReport]:
        if self.plan is None:
            return []
        reports = []
        for link in self.plan.policy.links:
            state, counts = self.states[link.name], self.counts[link.name]
            reports.append(LinkReport(link.name, link.interface, link.weight, link.probe is not None, state.up,
                                      state.mean_rtt(), state.loss(), counts.failovers, counts.failbacks,
                                      counts.ended, counts.since))
        return reports

    def _stop_probers(self) -> None:
        for prober in self._probers:
            prober.stopping.set()
        for prober in self._probers:
            prober.join(timeout=2.0)
        self._probers = []

    def stop(self) -> None:
        self._stop_probers()
