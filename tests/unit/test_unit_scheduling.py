"""The lab runs the daemon with the CPU scheduling the shipped unit asks for (lab/unit_scheduling.py)."""

from __future__ import annotations

import pytest

from gatewayd.lab.unit_scheduling import UnitSchedulingError, scheduling_prefix, unit_scheduling_prefix


def test_the_shipped_unit_becomes_chrt_round_robin_with_reset_on_fork() -> None:
    assert unit_scheduling_prefix() == ("chrt", "--rr", "--reset-on-fork", "1")


def test_only_the_service_section_counts_and_comments_are_skipped() -> None:
    text = """[Unit]
CPUSchedulingPolicy=fifo
[Service]
# CPUSchedulingPolicy=idle
CPUSchedulingPolicy = fifo
CPUSchedulingPriority=7
"""
    assert scheduling_prefix(text) == ("chrt", "--fifo", "7")


def test_no_scheduling_settings_give_no_prefix_and_nice_becomes_nice() -> None:
    assert scheduling_prefix("[Service]\nExecStart=/usr/bin/gatewayd run\n") == ()
    assert scheduling_prefix("[Service]\nNice=-5\nCPUSchedulingPolicy=batch\n") == (
        "nice", "-n", "-5", "chrt", "--batch", "0")


@pytest.mark.parametrize("service", ["CPUSchedulingPolicy=rr", "CPUSchedulingPolicy=rr\nCPUSchedulingPriority=0",
                                     "CPUSchedulingPolicy=deadline\nCPUSchedulingPriority=1"])
def test_a_real_time_policy_needs_a_valid_priority_and_a_known_name(service: str) -> None:
    with pytest.raises(UnitSchedulingError):
        scheduling_prefix(f"[Service]\n{service}\n")
