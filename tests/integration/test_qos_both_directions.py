"""Both directions saturated at once: the download keeps its rate, the upload too, calls stay fast.

Without a control leaf, the download's ACKs wait on wan0 behind the upload's
full-size packets in the same FIFO leaf (this kernel has no fq_codel, cake or
sfq), and the download fell to about 2/3 of its rate. gatewayd is the
bottleneck here (lab links are much faster than the shaped 20 Mbit/s), so
its queues are the only ones that fill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gatewayd.lab.gateway import GatewayDaemon, metric_value, running_gatewayd
from gatewayd.lab.services import DEFAULT_SITES, IPERF_PORTS, IPERF_SERVER_V4
from gatewayd.lab.shaping import IperfJob, RttResult, concurrent_rates, udp_rtt
from gatewayd.lab.topology import HostSpec, Lab

pytestmark = pytest.mark.integration

LINK_BPS = 20_000_000
LOAD_SECONDS = 9
OMIT_SECONDS = 2  # slow start is not the shaper's rate
PROBE_START_SECONDS = 3  # the senders' windows have grown into the queues by then
PROBE_SECONDS = 4
RTT_BUDGET_MS = 5.0  # the target: realtime RTT <= idle + 5 ms

POLICY = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 20mbit }
classes:
  realtime: { priority: 0, guaranteed: 20% }
  default:  { priority: 3, guaranteed: 50% }
  bulk:     { priority: 7, guaranteed: 5% }
groups:
  voice: { members: [192.0.2.10] }
  staff: { members: [192.0.2.0/26] }
rules:
  - { name: calls, groups: [voice], class: realtime }
"""

HOSTS = {
    "caller": HostSpec("192.0.2.10", "2001:db8:1::10", "02:00:00:00:00:10"),
    "downloader": HostSpec("192.0.2.11", "2001:db8:1::11", "02:00:00:00:00:11"),
    "uploader": HostSpec("192.0.2.12", "2001:db8:1::12", "02:00:00:00:00:12"),
}


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon]]:
    policy = tmp_path_factory.mktemp("qos_both") / "qos.yaml"
    policy.write_text(POLICY)
    with Lab(hosts=HOSTS) as lab, running_gatewayd(lab, policy) as daemon:
        yield lab, daemon


def saturate_both_directions(lab: Lab) -> tuple[float, float, RttResult]:
    """(download goodput, upload goodput, the caller's RTT while both run) with 4 streams each way."""
    load = [IperfJob("downloader", IPERF_SERVER_V4, IPERF_PORTS[0], LOAD_SECONDS, streams=4,
                     omit_seconds=OMIT_SECONDS),
            IperfJob("uploader", IPERF_SERVER_V4, IPERF_PORTS[1], LOAD_SECONDS, download=False, streams=4,
                     omit_seconds=OMIT_SECONDS)]
    rates: list[float] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            rates.extend(concurrent_rates(lab, load))
        except BaseException as exc:  # re-raised below, in the test's thread
            failures.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        time.sleep(PROBE_START_SECONDS)
        loaded = udp_rtt(lab, "caller", DEFAULT_SITES["news"].ipv4 or "", count=int(PROBE_SECONDS / 0.02),
                         max_seconds=PROBE_SECONDS)
    finally:
        runner.join(LOAD_SECONDS + OMIT_SECONDS + 30)
    if failures:
        raise failures[0]
    assert len(rates) == 2, "the bulk load did not finish in time"
    return rates[0], rates[1], loaded


def test_download_and_upload_each_keep_90_percent_with_calls_still_fast(
        shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = shaped
    echo = DEFAULT_SITES["news"].ipv4 or ""
    idle = udp_rtt(lab, "caller", echo, count=50)
    down, up, loaded = saturate_both_directions(lab)
    assert down >= 0.90 * LINK_BPS, f"download {down / 1e6:.1f} Mbit/s while the upload runs (upload {up / 1e6:.1f})"
    assert up >= 0.90 * LINK_BPS, f"upload {up / 1e6:.1f} Mbit/s while the download runs (download {down / 1e6:.1f})"
    assert loaded.median_ms <= idle.median_ms + RTT_BUDGET_MS, \
        f"realtime RTT {loaded.median_ms:.1f} ms loaded, {idle.median_ms:.1f} ms idle"
    # The download's ACKs left through the control leaf on wan0, not behind the upload's data.
    exposition = daemon.metrics()
    acks = metric_value(exposition, "gatewayd_class_packets_total", interface="wan0", group="", **{"class": "control"})
    assert acks >= 1000, f"the control leaf on wan0 carried only {acks:.0f} packets"
