"""The start log names the verdict loop's CPU scheduling; the unit's reset-on-fork keeps the
daemon's other threads on the normal policy (daemon/scheduling.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.daemon.scheduling import current_scheduling, describe_scheduling
from gatewayd.lab.unit_scheduling import unit_scheduling_prefix

ROOT = Path(__file__).resolve().parents[2]


def test_policies_are_named_with_the_priority_only_when_real_time() -> None:
    assert describe_scheduling(os.SCHED_OTHER, 0) == "other"
    assert describe_scheduling(os.SCHED_BATCH, 0) == "batch"
    assert describe_scheduling(os.SCHED_RR | os.SCHED_RESET_ON_FORK, 1) == "rr:1+reset-on-fork"
    assert describe_scheduling(os.SCHED_FIFO, 50) == "fifo:50"


def test_this_process_runs_the_normal_policy() -> None:
    assert current_scheduling() == describe_scheduling(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chrt") is None, reason="real-time scheduling needs root")
def test_under_the_units_scheduling_only_the_starting_thread_is_real_time() -> None:
    # What systemd does for the unit, done by chrt: the main thread (the verdict loop) is
    # round-robin; a thread it starts (scrape, build, apply) is reset to the normal policy.
    probe = ("import threading\n"
             "from gatewayd.daemon.scheduling import current_scheduling\n"
             "seen = []\n"
             "worker = threading.Thread(target=lambda: seen.append(current_scheduling()))\n"
             "worker.start(); worker.join()\n"
             "print(current_scheduling(), seen[0])\n")
    result = subprocess.run([*unit_scheduling_prefix(), sys.executable, "-c", probe], cwd=ROOT,
                            capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.split() == ["rr:1+reset-on-fork", "other"]
