"""The transaction that swaps the gatewayd table in on a reload keeps its base chains (and so the
packets waiting in NFQUEUE): checked on the script, without root."""

from __future__ import annotations

import json
import subprocess
import weakref
from pathlib import Path

from gatewayd.apply.nft import NftKernel, base_hook_of, devices_in_listing
from gatewayd.compile.nftables_model import BaseHook, KernelObjects, NftChain, NftRule, NftSet, NftTable
from gatewayd.compile.plan import compile_plan
from gatewayd.policy.loader import load_policy_text

PLAN = Path(__file__).parent / "plan"

FORWARD = BaseHook("forward", 0)
TABLE = NftTable("inet", "gatewayd", ("hits",),
                 (NftSet("servers", "ipv4_addr", flags=("interval",), elements=("192.0.2.0/24",)),),
                 (NftChain("count", (NftRule("counter name hits"),)),
                  NftChain("classify", (NftRule("ip daddr @servers jump count"),), FORWARD)))


def test_a_first_start_only_declares_and_defines() -> None:
    script = TABLE.swap_script(KernelObjects())
    assert script.startswith("table inet gatewayd\nflush table inet gatewayd\ntable inet gatewayd {")
    assert "delete" not in script


def test_base_chains_with_the_same_hook_stay_and_everything_else_is_redefined() -> None:
    present = KernelObjects(sets={"servers": "set", "learned": "map"}, counters=("hits", "old_rule"),
                            chains={"classify": BaseHook("forward", 0), "count": None, "gone": None,
                                    "moved": BaseHook("prerouting", 0)})
    lines = TABLE.swap_script(present, ("add element inet gatewayd servers { 198.51.100.1 }",)).splitlines()
    deletes = [line for line in lines if line.startswith("delete")]
    assert deletes == ["delete map inet gatewayd learned", "delete set inet gatewayd servers",
                       "delete counter inet gatewayd hits", "delete counter inet gatewayd old_rule",
                       "delete chain inet gatewayd count", "delete chain inet gatewayd gone",
                       "delete chain inet gatewayd moved"]
    assert "delete table" not in "\n".join(lines)  # the hooks, and the packets in the queue, stay
    assert lines.index("flush table inet gatewayd") < lines.index(deletes[0])  # rules go before what they use
    assert lines[-1] == "add element inet gatewayd servers { 198.51.100.1 }"  # carried state after the table


def test_a_base_chain_whose_priority_changed_is_made_again() -> None:
    present = KernelObjects(chains={"classify": BaseHook("forward", 10)})
    assert "delete chain inet gatewayd classify" in TABLE.swap_script(present)


def test_chains_are_read_back_as_nft_lists_them() -> None:
    assert base_hook_of({"name": "count", "table": "gatewayd"}) is None
    assert base_hook_of({"name": "enforce", "hook": "forward", "prio": -140, "policy": "accept",
                         "type": "filter"}) == BaseHook("forward", -140)
    assert base_hook_of({"name": "lan", "hook": "ingress", "prio": -500, "dev": "lan0"}) == BaseHook(
        "ingress", -500, devices=("lan0",))


def test_the_swap_of_a_real_plan_passes_nft_check_on_a_first_start() -> None:
    policy = load_policy_text((PLAN / "connection_caps.yaml").read_text(), "connection_caps.yaml",
                              catalog_path=str(PLAN / "catalog.yaml"))
    script = compile_plan(policy).ruleset.table.swap_script(KernelObjects())
    checked = subprocess.run(["nft", "-c", "-f", "-"], input=script, text=True, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


# What nft 1.0.6 prints for the LAN guard's table on kernel 6.18: the JSON chain has no "dev".
GUARD_CHAINS_JSON = {"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"chain": {"family": "netdev", "table": "gatewayd_guard", "name": "lan_ingress", "handle": 1,
               "type": "filter", "hook": "ingress", "prio": -500, "policy": "accept"}},
    {"chain": {"family": "netdev", "table": "gatewayd_guard", "name": "arp_guard", "handle": 2}}]}
GUARD_CHAIN_TEXT = """table netdev gatewayd_guard {
\tchain lan_ingress {
\t\tcomment "every frame the LAN sends, before the IP stack"
\t\ttype filter hook ingress device "lan0" priority -500; policy accept;
\t}
}
"""


class ListingNft:
    """libnftables answering `list` commands as nft 1.0.6 does for the guard table."""

    def __init__(self) -> None:
        self.json = False

    def set_json_output(self, value: bool) -> None:
        self.json = value

    def set_terse_output(self, value: bool) -> None:
        pass

    def set_handle_output(self, value: bool) -> None:
        pass

    def cmd(self, command: str) -> tuple[int, str, str]:
        if command == "list chain netdev gatewayd_guard lan_ingress" and not self.json:
            return 0, GUARD_CHAIN_TEXT, ""
        if command == "list chains netdev" and self.json:
            return 0, json.dumps(GUARD_CHAINS_JSON), ""
        if command.startswith("list ") and self.json:
            return 0, json.dumps({"nftables": []}), ""
        return 1, "", f"unexpected: {command}"


def test_devices_are_read_from_the_text_listing() -> None:
    assert devices_in_listing(GUARD_CHAIN_TEXT) == ("lan0",)
    assert devices_in_listing('type filter hook ingress devices = { "lan0", "lan1" } priority -500;') == (
        "lan0", "lan1")
    assert devices_in_listing("type filter hook forward priority 0; policy accept;") == ()


def test_a_guard_ingress_chain_on_the_same_devices_is_kept_by_the_swap() -> None:
    """Deleting it would unregister its hook, and the kernel would drop every packet waiting in NFQUEUE."""
    kernel = NftKernel(ListingNft)
    present = kernel.present_objects("netdev", "gatewayd_guard")
    ingress = BaseHook("ingress", -500, devices=("lan0",))
    assert present.chains == {"lan_ingress": ingress, "arp_guard": None}
    guard = NftTable("netdev", "gatewayd_guard", chains=(NftChain("lan_ingress", (), ingress),
                                                         NftChain("arp_guard", ())))
    assert "delete chain netdev gatewayd_guard lan_ingress" not in guard.swap_script(present)


def test_the_kernel_keeps_no_libnftables_context_between_commands() -> None:
    """A context keeps the cache its listing filled (the whole table, MiBs) until it is freed."""
    made: list[weakref.ref[ListingNft]] = []

    def new_context() -> ListingNft:
        context = ListingNft()
        made.append(weakref.ref(context))
        return context

    kernel = NftKernel(new_context)
    kernel.present_objects("netdev", "gatewayd_guard")
    assert kernel.query("list chains netdev") != []
    assert len(made) >= 3 and all(ref() is None for ref in made)  # each freed as soon as its command ended
