"""What `gatewayd status` shows, assembled from the daemon and the kernel it drives."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from typing import TYPE_CHECKING, Any

from gatewayd.compile import marks
from gatewayd.compile.kernel_names import SET_FLOWS, SET_RECENT_BLOCKED_V4, SET_RECENT_BLOCKED_V6, SET_USAGE, TABLE_FAMILY, TABLE_NAME
from gatewayd.explain.rules import FlowFacts, RuleEngine

if TYPE_CHECKING:
    from gatewayd.daemon.reactor import Daemon

PROTOCOLS = {6: "tcp", 17: "udp"}
RECENT_BLOCKED_SHOWN = 20


def traffic_by_app(daemon: "Daemon") -> list[dict[str, Any]]:
    assert daemon.plan is not None
    numbering = daemon.plan.numbering
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for key, counter in daemon.applier.nft.set_counters(SET_USAGE).items():
        app = numbering.app_name(marks.app_number_of(key))
        action = "block" if key & marks.BLOCK_BIT else "allow"
        entry = totals.setdefault((app, action), {"bytes": 0, "packets": 0})
        entry["bytes"] += counter.bytes
        entry["packets"] += counter.packets
    flows: dict[str, int] = {}
    for key, counter in daemon.applier.nft.set_counters(SET_FLOWS).items():
        app = numbering.app_name(marks.app_number_of(key))
        flows[app] = flows.get(app, 0) + counter.packets
    rows = [{"app": app, "action": action, "flows": flows.get(app, 0), **values}
            for (app, action), values in totals.items()]
    return sorted(rows, key=lambda row: -row["bytes"])


def recent_blocked(daemon: "Daemon") -> list[dict[str, Any]]:
    """Blocked flows the kernel remembers (10 minutes), newest first, with the rule that blocked them."""
    assert daemon.plan is not None and daemon.classifier is not None
    numbering = daemon.plan.numbering
    engine = RuleEngine(daemon.plan.policy)
    now = dt.datetime.now()
    rows = []
    for set_name in (SET_RECENT_BLOCKED_V4, SET_RECENT_BLOCKED_V6):
        for item in daemon.applier.nft.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {set_name}"):
            for element in item.get("set", {}).get("elem", []):
                value = element.get("elem", element) if isinstance(element, dict) else {"val": element}
                parts = value["val"]["concat"]
                client, server, proto, port, mark = parts
                client_address = ipaddress.ip_address(client)
                app = numbering.app_name(marks.app_number_of(int(mark)))
                verdict = engine.evaluate(FlowFacts(client_address, app, now))
                learned = daemon.classifier.learned_app(ipaddress.ip_address(server), time.monotonic())
                evidence = f"DNS: {learned[1]}" if learned and learned[0] == app else "classifier (first packets)"
                age = int(value.get("timeout", 0)) - int(value.get("expires", 0))
                rows.append({"client": client, "server": server,
                             "protocol": PROTOCOLS.get(int(proto), str(proto)) if str(proto).isdigit() else proto,
                             "port": int(port), "app": app,
                             "group": numbering.group_name(marks.group_number_of(int(mark))),
                             "rule": verdict.rule_name, "evidence": evidence, "seconds_ago": max(0, age)})
    return sorted(rows, key=lambda row: row["seconds_ago"])[:RECENT_BLOCKED_SHOWN]


def guard_blocklist(daemon: "Daemon") -> list[dict[str, Any]] | None:
    """Hosts the LAN guard's port-scan defence holds now; None without a `security` section."""
    assert daemon.plan is not None
    if getattr(daemon.plan.policy, "security", None) is None:
        return None
    from gatewayd.apply.guard_state import read_blocklist

    return [{"address": host.address, "expires_seconds": host.expires_seconds, "reason": host.reason}
            for host in read_blocklist(daemon.applier.nft)]


def build_status(daemon: "Daemon") -> dict[str, Any]:
    plan = daemon.plan
    assert plan is not None
    policy = plan.policy
    learned_kernel = daemon.applier.nft.learned_count()
    return {
        "generation": daemon.generation,
        "policy_file": daemon.policy_path,
        "degraded": daemon.degraded,
        "fail_mode": policy.classifier.fail_mode,
        "uptime_seconds": int(time.time() - daemon.started_at),
        "queue_backend": daemon.applier.queue.backend,
        "leaf_qdisc": daemon.applier.tc.leaf_kind,
        "kernel_features": daemon.applier.kernel_features().report(),
        "pending_change": daemon.changes.describe(),
        "traffic": traffic_by_app(daemon),
        "recent_blocked": recent_blocked(daemon),
        "blocklist": guard_blocklist(daemon),
        "limited_hosts": {"configured": len(plan.host_slots.hosts),
                          "with_classes": len(daemon.applier.tc.hosts_made(plan.tc_trees))},
        "learned_addresses": {"kernel_v4": learned_kernel.get("learned_v4", 0),
                              "kernel_v6": learned_kernel.get("learned_v6", 0),
                              "classifier": daemon.classifier.learned_count if daemon.classifier else 0},
    }
