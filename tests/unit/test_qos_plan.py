"""HTB layout, minor numbering and the nft QoS rules a policy compiles to (no root needed)."""

from __future__ import annotations

import ipaddress
import textwrap

from gatewayd.compile.host_limits import HOST_MINOR_BASE
from gatewayd.compile.nftables_model import KernelObjects
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.compile.qos_rules import CONTROL_PACKET_BYTES
from gatewayd.compile.tc_tree import CONTROL_MINOR, OTHERS_MINOR, ROOT_MINOR, group_leaf_minor, group_minor
from gatewayd.policy.loader import load_policy_text

BASE = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
classes:
  realtime: { priority: 0, guaranteed: 20% }
  default: { priority: 3, guaranteed: 20% }
  bulk: { priority: 7, limit: 30% }
groups:
  staff: { members: [192.0.2.0/28] }
  finance:
    members: [192.0.2.128/28]
    bandwidth: { guaranteed: 20%, limit: 60% }
    max_connections: 40
  guest:
    members: [192.0.2.192/29]
    per_host:
      upload: { limit: 1mbit }
      download: { guaranteed: 256kbit, limit: 2mbit }
    exceptions:
      192.0.2.194: { download: { limit: 8mbit } }
rules:
  - { name: guests, groups: [guest], class: bulk }
"""


def plan_of(text: str = BASE, previous: Plan | None = None) -> Plan:
    return compile_plan(load_policy_text(textwrap.dedent(text), "qos.yaml"), previous)


def test_groups_with_settings_get_subtrees_split_by_class() -> None:
    plan = plan_of()
    download = next(t for t in plan.tc_trees if t.direction == "download")
    classes = download.by_minor()
    finance = plan.numbering.groups.numbers["finance"]
    group = classes[group_minor(finance)]
    assert (group.parent_minor, group.rate_bps, group.ceil_bps) == (ROOT_MINOR, 10_000_000, 30_000_000)
    realtime = classes[group_leaf_minor(finance, plan.numbering.classes["realtime"])]
    bulk = classes[group_leaf_minor(finance, plan.numbering.classes["bulk"])]
    assert realtime.parent_minor == group.minor and realtime.leaf
    assert realtime.rate_bps == 2_000_000  # 20% of the group's 10 Mbit/s guarantee
    assert bulk.ceil_bps == 15_000_000 and bulk.priority == 7  # the class limit (30% of the link) binds
    others = classes[OTHERS_MINOR]
    guest = classes[group_minor(plan.numbering.groups.numbers["guest"])]
    assert guest.rate_bps == 6 * 256_000  # no group guarantee: its hosts' minimums
    assert others.rate_bps == 50_000_000 - group.rate_bps - guest.rate_bps  # what the groups leave
    assert classes[0x11].parent_minor == OTHERS_MINOR  # shared leaves keep their minors


def test_every_limited_host_has_its_own_class_under_its_group() -> None:
    plan = plan_of()
    guest = plan.numbering.groups.numbers["guest"]
    for tree in plan.tc_trees:
        hosts = [c for c in tree.classes if c.role == "host"]
        assert len(hosts) == 6  # a /29 without network and broadcast
        assert all(c.parent_minor == group_minor(guest) and c.minor >= HOST_MINOR_BASE for c in hosts)
    download = next(t for t in plan.tc_trees if t.direction == "download")
    ceilings = {c.name: c.ceil_bps for c in download.classes if c.role == "host"}
    assert ceilings["host 192.0.2.193"] == 2_000_000 and ceilings["host 192.0.2.194"] == 8_000_000
    upload = next(t for t in plan.tc_trees if t.direction == "upload")
    assert {c.ceil_bps for c in upload.classes if c.role == "host"} == {1_000_000}
    assert "made on that host's first packet" in download.render()  # `tc class show` lists only those made


def test_host_lookup_is_one_map_per_direction_not_a_rule_per_host() -> None:
    table = plan_of().ruleset.table
    enforce = [r.statement for r in table.chain("enforce").rules]
    assert "ct direction original meta priority set ip saddr map @host_up_v4" in enforce
    assert "ct direction reply meta priority set ip daddr map @host_down_v4" in enforce
    assert enforce.index("ct direction original meta priority set ip saddr map @host_up_v4") > \
        next(i for i, s in enumerate(enforce) if "map @class_priority" in s)  # hosts override the class
    down = next(s for s in table.sets if s.name == "host_down_v4")
    assert len(down.elements) == 6 and down.elements[0] == f"192.0.2.193 : 1:{HOST_MINOR_BASE:x}"


def test_every_tree_has_a_control_leaf_behind_realtime_and_ahead_of_default() -> None:
    for tree in plan_of().tc_trees:
        classes = tree.by_minor()
        control = classes[CONTROL_MINOR]
        assert (control.parent_minor, control.leaf, control.role) == (ROOT_MINOR, True, "control")
        assert control.rate_bps == tree.link_bps * 5 // 100 and control.ceil_bps == tree.link_bps // 4
        realtime, default = classes[0x11], classes[0x12]
        assert realtime.priority < control.priority < default.priority


def test_with_one_priority_the_control_leaf_shares_it() -> None:
    one = BASE.replace("priority: 0", "priority: 3").replace("priority: 7", "priority: 3")
    for tree in plan_of(one).tc_trees:
        assert tree.by_minor()[CONTROL_MINOR].priority == 3


def test_small_tcp_and_dns_go_to_the_control_leaf_after_every_other_class_choice() -> None:
    plan = plan_of()
    enforce = [r.statement for r in plan.ruleset.table.chain("enforce").rules]
    realtime = f"0x{plan.numbering.classes['realtime'] << 8:08x}"
    keep_realtime = f"ct mark & 0x00001f00 != {{ {realtime} }}"
    control = [i for i, s in enumerate(enforce) if s.endswith(f"meta priority set 1:{CONTROL_MINOR:x}")]
    assert [enforce[i] for i in control] == [
        f"meta l4proto tcp meta length < {CONTROL_PACKET_BYTES} {keep_realtime} meta priority set 1:3",
        f"meta l4proto udp th sport 53 {keep_realtime} meta priority set 1:3",
        f"meta l4proto udp th dport 53 {keep_realtime} meta priority set 1:3",
    ]
    host_maps = [i for i, s in enumerate(enforce) if "map @host_" in s or "map @class_priority" in s]
    assert min(control) > max(host_maps)  # overrides the class and the host limits


def test_class_priority_keys_on_group_and_class_when_groups_are_shaped() -> None:
    plan = plan_of()
    class_map = next(s for s in plan.ruleset.table.sets if s.name == "class_priority")
    finance = plan.numbering.groups.numbers["finance"]
    staff = plan.numbering.groups.numbers["staff"]
    realtime = plan.numbering.classes["realtime"]
    key = lambda group: f"0x{(group << 14) | (realtime << 8):08x}"  # noqa: E731
    assert f"{key(finance)} : 1:{group_leaf_minor(finance, realtime):x}" in class_map.elements
    assert f"{key(staff)} : 1:11" in class_map.elements  # a group without settings: the shared leaf


def test_connection_cap_is_a_ct_count_set_and_a_named_counter_per_protocol() -> None:
    plan = plan_of()
    finance = plan.numbering.groups.numbers["finance"]
    table = plan.ruleset.table
    counters = [f"connections_refused_finance_{protocol}" for protocol in ("tcp", "udp", "other")]
    assert set(counters) <= set(table.counters)
    limit = [r.statement for r in table.chain(f"connection_limit_{finance}").rules]
    assert limit[0] == ("meta nfproto ipv4 add @connlimit_finance_40_v4 { ip saddr ct count over 40 } "
                        f"goto refuse_connection_{finance}")
    refuse = [r.statement for r in table.chain(f"refuse_connection_{finance}").rules]
    assert refuse == [f"meta l4proto tcp counter name {counters[0]} reject with tcp reset",
                      f"meta l4proto udp counter name {counters[1]} drop",
                      f"counter name {counters[2]} drop"]
    enforce = [r.statement for r in table.chain("enforce").rules]
    assert enforce.index("ct direction original jump decided_flows") < enforce.index(
        "ct state new ct direction original jump connection_caps")  # blocked flows are not counted


CAPPED_WITH_RESOLVERS = BASE + """\
dns:
  resolvers: [203.0.113.53, "2001:db8:100::53"]
"""


def test_connection_caps_count_neither_dns_to_the_named_resolvers_nor_icmp() -> None:
    table = plan_of(CAPPED_WITH_RESOLVERS).ruleset.table
    caps = [r.statement for r in table.chain("connection_caps").rules]
    assert caps == [
        "meta l4proto { icmp, ipv6-icmp } return",
        "meta l4proto { tcp, udp } th dport 53 ip daddr @dns_resolvers_v4 return",
        "meta l4proto { tcp, udp } th dport 53 ip6 daddr @dns_resolvers_v6 return",
        "ct mark & 0x000fc000 vmap @connection_limits",  # everything else: TCP, UDP, GRE... is counted
    ]
    sets = {s.name: s for s in table.sets}
    assert sets["dns_resolvers_v4"].elements == ("203.0.113.53",)
    assert sets["dns_resolvers_v6"].elements == ("2001:db8:100::53",)


def test_dns_to_a_resolver_the_policy_does_not_name_is_counted() -> None:
    """Without dns.resolvers only ICMP is exempt: port 53 alone exempts nothing (the router's
    own resolver is not in the forward hook at all)."""
    table = plan_of().ruleset.table
    caps = [r.statement for r in table.chain("connection_caps").rules]
    assert caps == ["meta l4proto { icmp, ipv6-icmp } return", "ct mark & 0x000fc000 vmap @connection_limits"]
    assert not any(s.name.startswith("dns_resolvers") for s in table.sets)


def test_connection_caps_run_in_the_forward_hook_only() -> None:
    """Traffic to the router itself takes the input hook: no cap chain is reachable from it."""
    table = plan_of(CAPPED_WITH_RESOLVERS).ruleset.table
    jumps_to_caps = [c for c in table.chains if any("connection_caps" in r.statement for r in c.rules)]
    assert [(c.name, c.base.hook if c.base else None) for c in jumps_to_caps] == [("enforce", "forward")]


def test_without_caps_resolvers_add_no_cap_rules() -> None:
    uncapped = CAPPED_WITH_RESOLVERS.replace("    max_connections: 40\n", "")
    table = plan_of(uncapped).ruleset.table
    assert not any(c.name == "connection_caps" for c in table.chains)
    assert not any("connection_caps" in r.statement for r in table.chain("enforce").rules)


def test_host_slots_survive_a_reload_that_adds_hosts() -> None:
    first = plan_of()
    grown = plan_of(BASE.replace("192.0.2.192/29", "192.0.2.192/28"), previous=first)
    before = {h.address: h.slot for h in first.host_slots.hosts}
    after = {h.address: h.slot for h in grown.host_slots.hosts}
    assert all(after[address] == slot for address, slot in before.items())
    assert len(after) == 14 and len(set(after.values())) == 14
    assert ipaddress.ip_address("192.0.2.200") in after


def test_without_group_settings_the_tree_stays_flat() -> None:
    flat = plan_of(BASE.split("groups:")[0] + "rules: []\n")
    for tree in flat.tc_trees:
        assert {c.parent_minor for c in tree.classes if c.leaf} == {ROOT_MINOR}
    statements = [r.statement for r in flat.ruleset.table.chain("enforce").rules]
    assert "meta priority set ct mark & 0x00001f00 map @class_priority" in statements


def test_a_reload_keeps_a_caps_counts_and_refusals_unless_its_cap_changed() -> None:
    """The ct counts of a cap cannot be written back: the swap must not delete the set while the
    group and cap stay, nor the refused counters while the group stays."""
    table = plan_of().ruleset.table
    assert {"connlimit_finance_40_v4", "connlimit_finance_40_v6", "connections_refused_finance_tcp",
            "connections_refused_finance_udp", "connections_refused_finance_other"} <= set(table.kept)
    held = KernelObjects(sets={"connlimit_finance_40_v4": "set", "connlimit_finance_20_v4": "set",
                               "class_priority": "map"},
                         counters=("connections_refused_finance_tcp", "connections_refused_gone_tcp"))
    deletes = [line for line in table.swap_script(held).splitlines() if line.startswith("delete")]
    assert deletes == ["delete map inet gatewayd class_priority",
                       "delete set inet gatewayd connlimit_finance_20_v4",  # the cap was 20: counted afresh
                       "delete counter inet gatewayd connections_refused_gone_tcp"]


def test_a_changed_cap_names_a_new_set() -> None:
    plan = plan_of(BASE.replace("max_connections: 40", "max_connections: 41"))
    names = {s.name for s in plan.ruleset.table.sets}
    assert "connlimit_finance_41_v4" in names and "connlimit_finance_40_v4" not in names
