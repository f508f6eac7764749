"""The `security` section: parsing, bindings files, and the guard tables it compiles to."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from gatewayd.compile.guard import compile_guard, scan_rate
from gatewayd.compile.kernel_names import INET, NETDEV
from gatewayd.compile.marks import GROUP_MASK
from gatewayd.compile.plan import compile_plan
from gatewayd.policy import PolicyError
from gatewayd.policy.loader import load_policy

HERE = Path(__file__).parent / "guard"
BASE = """version: 1
interfaces: {lan: [lan0, lan1], wan: wan0, upload: 10mbit, download: 10mbit}
classes:
  default: {priority: 3}
"""
FULL = BASE + """security:
  bindings:
    hosts:
      192.0.2.20: 02:00:00:00:00:20
      2001:db8:1::20: 02:00:00:00:00:20
    file: bindings.ethers
    unbound: drop
  anti_spoofing: true
  flood:
    syn: {rate: 200/second, burst: 400}
    icmp_echo: {rate: 10/minute, burst: 5}
    new_connections: {rate: 50/second, burst: 100}
  port_scan:
    ports: 30
    hosts: 100
    window: 10s
    block_for: 5m
    allow: [192.0.2.10, 2001:db8:1::/64]
"""


def load(text: str, name: str = "policy.yaml") -> object:
    path = HERE / name
    path.write_text(text)
    try:
        return load_policy(str(path))
    finally:
        path.unlink()


def test_full_section_parses_with_file_bindings_after_inline_ones() -> None:
    policy = load(FULL)
    security = policy.security
    assert security is not None and security.bindings is not None
    pairs = [(str(b.address), b.mac) for b in security.bindings.static]
    assert pairs == [("192.0.2.20", "02:00:00:00:00:20"), ("2001:db8:1::20", "02:00:00:00:00:20"),
                     ("192.0.2.30", "02:00:00:00:00:30"), ("2001:db8:1::30", "02:00:00:00:00:30")]
    assert security.bindings.unbound == "drop" and security.anti_spoofing
    assert security.flood.icmp_echo is not None and security.flood.icmp_echo.unit == "minute"
    assert security.scan is not None and security.scan.block_seconds == 300
    assert ipaddress.ip_network("2001:db8:1::/64") in security.scan.allow


def test_bindings_file_errors_point_into_that_file() -> None:
    text = BASE + "security:\n  bindings:\n    file: bad.ethers\n"
    with pytest.raises(PolicyError) as caught:
        load(text)
    issues = [str(i) for i in caught.value.issues]
    bad = HERE / "bad.ethers"
    assert issues == [f"{bad}:2:1: expected 'MAC ADDRESS' (two words) on each line",
                      f"{bad}:3:19: expected a single IPv4/IPv6 address here (a binding names one host)"]
    assert not any("192.0.2.999" in issue for issue in issues)  # the file's content is never quoted


def test_missing_bindings_file_is_reported_at_the_reference() -> None:
    with pytest.raises(PolicyError) as caught:
        load(BASE + "security:\n  bindings:\n    file: nowhere.ethers\n")
    (issue,) = caught.value.issues
    assert issue.location.line == 7 and issue.location.column == 11
    assert "cannot read bindings file: no such file" in issue.message


def test_no_security_section_means_no_guard_tables() -> None:
    plan = compile_plan(load(BASE))
    assert plan.guard.tables == ()
    assert "delete table netdev gatewayd_guard" in plan.guard.script({})  # a reload that drops the section


def test_guard_tables_bind_every_lan_interface_and_drop_spoofs() -> None:
    plan = compile_plan(load(FULL))
    netdev = next(t for t in plan.guard.tables if t.family == NETDEV)
    ingress = netdev.chain("lan_ingress")
    assert ingress.base is not None and ingress.base.devices == ("lan0", "lan1") and ingress.base.hook == "ingress"
    statements = [r.statement for r in ingress.rules]
    assert statements[0] == "ether type arp jump arp_guard"
    assert "ip saddr @bound_v4 ip saddr . ether saddr != @bindings_v4 counter name ip_mac_mismatch drop" in statements
    assert any(s.startswith("ip saddr != @bound_v4") and "unbound_host drop" in s for s in statements)
    arp = [r.statement for r in netdev.chain("arp_guard").rules]
    assert "arp saddr ip @bound_v4 arp saddr ip . arp saddr ether != @bindings_v4 counter name arp_spoof drop" in arp
    bindings = next(s for s in netdev.sets if s.name == "bindings_v4")
    assert bindings.elements == ("192.0.2.20 . 02:00:00:00:00:20", "192.0.2.30 . 02:00:00:00:00:30")
    inet = next(t for t in plan.guard.tables if t.family == INET)
    antispoof = [r.statement for r in inet.chain("antispoof").rules]
    assert antispoof[-1].endswith("fib saddr . iif oif missing counter name spoofed_source drop")


def test_lan_checks_after_conntrack_skip_only_established_flows_the_lan_started() -> None:
    plan = compile_plan(load(FULL))
    inet = next(t for t in plan.guard.tables if t.family == INET)
    chain = inet.chain("lan_prerouting")
    assert chain.base is not None and (chain.base.hook, chain.base.priority) == ("prerouting", -140)
    statements = [r.statement for r in chain.rules]
    assert statements[0].startswith("iifname != {") and statements[0].endswith("return")
    # The shortcut needs all three: under way, this packet in the direction that opened the flow, and
    # a flow the classify chain put in a group (only flows whose first packet came from a LAN port).
    assert statements[1] == f"ct state established ct direction original ct mark & {GROUP_MASK:#010x} != 0 return"
    assert statements.index("jump antispoof") == 2
    assert all("ct state new" in s for s in statements[3:]) and statements[3:]  # the new-connection meters
    assert all(c.base is None or c.base.priority != -300 or c.name == "syn_proxy_untrack" for c in inet.chains)


def test_floods_and_scans_become_meters_and_a_timed_blocklist() -> None:
    plan = compile_plan(load(FULL))
    netdev = next(t for t in plan.guard.tables if t.family == NETDEV)
    statements = [r.statement for r in netdev.chain("lan_ingress").rules]
    syn = next(s for s in statements if "@syn_flood_v4" in s)
    assert "limit rate over 200/second burst 400 packets" in syn and syn.endswith("counter name syn_flood drop")
    assert not any("udp_flood" in s for s in statements)  # not configured: no rule
    scan = next(s for s in statements if "@port_scan_v4" in s)
    assert "limit rate over 3/second burst 30 packets" in scan
    assert "add @blocklist_v4 { ip saddr timeout 300s }" in scan
    exempt = statements.index("ip saddr @scan_exempt_v4 return")
    assert exempt < statements.index(scan)
    assert statements.index("ip saddr @blocklist_v4 counter name blocklisted drop") < exempt
    assert set(plan.guard.counters[NETDEV]) >= {"arp_spoof", "ip_mac_mismatch", "syn_flood", "port_scan",
                                                "host_sweep", "blocklisted"}
    sweep = next(s for s in statements if "@host_sweep_v4" in s)  # a sweeper is also noted as one, for the log
    assert "add @blocklist_v4 { ip saddr timeout 300s } add @sweepers_v4 { ip saddr timeout 300s }" in sweep
    assert "sweepers_v4" not in scan


def test_segments_of_established_tcp_skip_the_flood_and_scan_tests_but_not_the_address_checks() -> None:
    """The per-packet cost of a bulk transfer: its segments leave the chain before the meters,
    which only SYNs, UDP and pings can trip; blocklist, spoof and binding checks still see them."""
    plan = compile_plan(load(FULL))
    netdev = next(t for t in plan.guard.tables if t.family == NETDEV)
    statements = [r.statement for r in netdev.chain("lan_ingress").rules]
    established = statements.index("meta l4proto tcp tcp flags & (syn | rst | ack) == ack accept")
    first_meter = min(i for i, s in enumerate(statements) if "_flood_v" in s or "@seen_" in s)
    assert established < first_meter
    for check in ("ip saddr @blocklist_v4 counter name blocklisted drop",
                  "ip saddr @bound_v4 ip saddr . ether saddr != @bindings_v4 counter name ip_mac_mismatch drop"):
        assert statements.index(check) < established


def test_the_guard_tables_pass_nft_syntax_check() -> None:
    plan = compile_plan(load(FULL))
    script = "".join(table.replace_script(()) for table in plan.guard.tables)
    checked = subprocess.run(["nft", "-c", "-f", "-"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_scan_rates_stay_whole_numbers() -> None:
    assert scan_rate(30, 10) == "3/second"
    assert scan_rate(20, 60) == "20/minute"
    assert scan_rate(7, 9) == "2800/hour"


def test_compile_guard_without_security_is_empty() -> None:
    assert compile_guard(None, ("lan0",)).tables == ()
