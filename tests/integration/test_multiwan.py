"""Two Internet lines (two ISP namespaces), the real daemon, real connections.

The server tells each connection the address it came from; behind per-link NAT
that is the line it took (gatewayd/lab/link_echo.py). Tests run in file order
on one lab; the failover test comes last and puts the line back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from gatewayd.compile import marks
from gatewayd.lab.gateway import GatewayDaemon, metric_value, promtool_problems, running_gatewayd
from gatewayd.lab.multiwan import (
    APP_ECHO_ADDRESS,
    ECHO_ADDRESS,
    ECHO_PORT,
    LINKS,
    LISTED_ECHO_ADDRESS,
    PINNED_ECHO_ADDRESS,
    MultiWanLab,
)
from gatewayd.lab.services import IPERF_SERVER_V4
from gatewayd.lab.topology import GATEWAY
from gatewayd.lab.traffic import dns_query, iperf3

ONE, TWO = (link.gateway_address for link in LINKS)
BALANCE_CONNECTIONS = 2000
FAILOVER_LIMIT_SECONDS = 3.0



@pytest.fixture(scope="module")
def office() -> Iterator[tuple[MultiWanLab, GatewayDaemon]]:
    with MultiWanLab() as lab:
        lab.start_echo()
        with running_gatewayd(lab, lab.write_policy()) as daemon:
            yield lab, daemon


def test_new_connections_are_balanced_by_weight(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    counts = lab.count_links("sales1", BALANCE_CONNECTIONS, timeout=180)
    assert set(counts) == {ONE, TWO}, counts  # nothing failed, nothing left by another way
    for address, weight_share in ((ONE, 2 / 3), (TWO, 1 / 3)):
        share = counts[address] / BALANCE_CONNECTIONS
        assert abs(share - weight_share) <= 0.1 * weight_share, (address, share, counts)


def test_a_connection_stays_on_its_link_while_the_choice_changes(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, daemon = office
    held, result, on_wire = lab.hold_across_reweighting(daemon, "sales2", ECHO_ADDRESS)
    assert set(held.opened) == {ONE, TWO}, held.opened
    assert result["dead"] == {}, result
    assert on_wire == sorted(1 if peer == ONE else 2 for peer in held.opened)


def test_pinned_by_destination_list_file(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    assert lab.count_links("sales1", 30, address=LISTED_ECHO_ADDRESS) == {TWO: 30}  # in isp-two.txt
    assert lab.count_links("sales1", 20, address=PINNED_ECHO_ADDRESS) == {ONE: 20}  # inline, first of [one, two]


def test_pinned_by_group(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    assert lab.count_links("finance1", 30) == {TWO: 30}
    assert set(lab.count_links("sales1", 30)) == {ONE, TWO}  # the others are still balanced


def test_pinned_by_app_learned_from_dns_on_the_first_packet(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    answer = dns_query(lab, "sales1", "echo.lab.example")
    assert answer.status == "NOERROR" and APP_ECHO_ADDRESS in str(answer.records), answer
    assert lab.count_links("sales1", 30, address=APP_ECHO_ADDRESS) == {TWO: 30}


def test_each_line_is_shaped_at_its_own_upload_rate(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    roots = {}
    for interface in ("wan1", "wan2"):
        out = lab.run(GATEWAY, ["tc", "class", "show", "dev", interface, "classid", "1:1"]).stdout
        roots[interface] = re.search(r"rate (\S+)", out).group(1)  # type: ignore[union-attr]
    assert roots == {"wan1": "100Mbit", "wan2": "20Mbit"}
    upload = iperf3(lab, "finance1", IPERF_SERVER_V4, seconds=2)  # finance is pinned to line two
    assert 0.7 * 20e6 <= upload <= 1.05 * 20e6, upload


def test_per_link_metrics_and_status(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    _, daemon = office
    time.sleep(1.0)  # a few probe rounds
    exposition = daemon.metrics()
    for link in ("one", "two"):
        assert metric_value(exposition, "gatewayd_link_up", link=link) == 1.0
        assert metric_value(exposition, "gatewayd_link_connections_total", link=link) > 0
        assert metric_value(exposition, "gatewayd_link_bytes_total", link=link, direction="upload") > 0
        assert metric_value(exposition, "gatewayd_link_probe_loss_ratio", link=link) == 0.0
        assert 0 < metric_value(exposition, "gatewayd_link_probe_rtt_seconds", link=link) < 0.1
        assert metric_value(exposition, "gatewayd_link_failovers_total", link=link) == 0.0
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run ./scripts/setup (Debian package prometheus)"
    assert promtool_problems(exposition, promtool) == []
    status = daemon.control("status").stdout
    assert re.search(r"links\s+one\s+wan1\s+weight 2\s+up\b", status), status
    assert re.search(r"\btwo\s+wan2\s+weight 1\s+up\b", status), status


def test_failover_within_three_seconds_ends_only_the_failed_links_connections(
        office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, daemon = office
    held = lab.hold_connections("sales2", 16, seconds=8)
    assert set(held.opened) == {ONE, TWO}, held.opened
    log_offset = daemon.log_size()
    watch = lab.wait_for_peer("sales1", TWO, seconds=10)  # the pinned address: one, then two on failover
    cut_at = time.monotonic()
    lab.cut_upstream("isp1")
    try:
        answered_at = watch.answered_at()
        assert answered_at is not None, "no new connection got through the other line"
        failover = answered_at - cut_at
        print(f"failover: {failover:.2f} s from upstream loss to a new connection over the other line")
        assert failover <= FAILOVER_LIMIT_SECONDS
        daemon.wait_for_log("event=link_down link=one", log_offset)
        result = held.result()
        on_two = {i for i, peer in enumerate(held.opened) if peer == TWO}
        assert set(result["alive"]) == on_two, (result, held.opened)  # the other line's flows untouched
        assert {int(i) for i in result["dead"]} == set(range(len(held.opened))) - on_two
        assert lab.count_links("sales1", 20) == {TWO: 20}
        exposition = daemon.metrics()
        assert metric_value(exposition, "gatewayd_link_up", link="one") == 0.0
        assert metric_value(exposition, "gatewayd_link_failovers_total", link="one") == 1.0
        ended = metric_value(exposition, "gatewayd_link_ended_connections_total", link="one")
        assert ended >= len(held.opened) - len(on_two)
        assert metric_value(exposition, "gatewayd_link_failovers_total", link="two") == 0.0
    finally:
        lab.restore_upstream("isp1")
    # Failback: after `rise` good rounds new connections use line one again.
    daemon.wait_for_log("event=link_up link=one", log_offset, timeout=10)
    assert set(lab.count_links("sales1", 40)) == {ONE, TWO}
    assert lab.count_links("sales1", 5, address=PINNED_ECHO_ADDRESS) == {ONE: 5}
    assert metric_value(daemon.metrics(), "gatewayd_link_failbacks_total", link="one") == 1.0


def test_conntrack_tool_filters_by_mark_and_mask(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    """Failover relies on `conntrack -D --mark VALUE/MASK` touching only matching entries."""
    lab, _ = office
    held = lab.hold_connections("sales2", 20, seconds=2)
    before = lab.links_on_wire()
    assert 1 in before and 2 in before, before
    listed = subprocess.run(["ip", "netns", "exec", lab.ns_name(GATEWAY), "conntrack", "-L", "--mark",
                             f"{marks.link_bits(2):#x}/{marks.LINK_MASK:#x}", "-p", "tcp", "--dport", str(ECHO_PORT),
                             "--state", "ESTABLISHED"], capture_output=True, text=True, timeout=10, check=False)
    held.result()
    assert listed.stdout.count("mark=") == before.count(2)


def test_stop_removes_the_links_routing_and_nat(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    """Last: SIGTERM takes gatewayd's rules, tables and chains away; the main table stays as it was."""
    lab, daemon = office
    assert "lookup 7301" in lab.run(GATEWAY, ["ip", "rule"]).stdout  # installed while running
    assert daemon.stop() == 0
    assert "73" not in "".join(line.split(":")[0] for line in lab.run(GATEWAY, ["ip", "rule"]).stdout.splitlines())
    for table in ("7301", "7302"):
        assert lab.run(GATEWAY, ["ip", "route", "show", "table", table]).stdout == ""
    assert "gatewayd" not in lab.run(GATEWAY, ["nft", "list", "tables"]).stdout
    assert "default via 198.51.100.2 dev wan1" in lab.run(GATEWAY, ["ip", "route"]).stdout
