"""At stop, gatewayd removes the iptables-nft filter tables and chains it created, and only those."""

from __future__ import annotations

from typing import Any

from gatewayd.apply.iptables_tables import (
    FilterTableState,
    cleanup_script,
    filter_table_state,
)

CREATED = ("FORWARD", "OUTPUT", "GATEWAYD_QUEUE")
METAINFO = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
TABLE = {"table": {"family": "ip", "name": "filter", "handle": 1}}


def base_chain(name: str, hook: str, policy: str = "accept") -> dict[str, Any]:
    return {"chain": {"family": "ip", "table": "filter", "name": name, "handle": 3, "type": "filter",
                      "hook": hook, "prio": 0, "policy": policy}}


def rule_in(chain: str) -> dict[str, Any]:
    return {"rule": {"family": "ip", "table": "filter", "chain": chain, "handle": 7,
                     "expr": [{"accept": None}]}}


# What `nft -j list table ip filter` shows after gatewayd's chain and jumps are gone.
LEFT_BY_IPTABLES_NFT = [METAINFO, TABLE, base_chain("FORWARD", "forward"), base_chain("OUTPUT", "output")]
NO_TABLE = FilterTableState(False)


def test_state_before_start_is_read_from_the_listing() -> None:
    assert filter_table_state([]) == NO_TABLE
    assert filter_table_state([METAINFO]) == NO_TABLE
    assert filter_table_state([METAINFO, TABLE, base_chain("INPUT", "input"), rule_in("INPUT")]) == \
        FilterTableState(True, frozenset({"INPUT"}))


def test_a_table_gatewayd_created_goes_whole() -> None:
    assert cleanup_script("ip", NO_TABLE, LEFT_BY_IPTABLES_NFT, CREATED) == "delete table ip filter\n"
    assert cleanup_script("ip6", NO_TABLE, LEFT_BY_IPTABLES_NFT, CREATED) == "delete table ip6 filter\n"


def test_a_table_that_existed_before_stays_with_its_chains() -> None:
    before = FilterTableState(True, frozenset({"FORWARD", "OUTPUT"}))
    assert cleanup_script("ip", before, LEFT_BY_IPTABLES_NFT, CREATED) == ""


def test_in_someone_elses_table_only_the_chains_gatewayd_created_go() -> None:
    before = FilterTableState(True, frozenset({"INPUT"}))
    now = [METAINFO, TABLE, base_chain("INPUT", "input"), rule_in("INPUT"), *LEFT_BY_IPTABLES_NFT[2:]]
    assert cleanup_script("ip", before, now, CREATED) == (
        "delete chain ip filter FORWARD\ndelete chain ip filter OUTPUT\n")


def test_what_another_tool_added_meanwhile_is_kept() -> None:
    with_a_rule = [*LEFT_BY_IPTABLES_NFT, rule_in("FORWARD")]
    assert cleanup_script("ip", NO_TABLE, with_a_rule, CREATED) == "delete chain ip filter OUTPUT\n"
    dropping = [METAINFO, TABLE, base_chain("FORWARD", "forward", policy="drop"), base_chain("OUTPUT", "output")]
    assert cleanup_script("ip", NO_TABLE, dropping, CREATED) == "delete chain ip filter OUTPUT\n"
    with_a_chain = [*LEFT_BY_IPTABLES_NFT, base_chain("INPUT", "input")]
    assert cleanup_script("ip", NO_TABLE, with_a_chain, CREATED) == \
        "delete chain ip filter FORWARD\ndelete chain ip filter OUTPUT\n"
    with_a_set = [*LEFT_BY_IPTABLES_NFT, {"set": {"family": "ip", "table": "filter", "name": "banned"}}]
    assert cleanup_script("ip", NO_TABLE, with_a_set, CREATED) == \
        "delete chain ip filter FORWARD\ndelete chain ip filter OUTPUT\n"


def test_nothing_to_do_when_the_table_is_gone() -> None:
    assert cleanup_script("ip", NO_TABLE, [], CREATED) == ""
    assert cleanup_script("ip", NO_TABLE, [METAINFO], CREATED) == ""
