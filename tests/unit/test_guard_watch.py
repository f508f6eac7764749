"""The blocklist watch logs each blocklisted host once, and no more than its rate allows."""

from __future__ import annotations

import logging

import pytest

from gatewayd.apply.guard_state import BlockedHost, blocklist_by_netlink, read_blocklist
from gatewayd.apply.set_dump_netlink import SetElement, SetMissing
from gatewayd.cli.guard_blocklist import format_blocklist
from gatewayd.daemon.blocklist_watch import BlocklistWatch


class FakeKernel:
    def __init__(self) -> None:
        self.hosts: list[BlockedHost] = []


def make_watch(kernel: FakeKernel, clock: list[float], max_lines: int = 2) -> BlocklistWatch:
    return BlocklistWatch(lambda: list(kernel.hosts), max_lines=max_lines, period_seconds=60,
                          clock=lambda: clock[0])


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={event}" in r.getMessage()]


def test_each_host_is_logged_once_with_reason_and_expiry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kernel, clock = FakeKernel(), [100.0]
    watch = make_watch(kernel, clock)
    kernel.hosts = [BlockedHost("192.0.2.68", 600)]
    for step in range(5):
        clock[0] = 100.0 + step * 1.5
        kernel.hosts = [BlockedHost("192.0.2.68", 600 - int(step * 1.5)),
                        BlockedHost("192.0.2.69", 300 - int(step * 1.5), "host_sweep")]
        watch.poll()
    first, second = lines(caplog, "host_blocklisted")
    assert "address=192.0.2.68" in first and "reason=port_scan" in first and "expires_in=600s" in first
    assert "address=192.0.2.69" in second and "reason=host_sweep" in second


def test_a_host_caught_again_after_release_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kernel, clock = FakeKernel(), [0.0]
    watch = make_watch(kernel, clock)
    kernel.hosts = [BlockedHost("192.0.2.68", 10)]
    watch.poll()
    clock[0], kernel.hosts = 11.0, []
    watch.poll()
    clock[0], kernel.hosts = 13.0, [BlockedHost("192.0.2.68", 10)]
    watch.poll()
    assert len(lines(caplog, "host_blocklisted")) == 2


def test_many_hosts_are_rate_limited_with_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kernel, clock = FakeKernel(), [0.0]
    watch = make_watch(kernel, clock, max_lines=2)
    kernel.hosts = [BlockedHost(f"192.0.2.{n}", 600) for n in range(10, 20)]
    watch.poll()
    assert len(lines(caplog, "host_blocklisted")) == 2
    clock[0] = 61.0
    watch.poll()
    (summary,) = lines(caplog, "blocklist_log_suppressed")
    assert "hosts=8" in summary


def test_status_lists_the_blocklist() -> None:
    text = format_blocklist([BlockedHost("2001:db8:1::68", 30, "host_sweep"), BlockedHost("192.0.2.68", 42)])
    assert text.splitlines()[0] == "blocklist: 2 host(s)"
    assert text.splitlines()[2].split() == ["192.0.2.68", "port_scan", "42s"]
    assert text.splitlines()[3].split() == ["2001:db8:1::68", "host_sweep", "30s"]


class SetsKernel:
    """Answers `list set` for the guard's sets as libnftables' JSON would."""

    def __init__(self, sets: dict[str, list[tuple[str, int]]]) -> None:
        self.sets = sets

    def query(self, command: str) -> list[dict[str, object]]:
        name = command.split()[-1]
        return [{"set": {"elem": [{"elem": {"val": a, "expires": e}} for a, e in self.sets.get(name, [])]}}]


def test_the_blocklist_says_who_swept_hosts_and_who_scanned_ports() -> None:
    kernel = SetsKernel({"blocklist_v4": [("192.0.2.68", 40), ("192.0.2.69", 50)],
                         "sweepers_v4": [("192.0.2.69", 50)]})
    hosts = {h.address: h.reason for h in read_blocklist(kernel)}  # type: ignore[arg-type]
    assert hosts == {"192.0.2.68": "port_scan", "192.0.2.69": "host_sweep"}
    assert format_blocklist([]) == "blocklist: empty\n"


class DumpedSets:
    """Answers netlink set dumps as apply/set_dump_netlink.SetReader would."""

    def __init__(self, sets: dict[str, list[SetElement]]) -> None:
        self.sets = sets

    def elements(self, family: str, table: str, set_name: str) -> list[SetElement]:
        assert (family, table) == ("netdev", "gatewayd_guard")
        if set_name not in self.sets:
            raise SetMissing(set_name)
        return self.sets[set_name]


def test_the_netlink_blocklist_reads_reasons_and_whole_seconds_left() -> None:
    reader = DumpedSets({"blocklist_v4": [SetElement("192.0.2.68", 600_000, 40_999),
                                          SetElement("192.0.2.69", 600_000, 50_000)],
                         "sweepers_v4": [SetElement("192.0.2.69", 600_000, 50_000)],
                         "blocklist_v6": [SetElement("2001:db8:1::68", 600_000, None)]})
    hosts = {h.address: (h.reason, h.expires_seconds) for h in blocklist_by_netlink(reader)}  # type: ignore[arg-type]
    assert hosts == {"192.0.2.68": ("port_scan", 40), "192.0.2.69": ("host_sweep", 50),
                     "2001:db8:1::68": ("port_scan", 600)}
