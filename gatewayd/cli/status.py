"""`gatewayd status [--json]`: what the running daemon is doing, asked over its control socket."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gatewayd.cli.control_client import STATUS_TIMEOUT_SECONDS, add_socket_option
from gatewayd.control.protocol import ControlError, request


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def render_feature(value: bool | str | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value or "not probed yet"


def render_links(links: list[dict[str, Any]]) -> list[str]:
    """One line per WAN link: state since when, probe figures, failovers, connections ended."""
    lines = []
    for number, link in enumerate(links):
        state = ("up" if link["up"] else "DOWN") if link["probed"] else "up (not probed)"
        rtt = f"rtt {link['rtt_seconds'] * 1000:.1f} ms" if link["rtt_seconds"] is not None else "rtt -"
        loss = f"loss {link['loss']:.0%}" if link["loss"] is not None else "loss -"
        lines.append(f"{'links' if number == 0 else '':<12}{link['name']:<10} {link['interface']:<8} weight "
                     f"{link['weight']:<3} {state:<15} {rtt:<14} {loss:<9} failovers {link['failovers']} "
                     f"failbacks {link['failbacks']} ended {link['ended_connections']}")
    return lines


def render_ha(ha: dict[str, Any] | None) -> list[str]:
    """The HA pair: this node's and the peer's VRRP state, and whether they run the same policy."""
    if not ha:
        return []
    same = {True: "same policy", False: "DIFFERENT POLICY", None: "policy not compared (peer not heard)"}
    return [f"ha          node {ha['node']} {ha['state']}   peer {ha['peer']} {ha['peer_state']}   "
            f"{same[ha['same_policy']]} (sha256 {ha['policy_hash'][:12]})"]


def render_status(status: dict[str, Any]) -> str:
    lines = [
        f"policy      {status['policy_file']} (generation {status['generation']})"
        + ("  DEGRADED: running the last-known-good policy" if status["degraded"] else ""),
        f"fail mode   {status['fail_mode']}   uptime {status['uptime_seconds']} s   "
        f"queue via {status['queue_backend']}   leaf qdisc {status['leaf_qdisc']}",
    ]
    features = status.get("kernel_features")
    if features:
        lines.append("kernel      " + "   ".join(f"{name.replace('_', ' ')} {render_feature(value)}"
                                                 for name, value in features.items() if name != "queue_backend"))
    pending = status.get("pending_change")
    if pending:
        left = pending["seconds_left"]
        lines.append(f"pending     {pending['policy']}: {pending['state']}"
                     + (f", reverts in {left:.0f} s unless confirmed" if left is not None else ""))
    lines.extend(render_links(status.get("links") or []))
    lines.extend(render_ha(status.get("ha")))
    limited = status.get("limited_hosts")
    if limited and limited["configured"]:
        lines.append(f"per-host    {limited['with_classes']} of {limited['configured']} limited hosts have their "
                     "classes (made on a host's first packet)")
    learned = status["learned_addresses"]
    lines.append(f"learned     {learned['kernel_v4']} IPv4 + {learned['kernel_v6']} IPv6 addresses in the kernel "
                 f"({learned['classifier']} in the classifier)")
    lines.append("traffic     app              action  flows      bytes")
    for row in status["traffic"][:15]:
        lines.append(f"            {row['app']:<16} {row['action']:<7} {row['flows']:>5} "
                     f"{human_bytes(row['bytes']):>10}")
    blocklist = status.get("blocklist")
    if blocklist is not None:
        lines.append(f"blocklist   {len(blocklist)} host(s)" + (":" if blocklist else ""))
        lines.extend(f"            {host['address']} ({host.get('reason', 'scan').replace('_', ' ')}) "
                     f"for {host['expires_seconds']} s more" for host in blocklist)
    blocked = status["recent_blocked"]
    lines.append(f"blocked     {len(blocked)} recent" + (":" if blocked else ""))
    for row in blocked:
        lines.append(f"            {row['seconds_ago']:>4}s ago {row['client']} -> {row['server']}:{row['port']}/"
                     f"{row['protocol']} app={row['app']} group={row['group']} rule={row['rule']} "
                     f"({row['evidence']})")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    try:
        answer = request(Path(args.socket), {"command": "status"}, STATUS_TIMEOUT_SECONDS)
    except ControlError as exc:
        # No daemon: what the kernel still holds (its fail-open rules stay) is worth showing.
        print(f"gatewayd status: {exc}; showing the LAN guard's blocklist from the kernel", file=sys.stderr)
        from gatewayd.cli.guard_blocklist import cmd_status as kernel_blocklist

        return kernel_blocklist(args)
    if not answer.get("ok"):
        print(f"gatewayd status: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer["status"], indent=2) if args.json else render_status(answer["status"]))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", help="what the running daemon is doing, blocklist included (root)")
    status.add_argument("--json", action="store_true")
    add_socket_option(status)
    status.set_defaults(func=run_status)
