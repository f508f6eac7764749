"""IPv6 over two Internet lines: the real daemon, real IPv6 connections through both ISPs.

Each ISP gives the office its own IPv6 prefix and gatewayd masquerades per link,
so the echo server sees 2001:db8:ff01::1 or 2001:db8:ff02::1: the line the
connection took. Line one's next hop is link-local (fe80::2); line two's
probes are IPv6 only (TCP and DNS), and only its own IPv6 routing table can
carry them (the main table goes by line one). Tests run in file order on one lab; the
failover test puts the line back, the stop test is last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gatewayd.lab.gateway import GatewayDaemon, metric_value, running_gatewayd
from gatewayd.lab.multiwan import ECHO_ADDRESS_V6, LINKS, MultiWanLab
from gatewayd.lab.topology import GATEWAY

ONE, TWO = (link.gateway_address6 for link in LINKS)
BALANCE_CONNECTIONS = 1200
BALANCE_TOLERANCE = 0.05  # absolute share; about 3.7 standard deviations at 1,200 connections


@pytest.fixture(scope="module")
def office() -> Iterator[tuple[MultiWanLab, GatewayDaemon]]:
    with MultiWanLab() as lab:
        lab.start_echo()
        with running_gatewayd(lab, lab.write_policy()) as daemon:
            yield lab, daemon


def test_each_line_has_an_ipv6_rule_and_default_route_in_its_table(
        office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    rules = lab.run(GATEWAY, ["ip", "-6", "rule"]).stdout
    assert "7301:\tfrom all fwmark 0x20000000/0xe0000000 lookup 7301" in rules, rules
    assert "7302:\tfrom all fwmark 0x40000000/0xe0000000 lookup 7302" in rules, rules
    assert "default via fe80::2 dev wan1" in lab.run(GATEWAY, ["ip", "-6", "route", "show", "table", "7301"]).stdout
    assert "default via 2001:db8:ff02::2 dev wan2" in lab.run(
        GATEWAY, ["ip", "-6", "route", "show", "table", "7302"]).stdout


def test_new_ipv6_connections_are_balanced_by_weight(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, _ = office
    counts = lab.count_links("sales1", BALANCE_CONNECTIONS, address=ECHO_ADDRESS_V6, timeout=180)
    assert set(counts) == {ONE, TWO}, counts  # nothing failed, each line's own IPv6 address
    for address, weight_share in ((ONE, 2 / 3), (TWO, 1 / 3)):
        share = counts[address] / BALANCE_CONNECTIONS
        assert abs(share - weight_share) <= BALANCE_TOLERANCE, (address, share, counts)


def test_an_ipv6_connection_stays_on_its_link_while_the_choice_changes(
        office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, daemon = office
    held, result, on_wire = lab.hold_across_reweighting(daemon, "sales2", ECHO_ADDRESS_V6, family="ipv6")
    assert set(held.opened) == {ONE, TWO}, held.opened
    assert result["dead"] == {}, result
    assert on_wire == sorted(1 if peer == ONE else 2 for peer in held.opened)


def test_line_two_is_probed_over_ipv6_through_its_own_table(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    _, daemon = office
    time.sleep(1.0)  # a few probe rounds
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_link_up", link="two") == 1.0
    assert metric_value(exposition, "gatewayd_link_probe_loss_ratio", link="two") == 0.0
    assert 0 < metric_value(exposition, "gatewayd_link_probe_rtt_seconds", link="two") < 0.1


def test_failover_ends_the_failed_lines_ipv6_connections_and_moves_new_ones(
        office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    lab, daemon = office
    held = lab.hold_connections("sales2", 16, seconds=8, address=ECHO_ADDRESS_V6)
    assert set(held.opened) == {ONE, TWO}, held.opened
    log_offset = daemon.log_size()
    lab.cut_upstream("isp1")
    try:
        daemon.wait_for_log("event=link_down link=one", log_offset, timeout=5)
        result = held.result()
        on_two = {i for i, peer in enumerate(held.opened) if peer == TWO}
        assert set(result["alive"]) == on_two, (result, held.opened)  # the other line's flows untouched
        assert {int(i) for i in result["dead"]} == set(range(len(held.opened))) - on_two
        assert lab.count_links("sales1", 20, address=ECHO_ADDRESS_V6) == {TWO: 20}
        ended = metric_value(daemon.metrics(), "gatewayd_link_ended_connections_total", link="one")
        assert ended >= len(held.opened) - len(on_two)
    finally:
        lab.restore_upstream("isp1")
    # Failback: line one takes new IPv6 connections again.
    daemon.wait_for_log("event=link_up link=one", log_offset, timeout=10)
    assert set(lab.count_links("sales1", 40, address=ECHO_ADDRESS_V6)) == {ONE, TWO}


def test_stop_removes_the_ipv6_rules_and_routes(office: tuple[MultiWanLab, GatewayDaemon]) -> None:
    """Last: SIGTERM takes gatewayd's IPv6 rules and tables away; the main table stays as it was."""
    lab, daemon = office
    assert daemon.stop() == 0
    assert "lookup 73" not in lab.run(GATEWAY, ["ip", "-6", "rule"]).stdout
    for table in ("7301", "7302"):
        assert lab.run(GATEWAY, ["ip", "-6", "route", "show", "table", table]).stdout == ""
    assert "default via fe80::2 dev wan1" in lab.run(GATEWAY, ["ip", "-6", "route"]).stdout
