"""Several WAN links: the policy section, the bits in the ct mark, and the chains that choose a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd.compile import marks
from gatewayd.compile.links import choice_chains, choice_script
from gatewayd.compile.plan import compile_plan
from gatewayd.policy import PolicyError
from gatewayd.policy.links import MAX_LINKS
from gatewayd.policy.loader import load_policy, load_policy_text

PLAN_DIR = Path(__file__).parent / "plan"
CATALOG = str(PLAN_DIR / "catalog.yaml")
ONE_WAN = """version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
classes:
  default: { priority: 3, guaranteed: 10%, limit: 100% }
"""
TWO_LINKS = """version: 1
interfaces: { lan: lan0 }
links:
  a: { interface: wan1, gateway: 198.51.100.2, upload: 20mbit, download: 100mbit, weight: 3 }
  b: { interface: wan2, gateway: 198.51.100.18, upload: 10mbit, download: 50mbit }
classes:
  default: { priority: 3, guaranteed: 10%, limit: 100% }
"""


def links_policy(pins: str = "", extra: str = ""):  # type: ignore[no-untyped-def]
    return load_policy_text(TWO_LINKS + extra + (f"link_pins:\n{pins}" if pins else ""), "links.yaml", CATALOG)


def test_link_bits_are_gatewayds_own_and_clear_of_the_other_fields() -> None:
    assert marks.LINK_MASK & (marks.APP_MASK | marks.GROUP_MASK | marks.BLOCK_BIT | marks.CLASS_MASK) == 0
    assert marks.LINK_MASK & marks.OTHERS_MASK == 0
    assert marks.GATEWAYD_MASK == 0xFFFFFF00  # the low byte still belongs to other tools
    assert MAX_LINKS == marks.MAX_LINK_NUMBER == 7
    assert marks.link_number_of(marks.link_bits(5) | marks.app_bits(marks.MAX_APP_NUMBER)) == 5
    with pytest.raises(ValueError):
        marks.link_bits(8)


def test_a_one_wan_policy_is_one_implicit_link_and_gets_no_link_machinery() -> None:
    policy = load_policy_text(ONE_WAN, "one.yaml", CATALOG)
    assert not policy.multi_link
    (link,) = policy.wan_links()
    assert (link.name, link.interface, link.implicit) == ("wan", "wan0", True)
    plan = compile_plan(policy)
    assert "link_" not in plan.ruleset.table.render()
    assert plan.link_routes == ()


def test_links_take_the_wan_role_in_interfaces() -> None:
    policy = links_policy()
    assert policy.interfaces.wan == "wan1"  # the first link stands for "the WAN" where one is meant
    assert policy.interfaces.upload_bps == 10_000_000  # rates are checked against the smallest link
    assert policy.interfaces.download_bps == 150_000_000  # LAN egress carries both links' downloads


def test_each_link_gets_a_routing_table_for_its_mark() -> None:
    routes = compile_plan(links_policy()).link_routes
    assert [(r.link, r.mark, r.mask, r.table, r.interface, str(r.gateway)) for r in routes] == [
        ("a", 0x2000_0000, 0xE000_0000, 7301, "wan1", "198.51.100.2"),
        ("b", 0x4000_0000, 0xE000_0000, 7302, "wan2", "198.51.100.18"),
    ]


def test_balance_slots_follow_the_weights_of_the_up_links() -> None:
    policy = links_policy()
    numbers = compile_plan(policy).numbering.links.numbers
    balance = choice_chains(policy, numbers, frozenset({"a", "b"}))[0]
    assert balance.rules[0].statement == "numgen random mod 4 vmap { 0-2 : goto set_link_1, 3 : goto set_link_2 }"
    only_b = choice_chains(policy, numbers, frozenset({"b"}))[0]
    assert only_b.rules[0].statement == "goto set_link_2"
    # No link up: the weights still decide, so the first link back works at once.
    assert choice_chains(policy, numbers, frozenset())[0].rules == balance.rules


def test_failover_rewrites_only_the_choice_chains_in_one_script() -> None:
    policy = links_policy(pins="  - { name: video, categories: [video], links: [a, b] }\n")
    script = choice_script(policy, compile_plan(policy).numbering.links.numbers, frozenset({"b"}))
    assert script.splitlines() == [
        "flush chain inet gatewayd link_balance",
        'add rule inet gatewayd link_balance goto set_link_2 comment "b"',
        "flush chain inet gatewayd link_pin_1",
        'add rule inet gatewayd link_pin_1 goto set_link_2 comment "b"',
    ]
    table = compile_plan(policy).ruleset.table
    for name in ("link_balance", "link_pin_1"):
        assert table.chain(name)  # the chains the script flushes exist in the table


def test_app_pins_decide_the_app_on_the_first_packet_in_prerouting() -> None:
    policy = links_policy(pins="  - { name: erp, apps: [erp], links: b }\n",
                          extra="applications:\n"
                                "  erp: { name: ERP, category: erp-crm-oa, domains: [erp.example.com] }\n")
    plan = compile_plan(policy)
    choose = [rule.statement for rule in plan.ruleset.table.chain("link_choose").rules]
    erp = marks.app_bits(plan.numbering.apps.numbers["erp"])
    assert choose.pop(0) == "meta nfproto ipv6 return"  # no link has gateway6 (test_links_ipv6.py)
    assert choose[0].endswith("jump assign_group")
    assert choose[1].endswith("jump link_app_lookup")
    assert choose[2] == f"ct mark & 0x1ff00000 {{ 0x{erp:08x} }} goto link_pin_1"
    lookups = [rule.statement for rule in plan.ruleset.table.chain("link_app_lookup").rules]
    assert "ct direction original ip daddr vmap @learned_v4" in lookups  # DNS-learned addresses


def test_a_pin_without_app_criteria_does_no_app_lookup() -> None:
    plan = compile_plan(links_policy(pins="  - { name: isp, destinations: [203.0.113.0/25], links: b }\n"))
    choose = [rule.statement for rule in plan.ruleset.table.chain("link_choose").rules]
    assert choose == ["meta nfproto ipv6 return", "ip daddr @link_pin_1_dst_v4 goto link_pin_1", "goto link_balance"]


def test_destination_lists_come_from_a_file_beside_the_policy(tmp_path: Path) -> None:
    (tmp_path / "isp").mkdir()
    (tmp_path / "isp" / "telecom.txt").write_text("# China Telecom\n203.0.113.128/25\n\n2001:db8:200::/48  # v6\n")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(TWO_LINKS + "link_pins:\n  - { name: telecom, destinations: isp/telecom.txt, links: a }\n")
    (pin,) = load_policy(str(policy_file), CATALOG).link_pins
    assert [str(n) for n in pin.destinations] == ["203.0.113.128/25", "2001:db8:200::/48"]


def test_a_bad_line_in_a_destination_file_is_reported_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "telecom.txt").write_text("203.0.113.128/25\n  203.0.113.300/32\n")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(TWO_LINKS + "link_pins:\n  - { name: telecom, destinations: telecom.txt, links: a }\n"
                           "  - { name: gone, destinations: [missing.txt], links: a }\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(policy_file), CATALOG)
    issues = [str(issue) for issue in caught.value.issues]
    assert issues[0].startswith(f"{tmp_path / 'telecom.txt'}:2:3: ")
    assert issues[1].startswith(f"{policy_file}:10:34: cannot read network list: no such file")


def test_each_link_has_its_own_upload_tree_at_its_rate_with_the_same_classes() -> None:
    trees = compile_plan(links_policy()).tc_trees
    uploads = [(t.interface, t.link_bps, [c.name for c in t.classes]) for t in trees if t.direction == "upload"]
    classes = ["link", "control packets", "default"]
    assert uploads == [("wan1", 20_000_000, classes), ("wan2", 10_000_000, classes)]
    (download,) = [t for t in trees if t.direction == "download"]
    assert (download.interface, download.link_bps) == ("lan0", 150_000_000)


def test_class_rates_must_fit_the_smallest_link() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(TWO_LINKS.replace("guaranteed: 10%", "guaranteed: 15mbit"), "links.yaml", CATALOG)
    assert "add up to 15mbit on the upload link, more than its 10mbit" in str(caught.value)


def test_link_numbers_follow_file_order_and_survive_a_reordering_reload() -> None:
    first = compile_plan(links_policy())
    assert first.numbering.links.numbers == {"a": 1, "b": 2}
    swapped = TWO_LINKS.replace("  a: {", "  x: {").replace("  b: {", "  a: {").replace("  x: {", "  b: {")
    again = compile_plan(load_policy_text(swapped, "links.yaml", CATALOG), first)
    assert [link.name for link in again.policy.links] == ["b", "a"]
    # Open connections carry their link's number: a reload must not hand it to another line.
    assert again.numbering.links.numbers == {"a": 1, "b": 2}
    assert [(r.link, r.table) for r in again.link_routes] == [("b", 7302), ("a", 7301)]


TUNNEL = """tunnels:
  branch: { interface: wg0, networks: [203.0.113.192/26], over: b, share: 40%, port: 51820, class: default }
"""


def test_a_tunnel_is_shaped_on_its_device_at_its_share_of_its_link() -> None:
    plan = compile_plan(links_policy(extra=TUNNEL))
    (tree,) = [t for t in plan.tc_trees if t.interface == "wg0"]
    assert (tree.direction, tree.link_bps) == ("upload", 4_000_000)  # 40% of link b's 10 Mbit/s
    assert [c.name for c in tree.classes] == ["link", "control packets", "default"]


def test_a_tunnels_inner_flows_are_office_flows_and_its_outer_flow_gets_its_class_on_its_link() -> None:
    plan = compile_plan(links_policy(extra=TUNNEL))
    table = plan.ruleset.table
    assert 'iifname { "lan0", "wg0" } jump assign_group' in table.chain("classify").rules[0].statement
    minor = plan.numbering.tc_minor("default")
    assert [r.statement for r in table.chain("tunnel_outer").rules] == [
        f'oifname "wan2" udp sport 51820 meta priority set 1:{minor:x}',
        f'oifname "wan2" udp dport 51820 meta priority set 1:{minor:x}',
    ]
    (route,) = table.chain("tunnel_route").rules  # several links: the outer flow leaves by link b
    assert route.statement == "udp sport 51820 meta mark set meta mark & 0x1fffffff | 0x40000000"


def test_with_one_wan_a_tunnel_rides_it_without_naming_it() -> None:
    policy = load_policy_text(ONE_WAN + TUNNEL.replace(" over: b,", ""), "one.yaml", CATALOG)
    (tunnel,) = policy.tunnels
    assert tunnel.over == "wan"
    plan = compile_plan(policy)
    assert [t.link_bps for t in plan.tc_trees if t.interface == "wg0"] == [8_000_000]
    names = [chain.name for chain in plan.ruleset.table.chains]
    assert "tunnel_outer" in names and "tunnel_route" not in names


def test_the_two_lines_example_policy_loads_and_compiles() -> None:
    policy = load_policy(str(Path(__file__).resolve().parents[2] / "policies" / "two-lines.yaml"))
    assert [link.name for link in policy.links] == ["fibre", "telecom"]
    assert [pin.name for pin in policy.link_pins] == ["erp-on-fibre", "video-on-telecom", "telecom-networks"]
    plan = compile_plan(policy)
    assert {t.interface for t in plan.tc_trees} == {"wan1", "wan2", "wg0", "lan0"}
