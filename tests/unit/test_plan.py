"""The plan (nft table, HTB trees, queue rule) compiled from a policy, checked without root."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

import pytest

from gatewayd.compile import marks
from gatewayd.compile.dns_rules import DNS_MAX_PACKETS
from gatewayd.compile.intervals import disjoint_networks
from gatewayd.compile.nftables_model import NftRule
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.compile.rule_dispatch import RULES_BY_APP_MAP, RULES_CHAIN, RULES_FOR_APPS_CHAIN_PREFIX
from gatewayd.compile.schedule import NFT_DAYS, schedule_matches
from gatewayd.explain.rules import schedule_covers
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy, load_policy_text
from gatewayd.policy.model import HourRange, Schedule

HERE = Path(__file__).parent / "plan"
REPO = Path(__file__).resolve().parents[2]
# plan/NAME.yaml renders to plan/NAME.render
GOLDEN_POLICIES = ("small", "connection_caps", "links", "ha_pair", "overlaps")


def small_plan(text: str | None = None, previous: Plan | None = None, name: str = "small") -> Plan:
    text = text if text is not None else (HERE / f"{name}.yaml").read_text()
    policy = load_policy_text(text, f"{name}.yaml", catalog_path=str(HERE / "catalog.yaml"))
    return compile_plan(policy, previous)


def office_plan() -> Plan:
    return compile_plan(load_policy(str(REPO / "policies" / "office.yaml")))


@pytest.mark.parametrize("name", GOLDEN_POLICIES)
def test_render_matches_golden_file(name: str) -> None:
    rendered = small_plan(name=name).render()
    golden = HERE / f"{name}.render"
    if os.environ.get("GATEWAYD_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), "run with GATEWAYD_UPDATE_GOLDEN=1 to accept a deliberate change"


def kernel_rules_for_app(plan: Plan, app_number: int) -> list[NftRule]:
    """The policy rules the kernel runs for a flow of this app, following the rules chain's app map."""
    table = plan.ruleset.table
    rules = list(table.chain(RULES_CHAIN).rules)
    if rules and "vmap @rules_by_app" in rules[0].statement:
        vmap = next(s for s in table.sets if s.name == RULES_BY_APP_MAP)
        targets = dict(e.split(" : goto ") for e in vmap.elements)
        target = targets.get(f"0x{marks.app_bits(app_number):08x}")
        rules = list(table.chain(target).rules) if target else rules[1:]
    return rules


def all_policy_rules(plan: Plan) -> list[NftRule]:
    table = plan.ruleset.table
    chains = [c for c in table.chains if c.name == RULES_CHAIN or c.name.startswith(RULES_FOR_APPS_CHAIN_PREFIX)]
    return list(dict.fromkeys(r for c in chains for r in c.rules))


def app_number(plan: Plan, app_id: str) -> int:
    return plan.numbering.apps.numbers[app_id]


def test_rules_keep_policy_order_and_point_back_at_their_lines() -> None:
    plan = small_plan()
    for app, expected in (("dingtalk", ["favour dingtalk", "night-bulk", "guests", "default"]),
                          ("youku", ["video-at-work", "night-bulk", "guests", "default"])):
        names = [r.comment.split(" (")[0] for r in kernel_rules_for_app(plan, app_number(plan, app))]
        assert list(dict.fromkeys(names)) == expected
    assert kernel_rules_for_app(plan, app_number(plan, "dingtalk"))[0].comment == "favour dingtalk (small.yaml:18:5)"


@pytest.mark.parametrize("name", ["small", "office"])
def test_each_app_runs_exactly_the_rules_that_can_match_it_in_policy_order(name: str) -> None:
    """The kernel's app map must not change which rule decides: for every app (and an undecided
    flow, app 0) the rules it runs are those naming it or no app, in policy order, and none of
    them tests the app again (that test is the per-packet cost the map saves)."""
    plan = office_plan() if name == "office" else small_plan()
    policy = plan.policy
    for number in [0, *sorted(set(plan.numbering.apps.numbers.values()))]:
        wanted = [rule.name for rule in policy.rules
                  if not (rule.apps or rule.categories)
                  or number in {plan.numbering.apps.numbers.get(a) for a in policy.apps_of_rule(rule)}]
        ran = kernel_rules_for_app(plan, number)
        assert list(dict.fromkeys(r.comment.split(" (")[0] for r in ran)) == [*wanted, "default"], number
        assert not any(f"ct mark & 0x{marks.APP_MASK:08x} {{" in r.statement for r in ran)
    assert len(kernel_rules_for_app(plan, marks.APP_UNKNOWN)) < len(all_policy_rules(plan))


def test_decided_flows_past_the_dns_window_skip_the_dns_rules() -> None:
    classify = [r.statement for r in small_plan(name="connection_caps").ruleset.table.chain("classify").rules]
    skip = classify.index(f"ct mark & 0x{marks.APP_MASK:08x} != 0 ct packets > {DNS_MAX_PACKETS} return")
    dns_rules = [i for i, s in enumerate(classify) if "@dns_resolvers_" in s]
    assert dns_rules and skip < min(dns_rules)
    assert all(f"ct packets <= {DNS_MAX_PACKETS}" in classify[i] for i in dns_rules)  # what makes the skip safe
    no_resolvers = [r.statement for r in small_plan().ruleset.table.chain("classify").rules]
    assert not any("@dns_resolvers_" in s or f"ct packets > {DNS_MAX_PACKETS}" in s for s in no_resolvers)


def test_block_rule_resets_tcp_and_drops_the_rest() -> None:
    block = small_plan().ruleset.table.chain("do_block").rules
    statements = [r.statement for r in block]
    assert any("meta l4proto tcp" in s and s.endswith("reject with tcp reset") for s in statements)
    assert any("meta l4proto udp" in s and s.endswith("drop") for s in statements)


def test_except_groups_become_negated_sets_per_family() -> None:
    plan = small_plan()
    rules = [r.statement for r in all_policy_rules(plan) if r.comment.startswith("no-p2p")]
    assert rules[0].startswith("meta nfproto ipv4 ip saddr != @rule_2_except_v4")
    assert rules[1].startswith("meta nfproto ipv6 ")  # managers have no v6 member: v6 flows are not excepted
    except_set = next(s for s in plan.ruleset.table.sets if s.name == "rule_2_except_v4")
    assert except_set.elements == ("192.0.2.10/32",)


def test_mac_members_match_both_families() -> None:
    rules = [r.statement for r in all_policy_rules(small_plan()) if r.comment.startswith("video-at-work")]
    assert any(s.startswith("meta nfproto ipv4 ether saddr @rule_3_groups_mac") for s in rules)
    assert any(s.startswith("meta nfproto ipv6 ether saddr @rule_3_groups_mac") for s in rules)


def test_schedule_compiles_to_kernel_time_matches() -> None:
    rules = [r.statement for r in all_policy_rules(small_plan())]
    work = next(s for s in rules if "rule_3_" in s)
    assert 'meta day { "Monday", "Tuesday", "Wednesday", "Thursday", "Friday" }' in work
    assert 'meta hour "09:00"-"17:59:59"' in work
    night = next(s for s in rules if "rule_4_" in s)
    assert 'meta hour "22:00"-"05:59:59"' in night and "meta day" not in night


def test_range_past_midnight_on_some_days_ends_on_the_next_day() -> None:
    night_shift = Schedule("night-shift", frozenset({0}), (HourRange(22 * 60, 3 * 60 + 30),))
    assert schedule_matches(night_shift) == [
        'meta day { "Monday" } meta hour "22:00"-"23:59:59"',
        'meta day { "Tuesday" } meta hour "00:00"-"03:29:59"',
    ]


def nft_time_matches(fragment: str, when: dt.datetime) -> bool:
    """What the kernel decides for one `meta day`/`meta hour` fragment at a local time.

    nft reads a range whose start is after its end as the complement of end..start, i.e. a range
    that wraps past midnight on the same day.
    """
    days = re.search(r"meta day \{ ([^}]*) \}", fragment)
    if days and NFT_DAYS[when.weekday()] not in re.findall(r'"(\w+)"', days.group(1)):
        return False
    hours = re.search(r'meta hour "([0-9:]+)"-"([0-9:]+)"', fragment)
    if not hours:
        return True
    first, last = (dt.time.fromisoformat(part) for part in hours.groups())
    now = when.time()
    return first <= now <= last if first <= last else (now >= first or now <= last)


@pytest.mark.parametrize("schedule", [
    Schedule("night-shift", frozenset({0}), (HourRange(22 * 60, 3 * 60 + 30),)),
    Schedule("weekend-nights", frozenset({5, 6}), (HourRange(20 * 60, 2 * 60), HourRange(9 * 60, 12 * 60))),
    Schedule("sunday-to-monday", frozenset({6}), (HourRange(23 * 60, 60),)),
    Schedule("late", frozenset({2}), (HourRange(22 * 60, 0),)),
    Schedule("daily-night", frozenset(range(7)), (HourRange(22 * 60, 6 * 60),)),
    Schedule("weekdays", frozenset(range(5)), ()),
], ids=lambda schedule: schedule.name)
def test_kernel_time_matches_and_explain_agree_on_every_minute_of_a_week(schedule: Schedule) -> None:
    fragments = schedule_matches(schedule)
    monday = dt.datetime(2026, 11, 23)
    disagreements = []
    for minute in range(7 * 24 * 60):
        when = monday + dt.timedelta(minutes=minute)
        kernel = any(nft_time_matches(fragment, when) for fragment in fragments)
        if kernel != schedule_covers(schedule, when):
            disagreements.append(f"{when:%a %H:%M}: kernel {kernel}, explain {not kernel}")
    assert not disagreements, disagreements[:5]


def test_app_numbers_survive_a_reload_that_adds_apps() -> None:
    first = small_plan()
    text = (HERE / "small.yaml").read_text().replace(
        "applications:\n", "applications:\n  aaa-new: { name: New, category: web, domains: [new.example] }\n")
    second = small_plan(text, previous=first)
    for app, number in first.numbering.apps.numbers.items():
        assert second.numbering.apps.numbers[app] == number
    assert second.numbering.apps.numbers["aaa-new"] not in first.numbering.apps.numbers.values()


def test_catalog_addresses_are_made_disjoint_most_specific_wins() -> None:
    pairs = [(ipaddress.ip_network("203.0.113.0/24"), "cloudx"), (ipaddress.ip_network("203.0.113.20/32"), "erp")]
    result = disjoint_networks(pairs)
    assert (ipaddress.ip_network("203.0.113.20/32"), "erp") in result
    covered = [n for n, app in result if app == "cloudx"]
    assert sum(n.num_addresses for n in covered) == 255
    assert all(not n.overlaps(ipaddress.ip_network("203.0.113.20/32")) for n in covered)


def test_address_and_port_apps_need_both() -> None:
    sets = {s.name: s for s in small_plan().ruleset.table.sets}
    assert any(e.startswith("203.0.113.20/32 . tcp . 8443 : goto set_app_")
               for e in sets["app_address_ports_v4"].elements)
    assert all("203.0.113.20/32 :" not in e for e in sets["app_addresses_v4"].elements)
    assert any(e.startswith("tcp . 22 : goto") for e in sets["app_ports"].elements)


def test_an_address_with_its_own_ports_binds_only_itself() -> None:
    # The resolver's address names the app on 443 only; the app's `ports` stay port-only evidence.
    text = (HERE / "small.yaml").read_text().replace("applications:\n", (
        "applications:\n  resolver: { name: R, category: dns, ports: [tcp/853],"
        ' addresses: ["198.51.100.53 tcp/443 udp/443", "2001:db8::53 tcp/443"] }\n'))
    plan = small_plan(text)
    number = plan.numbering.apps.numbers["resolver"]
    sets = {s.name: s for s in plan.ruleset.table.sets}
    assert {e for e in sets["app_address_ports_v4"].elements if e.startswith("198.51.100.53/32")} == {
        f"198.51.100.53/32 . tcp . 443 : goto set_app_{number}",
        f"198.51.100.53/32 . udp . 443 : goto set_app_{number}"}
    assert f"2001:db8::53/128 . tcp . 443 : goto set_app_{number}" in sets["app_address_ports_v6"].elements
    assert all("198.51.100.53" not in e for e in sets["app_addresses_v4"].elements)
    assert f"tcp . 853 : goto set_app_{number}" in sets["app_ports"].elements


@pytest.mark.parametrize(("address", "message"), [
    ("198.51.100.53 tcp/70000", "port 'tcp/70000' is not valid"),
    ("198.51.100.53 443", "port '443' is not valid"),
    ("198.51.100.53/24 tcp/443", "has host bits set"),
])
def test_an_address_with_bad_ports_is_reported(address: str, message: str) -> None:
    text = (HERE / "small.yaml").read_text().replace("applications:\n", (
        f'applications:\n  resolver: {{ name: R, category: dns, addresses: ["{address}"] }}\n'))
    with pytest.raises(PolicyError) as raised:
        small_plan(text)
    assert message in str(raised.value)


def test_htb_trees_shape_upload_on_wan_and_download_on_lan() -> None:
    trees = {t.interface: t for t in small_plan().tc_trees}
    assert trees["wan0"].direction == "upload" and trees["wan0"].link_bps == 20_000_000
    assert trees["lan0"].direction == "download" and trees["lan0"].link_bps == 50_000_000
    bulk = next(c for c in trees["lan0"].classes if c.name == "bulk")
    assert (bulk.rate_bps, bulk.ceil_bps, bulk.priority) == (1_000_000, 15_000_000, 7)
    assert trees["lan0"].default_minor == next(c.minor for c in trees["lan0"].classes if c.name == "default")
    for tree in trees.values():
        for htb_class in tree.classes:
            assert 1514 <= htb_class.quantum_bytes <= 200_000  # HTB warns outside this
            assert htb_class.burst_bytes >= 2 * 1514


def test_class_priority_map_matches_tc_minors() -> None:
    plan = small_plan()
    class_map = next(s for s in plan.ruleset.table.sets if s.name == "class_priority")
    for name, index in plan.numbering.classes.items():
        expected = f"0x{marks.class_bits(index):08x} : 1:{plan.numbering.tc_minor(name):x}"
        assert expected in class_map.elements


def test_queue_rule_bypass_follows_fail_mode() -> None:
    open_plan = small_plan()
    assert open_plan.queue.bypass and "--queue-bypass" in open_plan.queue.iptables_restore()
    closed_text = (HERE / "small.yaml").read_text().replace(
        "version: 1\n", "version: 1\nclassifier: { fail_mode: closed }\n")
    closed = small_plan(closed_text)
    assert not closed.queue.bypass and "--queue-bypass" not in closed.queue.iptables_restore()


def test_verdict_mark_keeps_other_tools_bits() -> None:
    mark = marks.verdict_packet_mark(0xABCD_EF42, 5)
    assert mark & marks.OTHERS_MASK == 0x42
    assert marks.app_number_of(mark) == 5
    assert marks.GATEWAYD_MASK & marks.OTHERS_MASK == 0


def test_number_allocation_reuses_freed_numbers_only_for_new_names() -> None:
    first = marks.NumberAllocation.allocate(["a", "b", "c"], 2, 10)
    second = marks.NumberAllocation.allocate(["a", "c", "d"], 2, 10, first)
    assert second.numbers["a"] == first.numbers["a"] and second.numbers["c"] == first.numbers["c"]
    assert second.numbers["d"] == first.numbers["b"]  # b is gone, its number is free again
    with pytest.raises(ValueError):
        marks.NumberAllocation.allocate([str(i) for i in range(20)], 2, 10)


def test_office_policy_compiles() -> None:
    plan = office_plan()
    assert not plan.ruleset.warnings
    assert "table inet gatewayd {" in plan.render()
    assert isinstance(plan.numbering, Numbering)


def test_port_ranges_are_made_disjoint_narrow_first_then_catalog_order() -> None:
    from gatewayd.compile.intervals import disjoint_port_ranges

    entries = [("tcp", 3000, 4000, "wide"), ("tcp", 3389, 3389, "rdp"), ("tcp", 3389, 3389, "later"),
               ("udp", 3389, 3389, "udp-app")]
    assert disjoint_port_ranges(entries) == [
        ("tcp", 3000, 3388, "wide"), ("tcp", 3389, 3389, "rdp"), ("tcp", 3390, 4000, "wide"),
        ("udp", 3389, 3389, "udp-app")]


def test_rate_bucket_burst_is_sized_on_the_rate_not_the_ceiling() -> None:
    from gatewayd.compile.tc_tree import HtbClass, burst_for

    token = HtbClass("bulk", 0x14, 1, rate_bps=8_000, ceil_bps=1_000_000_000, priority=7, quantum_bytes=1514,
                     burst_bytes=burst_for(1_000_000_000), leaf=True)
    assert token.rate_burst_bytes == burst_for(8_000) < token.burst_bytes
    # 125 kB at 1 kB/s would be 125 s of HTB buffer time; sized on the rate it is two frames.
    assert token.rate_burst_bytes <= 2 * 1514
