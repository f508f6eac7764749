"""The wait before the read, measured live: with `--measure-queue-wait` the kernel's receive
timestamps reach the daemon with every forwarded queued packet and fill
gatewayd_classifier_queue_wait_seconds; without it the histogram stays empty. And the start
line names the verdict loop's CPU scheduling."""

from __future__ import annotations

import time

import pytest

from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.topology import Lab
from gatewayd.lab.verdict_probe import probe

pytestmark = pytest.mark.integration

WAIT = "gatewayd_classifier_queue_wait_seconds"
LATENCY = "gatewayd_classifier_latency_seconds"


def queued_for_a_while(lab: Lab, daemon: GatewayDaemon, seconds: float) -> tuple[float, float]:
    """(packets read, of which with a receive time) while new flows arrive for `seconds`."""
    before = daemon.metrics()
    flows = probe(lab, max_seconds=seconds + 20)
    try:
        time.sleep(seconds)
    finally:
        results = flows.stop()
    assert results and all(flow.ok for flow in results), [flow for flow in results if not flow.ok][:5]
    after = daemon.metrics()
    read = metric_value(after, f"{LATENCY}_count") - metric_value(before, f"{LATENCY}_count")
    waited = metric_value(after, f"{WAIT}_count") - metric_value(before, f"{WAIT}_count")
    return read, waited


def test_queue_wait_is_measured_only_when_asked_and_for_every_forwarded_packet() -> None:
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        try:
            assert "scheduling=other " in daemon.log_text()  # the lab starts it without the unit's chrt
            read, waited = queued_for_a_while(lab, daemon, 1.5)
        finally:
            daemon.stop()
        assert read >= 20 and waited == 0, (read, waited)

        daemon = GatewayDaemon(lab, OFFICE_POLICY).start(extra_args=("--measure-queue-wait",))
        try:
            read, waited = queued_for_a_while(lab, daemon, 1.5)
            exposition = daemon.metrics()
        finally:
            daemon.stop()
        # Every queued packet of the probe is forwarded (received on the LAN side): each has a stamp.
        assert read >= 20 and waited == read, (read, waited)
        # A wait is the time between two clock reads of this machine: never negative, and in a lab
        # with nothing else queued, most are well under a second.
        assert metric_value(exposition, f"{WAIT}_bucket", le="0.05") >= 0.9 * waited
