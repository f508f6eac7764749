"""Two gateways, one office: the master dies, the backup carries on (real keepalived and conntrackd).

The office hosts use the LAN virtual address as their default gateway. Long TCP
downloads and a steady UDP call run through gw-a; gw-a's daemons get SIGKILL and
its links go down; the downloads must finish on gw-b without a reset, the call's
flow must keep its mark (its class) and the time without forwarding is measured.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from gatewayd.lab.ha_pair import CALL_PORT, HaPairLab, UdpProbe
from gatewayd.lab.long_flows import LongDownloads
from gatewayd.lab.topology import DEFAULT_HOSTS

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not (shutil.which("keepalived") and shutil.which("conntrackd") and shutil.which("conntrack")),
                       reason="needs keepalived, conntrackd and conntrack (scripts/setup installs them)"),
]

DOWNLOAD_SECONDS = 30.0
FAILOVER_AT_SECONDS = 8.0  # into the downloads: every flow is established and synced by then
# advert 1 s: the backup declares the master dead after 3 adverts plus skew (about 3.6 s),
# then the takeover (hold, conntrackd commit, release); generous for a loaded 2-core box.
MAX_GAP_SECONDS = 10.0
STALL_SECONDS = 20.0  # a download may wait this long for its next byte (TCP backs off during the gap)


@pytest.fixture
def pair() -> Iterator[HaPairLab]:
    hosts = {key: DEFAULT_HOSTS[key] for key in ("sales1", "sales2")}
    lab = HaPairLab(hosts=hosts)
    with lab:
        policy = lab.write_policy(advert_interval="1s")
        lab.start_node("gw-a", policy)
        lab.wait_for_master("gw-a")
        lab.start_node("gw-b", policy)
        lab.wait_for_backup_hold("gw-b")
        yield lab


def test_killing_the_master_resets_no_connection_and_keeps_the_calls_class(pair: HaPairLab) -> None:
    lab = pair
    downloads = LongDownloads(lab, "sales1", [("203.0.113.60", "news.lab.example")] * 3, DOWNLOAD_SECONDS,
                              bytes_per_second=200_000, stall_seconds=STALL_SECONDS)
    probe = UdpProbe(lab, "sales2", DOWNLOAD_SECONDS)
    time.sleep(FAILOVER_AT_SECONDS)
    call = ("-p", "udp", "--dport", str(CALL_PORT))
    marks_before = lab.conntrack_marks("gw-a", *call)
    assert marks_before and all(mark for mark in marks_before.values()), marks_before  # decided, with a class
    synced_on_backup = lab.conntrackd("gw-b", "-e")  # the external cache: states synced from the master
    assert f"dport={CALL_PORT}" in synced_on_backup, synced_on_backup[-2000:]

    assert lab.holds_virtual_address("gw-a") and not lab.holds_virtual_address("gw-b")
    lab.kill_node("gw-a")
    lab.wait_for_master("gw-b")

    flows = downloads.results()
    gap = probe.result()
    assert [flow.outcome for flow in flows] == ["completed"] * 3, flows
    assert gap.received > 0 and gap.last_echo is not None
    assert 0 < gap.longest_gap <= MAX_GAP_SECONDS, gap
    print(f"failover gap {gap.longest_gap:.2f}s, {gap.sent - gap.received} of {gap.sent} datagrams lost")
    assert lab.conntrack_marks("gw-b", *call) == marks_before  # the call kept its verdict and class
