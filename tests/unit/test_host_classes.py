"""On-demand per-host classes: the nft sets that note a host's first packet, and the daemon's watch."""

from __future__ import annotations

import pytest

from gatewayd.apply.host_sets import grant_classes, settle_after_swap
from gatewayd.compile.plan import Plan
from gatewayd.daemon.host_classes import MAX_HOSTS_PER_POLL, POLL_INTERVAL_SECONDS, HostClassWatch
from tests.unit.test_qos_plan import plan_of


def test_every_limited_host_starts_classless_and_its_first_packet_is_noted() -> None:
    plan = plan_of()
    table = plan.ruleset.table
    classless = next(s for s in table.sets if s.name == "hosts_classless_v4")
    assert len(classless.elements) == 6 and "192.0.2.193" in classless.elements
    waiting = next(s for s in table.sets if s.name == "hosts_waiting_v4")
    assert "dynamic" in waiting.flags and not waiting.elements
    enforce = [r.statement for r in table.chain("enforce").rules]
    assert "ct direction original ip saddr @hosts_classless_v4 add @hosts_waiting_v4 { ip saddr }" in enforce
    assert "ct direction reply ip daddr @hosts_classless_v4 add @hosts_waiting_v4 { ip daddr }" in enforce


def test_without_limited_hosts_there_is_nothing_to_watch() -> None:
    plan = plan_of(BASE_WITHOUT_HOSTS)
    assert not any(s.name.startswith("hosts_") for s in plan.ruleset.table.sets)
    assert HostClassWatch.wanted(plan) is False


BASE_WITHOUT_HOSTS = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
classes:
  default: { priority: 3 }
groups:
  staff: { members: [192.0.2.0/28] }
rules: []
"""


class FakeKernel:
    def __init__(self, waiting: list[str]) -> None:
        self.waiting = waiting
        self.reads = 0

    def read(self) -> list[str]:
        self.reads += 1
        if isinstance(self.waiting, Exception):
            raise self.waiting
        return list(self.waiting)


def watch_with(waiting: list[str] | Exception, made: list[list[str]]) -> tuple[HostClassWatch, FakeKernel, list[float]]:
    kernel = FakeKernel(waiting)  # type: ignore[arg-type]
    now = [100.0]

    def make(_plan: Plan, addresses: list[str]) -> int:
        made.append(addresses)
        return 2 * len(addresses)  # a class on each side

    watch = HostClassWatch(make, kernel.read, clock=lambda: now[0])
    return watch, kernel, now


def test_waiting_hosts_get_their_classes_once_per_interval() -> None:
    made: list[list[str]] = []
    watch, kernel, now = watch_with(["192.0.2.193", "192.0.2.194"], made)
    plan = plan_of()
    watch.poll(plan)
    assert made == [["192.0.2.193", "192.0.2.194"]] and watch.made_total == 4
    watch.poll(plan)  # same instant: not polled again
    assert kernel.reads == 1
    assert watch.seconds_to_next_poll(plan) == pytest.approx(POLL_INTERVAL_SECONDS)
    now[0] += POLL_INTERVAL_SECONDS * 1.01
    kernel.waiting = []
    watch.poll(plan)
    assert kernel.reads == 2 and len(made) == 1  # nothing waiting: nothing made


def test_a_crowd_is_served_in_slices_so_verdicts_keep_flowing() -> None:
    made: list[list[str]] = []
    crowd = [f"198.51.100.{i % 250}" for i in range(MAX_HOSTS_PER_POLL + 7)]
    watch, _kernel, _now = watch_with(crowd, made)
    watch.poll(plan_of())
    assert len(made[0]) == MAX_HOSTS_PER_POLL  # the rest stay waiting in the kernel for the next poll


def test_a_failed_read_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    made: list[list[str]] = []
    watch, kernel, now = watch_with(RuntimeError("netlink busy"), made)
    plan = plan_of()
    watch.poll(plan)
    assert "event=host_classes_failed" in caplog.text and not made
    kernel.waiting = ["192.0.2.193"]
    now[0] += POLL_INTERVAL_SECONDS * 1.01
    watch.poll(plan)
    assert made == [["192.0.2.193"]]


class RecordingKernel:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str) -> None:
        self.scripts.append(script)


def test_a_host_with_classes_enters_the_maps_and_leaves_the_sets_in_one_transaction() -> None:
    plan = plan_of()
    guest = next(h for h in plan.host_slots.hosts if str(h.address) == "192.0.2.193")
    kernel = RecordingKernel()
    grant_classes(kernel, [guest], stray=["198.51.100.9"])  # type: ignore[arg-type]
    assert len(kernel.scripts) == 1
    lines = kernel.scripts[0].splitlines()
    assert f"add element inet gatewayd host_down_v4 {{ 192.0.2.193 : 1:{guest.minor:x} }}" in lines
    assert f"add element inet gatewayd host_up_v4 {{ 192.0.2.193 : 1:{guest.minor:x} }}" in lines
    # Removals are add-then-delete, so an element a reload already dropped is no error.
    assert "add element inet gatewayd hosts_classless_v4 { 192.0.2.193 }" in lines
    assert "delete element inet gatewayd hosts_classless_v4 { 192.0.2.193 }" in lines
    assert "delete element inet gatewayd hosts_waiting_v4 { 192.0.2.193, 198.51.100.9 }" in lines
    assert not any(line.startswith("delete element inet gatewayd host_") for line in lines)


def test_after_a_swap_hosts_without_classes_leave_the_maps_and_the_others_the_classless_set() -> None:
    plan = plan_of()
    made, *rest = plan.host_slots.hosts
    kernel = RecordingKernel()
    settle_after_swap(kernel, [made], rest)  # type: ignore[arg-type]
    lines = kernel.scripts[0].splitlines()
    down = next(line for line in lines if line.startswith("delete element inet gatewayd host_down_v4"))
    assert all(str(h.address) in down for h in rest) and f"{made.address}," not in down
    assert f"delete element inet gatewayd hosts_classless_v4 {{ {made.address} }}" in lines
    assert not any(line.startswith("add element") for line in lines)  # all there right after a swap
