"""An apply runs beside the verdict loop: the loop keeps serving until it returns, and its
error reaches the loop."""

from __future__ import annotations

import sys
import threading

import pytest

from gatewayd.daemon.background_apply import run_beside_loop
from gatewayd.daemon.policy_builder import BUILD_SWITCH_INTERVAL

WAIT_SECONDS = 5.0  # bound on every wait here


def test_the_loop_serves_while_the_apply_runs_and_the_apply_ends_the_serving() -> None:
    served_during_apply = threading.Event()
    apply_may_end = threading.Event()
    wake = threading.Event()
    serves = []

    def apply() -> None:
        assert served_during_apply.wait(WAIT_SECONDS)  # the loop served a queued packet meanwhile
        apply_may_end.set()

    def serve() -> None:
        serves.append(sys.getswitchinterval())
        served_during_apply.set()
        wake.wait(0.01)  # a bounded wait for "packets", as select would

    default = sys.getswitchinterval()
    run_beside_loop(apply, serve, wake.set)
    assert apply_may_end.is_set() and serves
    assert serves[0] == pytest.approx(BUILD_SWITCH_INTERVAL)  # the apply's Python parts yield the GIL often
    assert sys.getswitchinterval() == pytest.approx(default)


def test_what_the_apply_raised_is_raised_to_the_loop() -> None:
    def apply() -> None:
        raise RuntimeError("nftables refused the ruleset")

    def serve() -> None:
        threading.Event().wait(0.01)

    with pytest.raises(RuntimeError, match="refused"):
        run_beside_loop(apply, serve, lambda: None)
