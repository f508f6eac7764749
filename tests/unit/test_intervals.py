"""Overlapping networks in a policy: every interval set and map gets disjoint elements (nft refuses
overlaps, and with them the whole table), and `check` finds overlaps without nft or root."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path

import pytest

from gatewayd.compile import guard, links
from gatewayd.compile.checked import compile_or_report
from gatewayd.compile.intervals import (
    AddressPort,
    disjoint_address_ports,
    disjoint_networks,
    overlapping_set_elements,
)
from gatewayd.compile.nftables_model import NftSet
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.policy.fields import parse_network
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import IPNetwork, Policy

PLAN = Path(__file__).parent / "plan"


def net(text: str) -> IPNetwork:
    return parse_network(text)


def overlaps_policy() -> Policy:
    return load_policy_text((PLAN / "overlaps.yaml").read_text(), "overlaps.yaml",
                            catalog_path=str(PLAN / "catalog.yaml"))


def interval_sets(plan: Plan) -> list[NftSet]:
    tables = (plan.ruleset.table, *plan.guard.tables)
    return [s for table in tables for s in table.sets if "interval" in s.flags]


def elements(plan: Plan, name: str) -> tuple[str, ...]:
    (found,) = [s for s in interval_sets(plan) if s.name == name]
    return found.elements


def test_every_interval_set_of_a_policy_full_of_overlaps_is_disjoint() -> None:
    plan = compile_plan(overlaps_policy())
    sets = interval_sets(plan)
    assert {"group_2_v4", "group_2_v6", "group_3_v4", "app_addresses_v4", "app_address_ports_v4",
            "app_address_ports_v6", "link_pin_1_dst_v4", "link_pin_1_dst_v6", "link_pin_2_src_v4", "scan_exempt_v4",
            "scan_exempt_v6"} <= {s.name for s in sets}
    assert {s.name: overlapping_set_elements(s) for s in sets if overlapping_set_elements(s)} == {}


def test_a_set_means_the_union_of_its_networks() -> None:
    plan = compile_plan(overlaps_policy())
    assert elements(plan, "link_pin_1_dst_v4") == ("203.0.113.128/25",)
    assert elements(plan, "link_pin_1_dst_v6") == ("2001:db8:200::/48",)
    assert elements(plan, "scan_exempt_v4") == ("192.0.2.64/27",)
    assert elements(plan, "scan_exempt_v6") == ("2001:db8:1::/64",)


def test_address_maps_give_each_address_to_its_most_specific_network_and_merge_an_apps_own() -> None:
    plan = compile_plan(overlaps_policy())
    wiki, mail = (f"goto set_app_{plan.numbering.apps.numbers[app]}" for app in ("wiki", "mail"))
    ours = tuple(e for e in elements(plan, "app_addresses_v4") if e.startswith("198.51.100."))
    assert ours == (f"198.51.100.0/26 : {wiki}", f"198.51.100.64/26 : {mail}",
                    f"198.51.100.128/25 : {wiki}")  # wiki's .7 is in its own /24: no element of its own


def test_address_port_entries_are_decided_as_the_classifier_decides_them() -> None:
    erp, crm = "goto erp", "goto crm"
    entries = [AddressPort(net("203.0.113.0/24"), "tcp", 443, 443, erp),
               AddressPort(net("203.0.113.0/24"), "tcp", 400, 500, erp),
               AddressPort(net("203.0.113.20/32"), "tcp", 443, 443, erp),
               AddressPort(net("203.0.113.16/30"), "tcp", 443, 443, crm)]
    result = disjoint_address_ports(entries)

    def owner(address: str, port: int) -> list[str]:
        return [e.target for e in result if ipaddress.ip_address(address) in e.network and e.first <= port <= e.last]

    assert owner("203.0.113.17", 443) == [crm]  # the more specific network, on its port
    assert owner("203.0.113.17", 444) == [erp]  # a port crm does not list stays erp's
    assert owner("203.0.113.20", 443) == [erp]  # erp's own /32 is more specific still
    assert owner("203.0.113.200", 450) == [erp]
    assert owner("203.0.113.200", 501) == []
    # an app's own overlaps leave one element per block, its port ranges joined
    assert AddressPort(net("203.0.113.128/25"), "tcp", 400, 500, erp) in result
    key = NftSet("m", "ipv4_addr . inet_proto . inet_service", "verdict", ("interval",),
                 elements=tuple(f"{e.network} . {e.protocol} . {e.first}-{e.last} : {e.target}" for e in result))
    assert overlapping_set_elements(key) == []


def test_the_same_network_in_two_apps_goes_to_the_first_as_in_the_classifier() -> None:
    same = [AddressPort(net("203.0.113.0/24"), "udp", 3478, 3478, "first"),
            AddressPort(net("203.0.113.0/24"), "udp", 3478, 3479, "second")]
    assert disjoint_address_ports(same) == [AddressPort(net("203.0.113.0/24"), "udp", 3478, 3478, "first"),
                                            AddressPort(net("203.0.113.0/24"), "udp", 3479, 3479, "second")]
    assert disjoint_networks([(net("198.51.100.0/24"), "a"), (net("198.51.100.0/24"), "b")]) == [
        (net("198.51.100.0/24"), "a")]


@pytest.mark.parametrize(("flags", "elements", "expected"), [
    (("interval",), ("192.0.2.0/24", "192.0.2.7/32"), [("192.0.2.0/24", "192.0.2.7/32")]),
    (("interval",), ("192.0.2.0/25", "192.0.2.128/25", "2001:db8::/32"), []),
    (("interval",), ("192.0.2.0/24 . tcp . 400-500 : accept", "192.0.2.9/32 . tcp . 443 : drop"),
     [("192.0.2.0/24 . tcp . 400-500 : accept", "192.0.2.9/32 . tcp . 443 : drop")]),
    (("interval",), ("192.0.2.0/24 . tcp . 400-500 : accept", "192.0.2.9/32 . udp . 443 : drop",
                     "192.0.2.9/32 . tcp . 501 : drop"), []),
    (("interval",), ("tcp . 80-90 : accept", "tcp . 85 : drop"), [("tcp . 80-90 : accept", "tcp . 85 : drop")]),
    ((), ("192.0.2.0/24", "192.0.2.7/32"), []),  # not an interval set: nothing to check
])
def test_overlapping_elements_are_found_in_sets_maps_and_concatenations(
        flags: tuple[str, ...], elements: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    key_type = "inet_proto . inet_service" if elements[0].startswith("tcp") else "ipv4_addr"
    assert overlapping_set_elements(NftSet("s", key_type, flags=flags, elements=elements)) == expected


def test_check_reports_what_nft_would_refuse_at_the_interfaces_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is the last line of defence: with a builder that forgets to make its set disjoint
    (as every builder did before), `check` fails with one FILE:LINE:COL line naming both elements."""
    policy = overlaps_policy()
    assert compile_or_report(policy, io.StringIO()) is not None
    monkeypatch.setattr(links, "collapsed", lambda networks: [str(n) for n in networks])
    monkeypatch.setattr(guard, "collapsed", lambda networks: [str(n) for n in networks])
    errors = io.StringIO()
    assert compile_or_report(policy, errors) is None
    lines = errors.getvalue().splitlines()
    assert any(line.startswith("overlaps.yaml:4:") and "link_pin_1_dst_v4: '203.0.113.128/25' overlaps "
               "'203.0.113.130/32'" in line for line in lines), lines
    assert any("scan_exempt_v4" in line for line in lines), lines
