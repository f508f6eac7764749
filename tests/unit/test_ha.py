"""The HA pair: what keepalived and conntrackd are given, and the takeover's steps, without root."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from gatewayd.apply.ha_takeover import Takeover
from gatewayd.compile import marks
from gatewayd.compile.ha import HOLD_TIMEOUT_SECONDS, HaPaths, compile_ha
from gatewayd.compile.kernel_names import HA_TABLE_NAME
from gatewayd.compile.plan import compile_plan
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.fields import FieldError
from gatewayd.policy.ha import parse_advert_interval, parse_preempt
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import Policy

PLAN = Path(__file__).parent / "plan"


def pair_policy(**overrides: str) -> Policy:
    text = (PLAN / "ha_pair.yaml").read_text()
    for key, value in overrides.items():
        text = text.replace("  advert_interval: 200ms\n", f"  advert_interval: 200ms\n  {key}: {value}\n")
    return load_policy_text(text, "ha_pair.yaml", catalog_path=str(PLAN / "catalog.yaml"))


def node_config(node: str = "gw-a", **overrides: str) -> tuple[str, str]:
    policy = pair_policy(**overrides)
    assert policy.ha is not None
    config = compile_ha(policy.ha, policy.interfaces, HaPaths("/run/test-ha", "/usr/bin/gatewayd")).for_node(node)
    assert config is not None
    return config.keepalived_conf, config.conntrackd_conf


# --- conntrackd carries every bit of per-flow state gatewayd keeps ---


def test_gatewayd_writes_per_flow_state_only_into_the_ct_mark_and_labels_which_conntrackd_syncs_whole() -> None:
    """conntrackd's ct2msg sends the whole 32-bit mark and the labels; a zone or secmark written by a
    rule would need checking again (they do not travel). The labels are only the rules epoch's tag
    (compile/decision_epoch.py), which a new master does not trust: it starts an epoch of its own."""
    plan = compile_plan(load_policy_text((PLAN / "small.yaml").read_text(), "small.yaml",
                                         catalog_path=str(PLAN / "catalog.yaml")))
    written = set(re.findall(r"\bct (\w+) set\b", plan.render()))
    assert written == {"mark", "label"}
    assert marks.GATEWAYD_MASK <= 0xFFFF_FFFF and marks.GATEWAYD_MASK & marks.OTHERS_MASK == 0


def test_conntrackd_syncs_tcp_udp_and_icmp_of_the_office_and_ignores_only_the_boxes_own_addresses() -> None:
    _, conntrackd = node_config()
    accepted = re.search(r"Protocol Accept \{([^}]*)\}", conntrackd)
    assert accepted is not None and accepted.group(1).split() == ["TCP", "UDP", "ICMP", "IPv6-ICMP"]
    ignored = re.search(r"Address Ignore \{([^}]*)\}", conntrackd)
    assert ignored is not None
    assert ignored.group(1).split()[1::2] == ["127.0.0.1", "::1", "203.0.113.241", "203.0.113.242",
                                             "192.0.2.1", "fe80::1", "2001:db8:1::1", "198.51.100.1"]
    assert "CommitTimeout" not in conntrackd  # with it, conntrackd would not send the kernel's timeouts
    assert "DisableExternalCache Off" in conntrackd  # states wait in the backup's cache for the commit


def test_each_node_talks_to_the_other_over_the_sync_link_with_its_own_socket() -> None:
    _, first = node_config("gw-a")
    _, second = node_config("gw-b")
    assert "IPv4_address 203.0.113.241\n        IPv4_Destination_Address 203.0.113.242" in first
    assert "IPv4_address 203.0.113.242\n        IPv4_Destination_Address 203.0.113.241" in second
    assert "Interface sync0" in first and "Path /run/test-ha/conntrackd.ctl" in first


# --- keepalived ---


def test_no_preemption_by_default_and_both_nodes_start_as_backup() -> None:
    keepalived, _ = node_config()
    assert keepalived.count("nopreempt") == 2 and "preempt_delay" not in keepalived
    assert keepalived.count("state BACKUP") == 2 and "state MASTER" not in keepalived


def test_preemption_with_a_delay() -> None:
    keepalived, _ = node_config(preempt="5m")
    assert keepalived.count("preempt_delay 300") == 2 and "nopreempt" not in keepalived


def test_lan_and_wan_move_together_and_ipv6_rides_with_the_ipv4_instance() -> None:
    keepalived, _ = node_config("gw-b")
    assert "virtual_router_id 51" in keepalived and "virtual_router_id 52" in keepalived
    assert "priority 100" in keepalived and "advert_int 0.2" in keepalived
    group = re.search(r"vrrp_sync_group gatewayd \{\s*group \{([^}]*)\}", keepalived)
    assert group is not None and group.group(1).split() == ["gatewayd_lan", "gatewayd_wan"]
    excluded = re.search(r"virtual_ipaddress_excluded \{([^}]*)\}", keepalived)
    assert excluded is not None and excluded.group(1).split() == ["fe80::1/64", "dev", "lan0",
                                                                  "2001:db8:1::1/64", "dev", "lan0"]
    for state in ("master", "backup", "fault"):
        assert (f'notify_{state} "/usr/bin/gatewayd ha-notify {state} --node gw-b --conntrackd-config '
                f'/run/test-ha/conntrackd.conf --hold lan0,wan0"') in keepalived


def test_the_lan_instance_commits_conntrackds_states_itself_before_gatewayd_starts() -> None:
    """The instance's notify_master is conntrackd alone (milliseconds); the group's is gatewayd
    (Python, about 0.4 s), which would otherwise keep synced flows waiting that long."""
    keepalived, _ = node_config("gw-b")
    lan = keepalived[keepalived.index("vrrp_instance gatewayd_lan"):keepalived.index("vrrp_instance gatewayd_wan")]
    assert 'notify_master "/usr/sbin/conntrackd -C /run/test-ha/conntrackd.conf -c"' in lan
    wan = keepalived[keepalived.index("vrrp_instance gatewayd_wan"):]
    assert "notify" not in wan  # one early commit is enough: LAN and WAN move together


# --- the IPv6 default router: a link-local virtual address, RAs from it only ---


def lan_policy(lan: str) -> Policy:
    text = (PLAN / "ha_pair.yaml").read_text().replace('lan: [192.0.2.1/24, "2001:db8:1::1/64"]', f"lan: {lan}")
    return load_policy_text(text, "ha_pair.yaml", catalog_path=str(PLAN / "catalog.yaml"))


def lan_addresses(lan: str) -> list[str]:
    ha = lan_policy(lan).ha
    assert ha is not None
    return [str(address) for address in ha.lan_addresses]


def test_a_lan_with_ipv6_also_moves_fe80_1_first_among_its_ipv6_addresses() -> None:
    assert lan_addresses('[192.0.2.1/24, "2001:db8:1::1/64"]') == ["192.0.2.1/24", "fe80::1/64", "2001:db8:1::1/64"]
    # IPv6 first stays first (keepalived then advertises IPv6, whose first address must be link-local).
    assert lan_addresses('["2001:db8:1::1/64", 192.0.2.1/24]') == ["fe80::1/64", "2001:db8:1::1/64", "192.0.2.1/24"]
    assert lan_addresses("[192.0.2.1/24]") == ["192.0.2.1/24"]  # no IPv6, no link-local address, no RAs


def test_a_listed_link_local_address_replaces_the_default_and_a_second_one_is_refused() -> None:
    assert lan_addresses('[192.0.2.1/24, "2001:db8:1::1/64", "fe80::254/64"]') == \
        ["192.0.2.1/24", "fe80::254/64", "2001:db8:1::1/64"]
    with pytest.raises(PolicyError, match=r"ha_pair.yaml:\d+:\d+: .*second link-local virtual address fe80::2"):
        lan_policy('["fe80::1/64", "fe80::2/64"]')


def test_radvd_advertises_the_lan_prefix_from_the_link_local_virtual_address_only() -> None:
    policy = pair_policy()
    assert policy.ha is not None
    compiled = compile_ha(policy.ha, policy.interfaces, HaPaths("/run/test-ha", "/usr/bin/gatewayd"))
    configs = [compiled.for_node(node) for node in ("gw-a", "gw-b")]
    radvd = [config.radvd_conf for config in configs if config is not None]
    assert len(radvd) == 2 and radvd[0] is not None and radvd[1] is not None
    # The same on both boxes but for the header: which one sends is decided by who holds fe80::1.
    assert radvd[0].splitlines()[1:] == radvd[1].splitlines()[1:]
    assert "interface lan0 {" in radvd[0] and "AdvRASrcAddress { fe80::1; };" in radvd[0]
    assert "prefix 2001:db8:1::/64 { AdvOnLink on; AdvAutonomous on; };" in radvd[0]
    lifetime = int(re.search(r"AdvDefaultLifetime (\d+);", radvd[0]).group(1))  # type: ignore[union-attr]
    interval = int(re.search(r"MaxRtrAdvInterval (\d+);", radvd[0]).group(1))  # type: ignore[union-attr]
    assert lifetime >= 3 * interval  # a host keeps its router through a few lost RAs
    assert "# --- ha: radvd.conf of node gw-b ---" in compiled.render()


def test_no_slaac_on_a_prefix_other_than_64_and_no_radvd_without_ipv6() -> None:
    policy = lan_policy('[192.0.2.1/24, "2001:db8:1::1/56"]')
    assert policy.ha is not None
    config = compile_ha(policy.ha, policy.interfaces).for_node("gw-a")
    assert config is not None and config.radvd_conf is not None
    assert "prefix 2001:db8:1::/56 { AdvOnLink on; AdvAutonomous off; };" in config.radvd_conf
    ipv4_only = lan_policy("[192.0.2.1/24]")
    assert ipv4_only.ha is not None
    config = compile_ha(ipv4_only.ha, ipv4_only.interfaces).for_node("gw-a")
    assert config is not None and config.radvd_conf is None
    assert "radvd" not in compile_ha(ipv4_only.ha, ipv4_only.interfaces).render()


@pytest.mark.parametrize(("text", "centiseconds"), [("1s", 100), ("200ms", 20), ("10ms", 1), ("40s", 4000)])
def test_advert_interval_in_centiseconds(text: str, centiseconds: int) -> None:
    assert parse_advert_interval(text) == centiseconds


@pytest.mark.parametrize("text", ["0s", "5ms", "41s", "1.5s", "1"])
def test_advert_interval_out_of_vrrps_range_is_refused(text: str) -> None:
    with pytest.raises(FieldError):
        parse_advert_interval(text)


@pytest.mark.parametrize(("text", "delay"), [("off", None), ("false", None), ("on", 0), ("300s", 300), ("2m", 120)])
def test_preempt(text: str, delay: int | None) -> None:
    assert parse_preempt(text) == delay


def test_preempt_delay_beyond_keepalived_is_refused() -> None:
    with pytest.raises(FieldError, match="at most 1000s"):
        parse_preempt("17m")


# --- the takeover ---


class FakeNft:
    def __init__(self, table_present: bool = True) -> None:
        self.scripts: list[str] = []
        self.table_present = table_present

    def run(self, script: str) -> None:
        self.scripts.append(script)

    def query(self, command: str) -> object:
        self.scripts.append(command)
        if not self.table_present:
            raise RuntimeError("No such file or directory")
        return []


class FakeConntrackd:
    def __init__(self, failing: str = "") -> None:
        self.flags: list[str] = []
        self.failing = failing

    def __call__(self, argv: Sequence[str], timeout: float) -> int:
        assert argv[:3] == ["/usr/sbin/conntrackd", "-C", "/run/test-ha/conntrackd.conf"] and timeout > 0
        self.flags.append(argv[3])
        return 1 if argv[3] == self.failing else 0


def takeover(nft: FakeNft, conntrackd: FakeConntrackd, cleared: list[int] | None = None) -> Takeover:
    def clear_labels(bits: int) -> int:
        if cleared is None:
            raise OSError("no ctnetlink here")
        cleared.append(bits)
        return 0

    return Takeover(nft, "/run/test-ha/conntrackd.conf", ("lan0", "wan0"), conntrackd, clear_labels)


def test_new_master_holds_with_a_timeout_commits_then_releases_once_gatewayds_table_is_in_force() -> None:
    nft, conntrackd, cleared = FakeNft(), FakeConntrackd(), []
    results = takeover(nft, conntrackd, cleared).notify("master")
    # The release comes right after the commit and the label clear: the office does not wait for the
    # cache housekeeping.
    assert [r.step for r in results] == ["hold", "commit", "clear_epoch_labels", "table_in_force", "release",
                                         "flush", "resync", "bulk_send"]
    assert all(r.ok for r in results)
    assert [r.ended_at for r in results] == sorted(r.ended_at for r in results)
    assert cleared == [marks.EPOCH_LABEL_MASK]  # the peer's epochs are not ours: every epoch bit goes
    assert conntrackd.flags == ["-c", "-f", "-R", "-B"]  # conntrack-tools' primary-backup.sh order
    hold, check, release = nft.scripts
    assert f'add element inet {HA_TABLE_NAME} hold {{ "lan0" timeout {HOLD_TIMEOUT_SECONDS}s, "wan0" timeout' in hold
    assert hold.startswith(f"table inet {HA_TABLE_NAME}\ndelete table inet {HA_TABLE_NAME}\n")
    assert check == "list table inet gatewayd"
    assert release == f"flush set inet {HA_TABLE_NAME} hold\n"


def test_a_failed_commit_or_label_clear_still_ends_in_the_release() -> None:
    nft, conntrackd = FakeNft(), FakeConntrackd(failing="-c")
    results = takeover(nft, conntrackd).notify("master")  # and no ctnetlink: the clear fails too
    assert [(r.step, r.ok) for r in results][1:3] == [("commit", False), ("clear_epoch_labels", False)]
    assert [(r.step, r.ok) for r in results][4] == ("release", True)


def test_without_gatewayds_table_the_hold_is_left_to_run_out() -> None:
    nft = FakeNft(table_present=False)
    results = takeover(nft, FakeConntrackd()).notify("master")
    assert ("table_in_force", False) in [(r.step, r.ok) for r in results]
    assert "release" not in [r.step for r in results]
    assert not any("flush set" in script for script in nft.scripts)


def test_backup_holds_without_timeout_ages_out_old_states_and_asks_the_master_for_its_own() -> None:
    nft, conntrackd = FakeNft(), FakeConntrackd()
    takeover(nft, conntrackd).notify("backup")
    assert conntrackd.flags == ["-t", "-n"]
    assert 'hold { "lan0", "wan0" }' in nft.scripts[0] and "timeout" not in nft.scripts[0].split("add element")[1]


def test_fault_holds_and_ages_out_but_asks_nobody() -> None:
    conntrackd = FakeConntrackd()
    takeover(FakeNft(), conntrackd).notify("fault")
    assert conntrackd.flags == ["-t"]
