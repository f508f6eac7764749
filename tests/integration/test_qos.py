"""QoS with real traffic: ceilings, fair sharing, guarantees under load, borrowing.

Connection caps (max_connections) have their own lab: test_connection_caps.py.

One lab and one daemon for the module; rates are modest (20 Mbit/s link) so the
margins hold on a loaded 2-core machine. Each measurement leaves TCP's slow
start out (iperf3 -O) and runs a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gatewayd.apply.tc import fifo_limit_bytes
from gatewayd.compile.plan import compile_plan
from gatewayd.lab.gateway import GatewayDaemon, metric_value, running_gatewayd
from gatewayd.lab.services import DEFAULT_SITES, IPERF_PORTS, IPERF_SERVER_V4
from gatewayd.lab.shaping import (
    IperfJob,
    ShapingError,
    class_counters,
    concurrent_rates,
    host_class,
    iperf_rate,
    steady_host_rate,
    udp_rtt,
)
from gatewayd.lab.topology import GATEWAY, HostSpec, Lab
from gatewayd.policy.loader import load_policy_text

pytestmark = pytest.mark.integration

LINK_BPS = 20_000_000
HOST_DOWNLOAD_CEILING = 16_000_000
HOST_UPLOAD_CEILING = 8_000_000
OFFICE_GUARANTEE = LINK_BPS // 2
REALTIME_GUARANTEE = OFFICE_GUARANTEE * 40 // 100  # classes split a group's guarantee as they split the link
BULK_GUARANTEE = OFFICE_GUARANTEE * 5 // 100
PAIR_CEILING = LINK_BPS * 40 // 100
HOST_CLASS_DEADLINE_SECONDS = 2.0  # one 0.1 s poll and a few ms of tc, with room for a busy VM

POLICY = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 20mbit }
classes:
  realtime: { priority: 0, guaranteed: 40% }
  default:  { priority: 3, guaranteed: 10% }
  bulk:     { priority: 7, guaranteed: 5% }
groups:
  office:  # first: its subtree carries the traffic of the two hosts below, split by class
    members: [192.0.2.20, 192.0.2.21]
    bandwidth: { guaranteed: 50% }
  voice: { members: [192.0.2.20] }
  downloads: { members: [192.0.2.21] }
  guest:
    members: [192.0.2.192/28]
    per_host:
      guaranteed: 100kbit
      upload: { limit: 8mbit }
      download: { limit: 16mbit }
  pair:  # equal weights: HTB shares by guarantee, so each host's weight is its guarantee
    members: [192.0.2.210/31]
    bandwidth: { limit: 40% }
    per_host: { guaranteed: 20% }
rules:
  - { name: voice, groups: [voice], class: realtime }
  - { name: downloads, groups: [downloads], class: bulk }
"""

HOSTS = {
    "voice": HostSpec("192.0.2.20", "2001:db8:1::20", "02:00:00:00:00:20"),
    "bulk": HostSpec("192.0.2.21", "2001:db8:1::21", "02:00:00:00:00:21"),
    "guest1": HostSpec("192.0.2.193", "2001:db8:1::193", "02:00:00:00:01:93"),
    "guest3": HostSpec("192.0.2.195", "2001:db8:1::195", "02:00:00:00:01:95"),  # sends once, in one test
    "guest4": HostSpec("192.0.2.196", "2001:db8:1::196", "02:00:00:00:01:96"),  # likewise
    "pair1": HostSpec("192.0.2.210", "2001:db8:1::210", "02:00:00:00:02:10"),
    "pair2": HostSpec("192.0.2.211", "2001:db8:1::211", "02:00:00:00:02:11"),
}

@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon]]:
    policy = tmp_path_factory.mktemp("qos") / "qos.yaml"
    policy.write_text(POLICY)
    with Lab(hosts=HOSTS) as lab, running_gatewayd(lab, policy) as daemon:
        yield lab, daemon


@pytest.mark.parametrize(("direction", "device", "ceiling"), [
    ("download", "lan0", HOST_DOWNLOAD_CEILING),
    ("upload", "wan0", HOST_UPLOAD_CEILING),
])
def test_per_host_ceiling_holds_within_5_percent(shaped: tuple[Lab, GatewayDaemon], direction: str,
                                                 device: str, ceiling: int) -> None:
    lab, _ = shaped
    job = IperfJob("guest1", IPERF_SERVER_V4, IPERF_PORTS[0], seconds=5, download=direction == "download")
    wire_rate, goodput = steady_host_rate(lab, device, HOSTS["guest1"].ipv4, job)
    assert abs(wire_rate / ceiling - 1) <= 0.05, \
        f"host class sent {wire_rate / 1e6:.2f} Mbit/s, ceiling {ceiling / 1e6}"
    assert goodput <= ceiling * 1.02  # what the host received never exceeds it either


def test_a_limited_host_keeps_a_short_queue_at_its_own_ceiling(shaped: tuple[Lab, GatewayDaemon]) -> None:
    """A host downloading at its ceiling must not wait seconds for its own next packet.

    The sender is loss-based (reno, like cubic), so it fills whatever queue
    the host's class has; the gateway receives GRO aggregates of up to 64 KiB,
    so a leaf queue counted in packets would hold megabytes (over a second
    here). Its ceiling is the pair group's.
    """
    lab, _ = shaped
    echo = DEFAULT_SITES["news"].ipv4 or ""
    host = "pair1"  # no connection cap: the probe is a connection of its own
    idle = udp_rtt(lab, host, echo, count=30)
    load = IperfJob(host, IPERF_SERVER_V4, IPERF_PORTS[0], seconds=9, omit_seconds=0, congestion="reno")
    runner = threading.Thread(target=lambda: iperf_rate(lab, load))
    runner.start()
    try:
        time.sleep(3)  # the sender's window has grown into the queue by now
        loaded = udp_rtt(lab, host, echo, count=100, max_seconds=4)
    except ShapingError:
        pytest.fail("at its ceiling, every echo of the host waited over a second in its queue")
    finally:
        runner.join(30)
    queue_ms = fifo_limit_bytes(PAIR_CEILING) * 8 / PAIR_CEILING * 1000  # what its leaf may hold, in time
    assert loaded.median_ms <= idle.median_ms + 1.5 * queue_ms, \
        f"RTT at the ceiling {loaded.median_ms:.0f} ms, idle {idle.median_ms:.1f} ms, leaf queue {queue_ms:.0f} ms"


def test_a_limited_host_gets_its_classes_on_its_first_packet(shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = shaped
    address = HOSTS["guest3"].ipv4
    with pytest.raises(ShapingError):  # no classes yet, so not in the host maps: its group's classes carry it
        host_class(lab, address, "download")
    udp_rtt(lab, "guest3", DEFAULT_SITES["news"].ipv4 or "", count=3)
    started = time.monotonic()
    while True:
        try:
            download, upload = (host_class(lab, address, d) for d in ("download", "upload"))
            break
        except ShapingError:
            assert time.monotonic() - started < HOST_CLASS_DEADLINE_SECONDS, "the host's classes were not made"
            time.sleep(0.05)
    assert download in class_counters(lab, "lan0") and upload in class_counters(lab, "wan0")
    # The next packets go through the host's own class.
    before = class_counters(lab, "lan0")[download]
    udp_rtt(lab, "guest3", DEFAULT_SITES["news"].ipv4 or "", count=3)
    assert class_counters(lab, "lan0")[download] > before
    assert "of 16 limited hosts have their classes" in daemon.control("status").stdout  # guest /28 and pair /31


def test_a_class_already_in_the_kernel_does_not_wedge_the_host(shaped: tuple[Lab, GatewayDaemon]) -> None:
    """Making a host's classes fails half-way (here: one exists already); the next poll finishes the job."""
    lab, daemon = shaped
    address = HOSTS["guest4"].ipv4
    plan = compile_plan(load_policy_text(POLICY, "qos.yaml"))
    download = next(t for t in plan.tc_trees if t.direction == "download")
    host = next(c for c in download.classes if c.name == f"host {address}")
    lab.run(GATEWAY, ["tc", "class", "add", "dev", "lan0", "parent", f"1:{host.parent_minor:x}",
                      "classid", f"1:{host.minor:x}", "htb", "rate", "1mbit"])
    offset = daemon.log_path.stat().st_size
    udp_rtt(lab, "guest4", DEFAULT_SITES["news"].ipv4 or "", count=3)
    started = time.monotonic()
    while True:
        try:
            assert host_class(lab, address, "upload") in class_counters(lab, "wan0")
            break
        except ShapingError:
            assert time.monotonic() - started < HOST_CLASS_DEADLINE_SECONDS, "the host never got its classes"
            time.sleep(0.05)
    assert "event=host_classes_failed" in daemon.log_text(offset)  # it did fail once, and recovered


def test_two_hosts_of_one_group_share_within_10_percent(shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = shaped
    first, second = concurrent_rates(lab, [
        IperfJob("pair1", IPERF_SERVER_V4, IPERF_PORTS[0], seconds=5),
        IperfJob("pair2", IPERF_SERVER_V4, IPERF_PORTS[1], seconds=5),
    ])
    assert abs(first - second) / max(first, second) <= 0.10, f"{first / 1e6:.2f} vs {second / 1e6:.2f} Mbit/s"
    assert first + second >= 0.85 * PAIR_CEILING  # and together they fill their group's ceiling


def test_guaranteed_class_keeps_its_guarantee_while_bulk_saturates(shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = shaped
    bulk, realtime = concurrent_rates(lab, [
        IperfJob("bulk", IPERF_SERVER_V4, IPERF_PORTS[0], seconds=5, streams=4),
        IperfJob("voice", IPERF_SERVER_V4, IPERF_PORTS[1], seconds=5),
    ])
    assert realtime >= 0.9 * REALTIME_GUARANTEE, f"realtime got {realtime / 1e6:.2f} Mbit/s under load"
    assert bulk >= 0.8 * BULK_GUARANTEE  # bulk still moves: it has a guarantee of its own


def test_lone_bulk_flow_borrows_the_idle_link(shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = shaped
    rate = iperf_rate(lab, IperfJob("bulk", IPERF_SERVER_V4, IPERF_PORTS[2], seconds=4))
    assert rate >= 0.90 * LINK_BPS, f"a lone bulk flow got {rate / 1e6:.2f} of {LINK_BPS / 1e6} Mbit/s"
    assert rate <= 1.02 * LINK_BPS


def test_metrics_report_groups_and_classes_without_host_labels(shaped: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = shaped
    iperf_rate(lab, IperfJob("guest1", IPERF_SERVER_V4, IPERF_PORTS[3], seconds=2))
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_group_bytes_total", interface="lan0", group="guest") > 2_000_000
    assert metric_value(exposition, "gatewayd_group_limited_hosts", interface="lan0", group="guest") == 14
    # Classes are made on a host's first packet: at most guest1, guest3 and guest4 have sent;
    # the other 10 addresses never do.
    assert 1 <= metric_value(exposition, "gatewayd_group_host_classes", interface="lan0", group="guest") <= 4
    assert metric_value(exposition, "gatewayd_class_bytes_total", interface="lan0", group="office",
                        **{"class": "realtime"}) > 0  # the voice test's traffic, split by class in its group
    # the kernel's estimate in bytes/s: a guest's transfer just ran through its group's class
    assert metric_value(exposition, "gatewayd_group_rate_bytes_per_second", interface="lan0", group="guest") > 0
    # no per-host label anywhere but the bounded top-talker gauge (metrics.top_talkers hosts)
    assert all(line.startswith("gatewayd_top_talker_bytes{")
               for line in exposition.replace("# ", "").splitlines() if "192.0.2." in line)
