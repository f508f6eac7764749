"""What `gatewayd status` shows, assembled from the daemon's facts and the kernel it drives.

The readers take what they read as arguments (the kernel, the plan, the
classifier's learned addresses), not the daemon, so control/ needs nothing
from daemon/.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayd.apply.applier import Applier
from gatewayd.apply.nft import NftKernel
from gatewayd.classify.engine import IPAddress
from gatewayd.compile import marks
from gatewayd.compile.kernel_names import (
    SET_FLOWS,
    SET_RECENT_BLOCKED_V4,
    SET_RECENT_BLOCKED_V6,
    SET_USAGE,
)
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.plan import Plan
from gatewayd.explain.rules import FlowFacts, RuleEngine
from gatewayd.policy.model import Policy

PROTOCOLS = {6: "tcp", 17: "udp"}
RECENT_BLOCKED_SHOWN = 20


class LearnedAddresses(Protocol):
    """The classifier's memory of addresses learned from DNS, as far as the status reads it."""

    def learned_app(self, address: IPAddress, now: float) -> tuple[str, str] | None: ...

    @property
    def learned_count(self) -> int: ...


@dataclass(frozen=True)
class DaemonFacts:
    """What the daemon knows about itself at the moment of the status request."""

    generation: int
    policy_file: str
    degraded: bool
    started_at: float  # Unix time
    pending_change: dict[str, Any] | None
    links: tuple[dict[str, Any], ...] = ()  # WAN links' health (daemon/link_health.py LinkReport)


def traffic_by_app(nft: NftKernel, numbering: Numbering) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for key, counter in nft.set_counters(SET_USAGE).items():
        app = numbering.app_name(marks.app_number_of(key))
        action = "block" if key & marks.BLOCK_BIT else "allow"
        entry = totals.setdefault((app, action), {"bytes": 0, "packets": 0})
        entry["bytes"] += counter.bytes
        entry["packets"] += counter.packets
    flows: dict[str, int] = {}
    for key, counter in nft.set_counters(SET_FLOWS).items():
        app = numbering.app_name(marks.app_number_of(key))
        flows[app] = flows.get(app, 0) + counter.packets
    rows = [{"app": app, "action": action, "flows": flows.get(app, 0), **values}
            for (app, action), values in totals.items()]
    return sorted(rows, key=lambda row: -row["bytes"])


def recent_blocked(nft: NftKernel, plan: Plan, learned_addresses: LearnedAddresses) -> list[dict[str, Any]]:
    """Blocked flows the kernel remembers (10 minutes), newest first, with the rule that blocked them."""
    numbering = plan.numbering
    engine = RuleEngine(plan.policy)
    now = dt.datetime.now()
    rows = []
    for set_name in (SET_RECENT_BLOCKED_V4, SET_RECENT_BLOCKED_V6):
        for flow in nft.recent_blocked_flows(set_name):
            app = numbering.app_name(marks.app_number_of(flow.mark))
            verdict = engine.evaluate(FlowFacts(ipaddress.ip_address(flow.client), app, now))
            learned = learned_addresses.learned_app(ipaddress.ip_address(flow.server), time.monotonic())
            evidence = f"DNS: {learned[1]}" if learned and learned[0] == app else "classifier (first packets)"
            rows.append({"client": flow.client, "server": flow.server,
                         "protocol": PROTOCOLS.get(int(flow.protocol), str(flow.protocol))
                         if str(flow.protocol).isdigit() else flow.protocol,
                         "port": flow.port, "app": app,
                         "group": numbering.group_name(marks.group_number_of(flow.mark)),
                         "rule": verdict.rule_name, "evidence": evidence, "seconds_ago": flow.age_seconds})
    return sorted(rows, key=lambda row: row["seconds_ago"])[:RECENT_BLOCKED_SHOWN]


def guard_blocklist(nft: NftKernel, policy: Policy) -> list[dict[str, Any]] | None:
    """Hosts the LAN guard's port-scan defence holds now; None without a `security` section."""
    if getattr(policy, "security", None) is None:
        return None
    from gatewayd.apply.guard_state import read_blocklist

    return [{"address": host.address, "expires_seconds": host.expires_seconds, "reason": host.reason}
            for host in read_blocklist(nft)]


def build_status(facts: DaemonFacts, plan: Plan, applier: Applier,
                 learned_addresses: LearnedAddresses) -> dict[str, Any]:
    policy = plan.policy
    learned_kernel = applier.nft.learned_count()
    return {
        "generation": facts.generation,
        "policy_file": facts.policy_file,
        "degraded": facts.degraded,
        "fail_mode": policy.classifier.fail_mode,
        "uptime_seconds": int(time.time() - facts.started_at),
        "queue_backend": applier.queue.backend,
        "leaf_qdisc": applier.tc.leaf_kind,
        "kernel_features": applier.kernel_features().report(),
        "pending_change": facts.pending_change,
        "links": list(facts.links),
        "traffic": traffic_by_app(applier.nft, plan.numbering),
        "recent_blocked": recent_blocked(applier.nft, plan, learned_addresses),
        "blocklist": guard_blocklist(applier.nft, policy),
        "limited_hosts": {"configured": len(plan.host_slots.hosts),
                          "with_classes": len(applier.tc.hosts_made(plan.tc_trees))},
        "learned_addresses": {"kernel_v4": learned_kernel.get("learned_v4", 0),
                              "kernel_v6": learned_kernel.get("learned_v6", 0),
                              "classifier": learned_addresses.learned_count},
    }
