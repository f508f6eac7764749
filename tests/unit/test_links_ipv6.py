"""IPv6 on several links: `gateway6`, per-link IPv6 routing, and IPv6 connections kept to links that route it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd.compile.links import choice_chains, choice_script
from gatewayd.compile.plan import compile_plan
from gatewayd.policy import PolicyError
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import Policy

CATALOG = str(Path(__file__).parent / "plan" / "catalog.yaml")
HEAD = "version: 1\ninterfaces: { lan: lan0 }\nlinks:\n"
CLASSES = "classes:\n  default: { priority: 3, guaranteed: 10%, limit: 100% }\n"
# a and b route IPv6, c (a second ISP without IPv6) does not.
THREE_LINKS = (
    "  a: { interface: wan1, gateway: 198.51.100.2, gateway6: 'fe80::1', upload: 20mbit, download: 100mbit,"
    " weight: 3 }\n"
    "  b: { interface: wan2, gateway: 198.51.100.18, gateway6: '2001:db8:ff02::1', upload: 10mbit,"
    " download: 50mbit }\n"
    "  c: { interface: wan3, gateway: 198.51.100.34, upload: 10mbit, download: 50mbit, weight: 2 }\n"
)


def policy_of(links: str = THREE_LINKS, pins: str = "") -> Policy:
    return load_policy_text(HEAD + links + CLASSES + (f"link_pins:\n{pins}" if pins else ""), "links.yaml", CATALOG)


def issues_of(links: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        policy_of(links)
    return [str(issue) for issue in caught.value.issues]


def test_gateway6_is_the_links_ipv6_next_hop_and_may_be_link_local() -> None:
    a, b, c = policy_of().links
    assert (str(a.gateway6), str(b.gateway6), c.gateway6) == ("fe80::1", "2001:db8:ff02::1", None)
    assert (a.carries_ipv6, b.carries_ipv6, c.carries_ipv6) == (True, True, False)


@pytest.mark.parametrize(("link", "expected"), [
    ("  a: { interface: wan1, gateway6: 198.51.100.2, upload: 1mbit, download: 1mbit }\n",
     "links.yaml:4:35: gateway6 '198.51.100.2' is an IPv4 address: put the IPv4 next hop in 'gateway'"),
    ("  a: { interface: wan1, gateway: '2001:db8:ff::2', upload: 1mbit, download: 1mbit }\n",
     "links.yaml:4:34: gateway '2001:db8:ff::2' is an IPv6 address: put the IPv6 next hop in 'gateway6'"),
    ("  a: { interface: wan1, gateway6: router, upload: 1mbit, download: 1mbit }\n",
     "links.yaml:4:35: gateway6 'router' is not an IPv6 address (the IPv6 next hop on the link)"),
    ("  a: { interface: wan1, gateway6: 'ff02::2', upload: 1mbit, download: 1mbit }\n",
     "links.yaml:4:35: gateway6 'ff02::2' cannot be a next hop (multicast or unspecified)"),
    ("  a: { interface: wan1, upload: 1mbit, download: 1mbit, probe: { icmp: ['2001:db8:100::53'] } }\n",
     "links.yaml:4:57: 'probe' of link 'a' has IPv6 target 2001:db8:100::53 but the link has no 'gateway6' "
     "(give the link's IPv6 next hop, or probe IPv4 targets only)"),
])
def test_a_wrong_next_hop_is_reported_at_its_position(link: str, expected: str) -> None:
    assert issues_of(link) == [expected]


def test_ipv6_probe_targets_are_fine_on_a_link_with_gateway6() -> None:
    link = ("  a: { interface: wan1, gateway6: 'fe80::1', upload: 1mbit, download: 1mbit,"
            " probe: { icmp: ['2001:db8:100::53'], tcp: ['[2001:db8:100::53]:53'] } }\n")
    (a,) = policy_of(link).links
    assert a.probe is not None and [str(t) for t in a.probe.icmp] == ["2001:db8:100::53"]


def test_links_with_gateway6_get_an_ipv6_rule_and_default_route_in_their_own_table() -> None:
    routes = compile_plan(policy_of()).link_routes
    assert [(r.link, r.version, r.table, r.priority, r.mark, str(r.gateway)) for r in routes] == [
        ("a", 4, 7301, 7301, 0x2000_0000, "198.51.100.2"),
        ("a", 6, 7301, 7301, 0x2000_0000, "fe80::1"),
        ("b", 4, 7302, 7302, 0x4000_0000, "198.51.100.18"),
        ("b", 6, 7302, 7302, 0x4000_0000, "2001:db8:ff02::1"),
        ("c", 4, 7303, 7303, 0x6000_0000, "198.51.100.34"),
    ]
    assert routes[1].render() == ("ip -6 rule add fwmark 0x20000000/0xe0000000 table 7301 priority 7301\n"
                                  "ip -6 route replace default via fe80::1 dev wan1 table 7301")


def test_ipv6_connections_are_balanced_over_the_links_with_gateway6_only() -> None:
    table = compile_plan(policy_of()).ruleset.table
    choose = [rule.statement for rule in table.chain("link_choose").rules]
    assert choose[-2:] == ["meta nfproto ipv6 goto link_balance_v6", "goto link_balance"]
    (balance6,) = table.chain("link_balance_v6").rules
    assert balance6.statement == "numgen random mod 4 vmap { 0-2 : goto set_link_1, 3 : goto set_link_2 }"
    (balance,) = table.chain("link_balance").rules
    assert balance.statement.startswith("numgen random mod 6 ")  # IPv4 still over all three


def test_failover_rewrites_the_ipv6_balance_too() -> None:
    policy = policy_of()
    numbers = compile_plan(policy).numbering.links.numbers
    script = choice_script(policy, numbers, frozenset({"b", "c"}))
    assert ("flush chain inet gatewayd link_balance_v6\n"
            'add rule inet gatewayd link_balance_v6 goto set_link_2 comment "b"\n') in script
    # No IPv6 link up (c is, but has no IPv6): the IPv6 weights still decide, as for IPv4 with none up.
    only_c = {chain.name: chain for chain in choice_chains(policy, numbers, frozenset({"c"}))}
    assert only_c["link_balance_v6"].rules[0].statement.startswith("numgen random mod 4 ")
    assert only_c["link_balance"].rules[0].statement == "goto set_link_3"


def test_a_pins_ipv6_connections_skip_its_links_without_gateway6() -> None:
    policy = policy_of(pins="  - { name: cheap-first, destinations: ['0.0.0.0/0', '::/0'], links: [c, b] }\n"
                            "  - { name: only-c, destinations: ['::/0'], links: c }\n"
                            "  - { name: b-first, destinations: ['::/0'], links: [b, c] }\n")
    numbers = compile_plan(policy).numbering.links.numbers
    chains = {chain.name: [r.statement for r in chain.rules] for chain in choice_chains(policy, numbers,
                                                                                          frozenset("abc"))}
    assert chains["link_pin_1"] == ["meta nfproto ipv6 goto set_link_2", "goto set_link_3"]
    assert chains["link_pin_2"] == ["meta nfproto ipv6 goto link_balance_v6", "goto set_link_3"]
    assert chains["link_pin_3"] == ["goto set_link_2"]  # the first up link routes IPv6 already
    after_b_fails = {chain.name: [r.statement for r in chain.rules]
                     for chain in choice_chains(policy, numbers, frozenset("ac"))}
    assert after_b_fails["link_pin_3"] == ["meta nfproto ipv6 goto link_balance_v6", "goto set_link_3"]


def test_without_any_gateway6_ipv6_gets_no_link_and_follows_the_main_table() -> None:
    links = "".join(line for line in THREE_LINKS.splitlines(keepends=True) if line.startswith("  c:"))
    plan = compile_plan(policy_of(links, pins="  - { name: v6, destinations: ['::/0'], links: c }\n"))
    choose = [rule.statement for rule in plan.ruleset.table.chain("link_choose").rules]
    assert choose[0] == "meta nfproto ipv6 return"  # before the pins: an IPv6 connection is never marked
    assert "link_balance_v6" not in plan.ruleset.table.render()
    assert [route.version for route in plan.link_routes] == [4]
