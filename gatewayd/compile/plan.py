"""Policy -> plan: everything the kernel and the classifier will be given, as plain data.

`compile_plan` never touches the kernel, so `gatewayd render` and the unit
tests run it without root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.compile.guard import CompiledGuard, compile_guard
from gatewayd.compile.ha import CompiledHa, compile_ha
from gatewayd.compile.host_limits import HostSlots
from gatewayd.compile.links import LinkRoute, link_routes
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.queue_rule import QueueRule
from gatewayd.compile.ruleset import CompiledRuleset, compile_ruleset
from gatewayd.compile.tc_tree import InterfaceTree, build_trees
from gatewayd.policy.model import Policy


@dataclass(frozen=True)
class Plan:
    policy: Policy
    numbering: Numbering
    ruleset: CompiledRuleset
    tc_trees: tuple[InterfaceTree, ...]
    queue: QueueRule
    # Factories, not shared instances: CompiledGuard holds a dict, and one default object
    # would be the same dict in every plan.
    guard: CompiledGuard = field(default_factory=lambda: CompiledGuard(None, ()))
    host_slots: HostSlots = field(default_factory=HostSlots)  # per-host HTB classes, stable across reloads
    link_routes: tuple[LinkRoute, ...] = ()  # several WAN links: one routing table each
    ha: CompiledHa | None = None  # the pair's keepalived/conntrackd configs and takeover hold; see compile/ha.py

    def render(self) -> str:
        parts = [f"# gatewayd plan for {self.policy.source}",
                 "# --- nftables: applied as one transaction ---",
                 self.ruleset.table.render(),
                 self.queue.render(),
                 *([self.guard.render()] if self.guard.tables else []),
                 "# --- tc: HTB trees (rtnetlink) ---"]
        parts.extend(tree.render() + "\n" for tree in self.tc_trees)
        if self.link_routes:
            parts.append("# --- policy routing: one table per WAN link (pyroute2) ---")
            parts.extend(route.render() for route in self.link_routes)
        if self.ha is not None:
            parts.append(self.ha.render())
        if self.ruleset.warnings:
            parts.append("# warnings:")
            parts.extend(f"#   {w}" for w in self.ruleset.warnings)
        return "\n".join(parts) + "\n"


def compile_plan(policy: Policy, previous: Plan | None = None) -> Plan:
    numbering = Numbering.for_policy(policy, previous.numbering if previous else None)
    host_slots = HostSlots.for_policy(policy, previous.host_slots if previous else None)
    return Plan(
        policy=policy,
        numbering=numbering,
        ruleset=compile_ruleset(policy, numbering, host_slots),
        tc_trees=build_trees(policy, numbering, host_slots),
        queue=QueueRule(policy.classifier.queue_num, bypass=policy.classifier.fail_mode == "open"),
        guard=compile_guard(policy.security, policy.interfaces.lan, policy.interfaces.wan),
        host_slots=host_slots,
        link_routes=link_routes(policy, numbering),
        ha=compile_ha(policy.ha, policy.interfaces) if policy.ha is not None else None,
    )
