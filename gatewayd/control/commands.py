"""`gatewayd status`, `gatewayd apply`, `gatewayd confirm`: the admin's side of the control socket."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gatewayd.control.confirm_window import confirm_window_argument
from gatewayd.control.protocol import DEFAULT_SOCKET, ControlError, request

STATUS_TIMEOUT_SECONDS = 10.0
APPLY_TIMEOUT_SECONDS = 60.0  # apply + health checks


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def render_status(status: dict[str, Any]) -> str:
    lines = [
        f"policy      {status['policy_file']} (generation {status['generation']})"
        + ("  DEGRADED: running the last-known-good policy" if status["degraded"] else ""),
        f"fail mode   {status['fail_mode']}   uptime {status['uptime_seconds']} s   "
        f"queue via {status['queue_backend']}   leaf qdisc {status['leaf_qdisc']}",
    ]
    pending = status.get("pending_change")
    if pending:
        left = pending["seconds_left"]
        lines.append(f"pending     {pending['policy']}: {pending['state']}"
                     + (f", reverts in {left:.0f} s unless confirmed" if left is not None else ""))
    limited = status.get("limited_hosts")
    if limited and limited["configured"]:
        lines.append(f"per-host    {limited['with_classes']} of {limited['configured']} limited hosts have their "
                     "classes (made on a host's first packet)")
    learned = status["learned_addresses"]
    lines.append(f"learned     {learned['kernel_v4']} IPv4 + {learned['kernel_v6']} IPv6 addresses in the kernel "
                 f"({learned['classifier']} in the classifier)")
    lines.append("traffic     app              action  flows      bytes")
    for row in status["traffic"][:15]:
        lines.append(f"            {row['app']:<16} {row['action']:<7} {row['flows']:>5} {human_bytes(row['bytes']):>10}")
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
        from gatewayd.cli_status import cmd_status as kernel_blocklist

        return kernel_blocklist(args)
    if not answer.get("ok"):
        print(f"gatewayd status: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer["status"], indent=2) if args.json else render_status(answer["status"]))
    return 0


def run_apply(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"command": "apply", "policy": str(Path(args.policy).resolve())}
    if args.confirm_within is not None:
        message["confirm_within"] = args.confirm_within
    try:
        answer = request(Path(args.socket), message, APPLY_TIMEOUT_SECONDS)
    except ControlError as exc:
        print(f"gatewayd apply: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer))
    elif answer.get("ok"):
        state = answer["state"]
        print(f"applied as generation {answer['generation']}; health checks passed"
              + (f"; run `gatewayd confirm` within {args.confirm_within:g} s or it reverts"
                 if state == "awaiting_confirm" else "; kept"))
    else:
        print(f"gatewayd apply: {answer.get('reason') or answer.get('error')}", file=sys.stderr)
        for issue in answer.get("issues", []):
            print(issue, file=sys.stderr)
    return 0 if answer.get("ok") else 1


def run_confirm(args: argparse.Namespace) -> int:
    try:
        answer = request(Path(args.socket), {"command": "confirm"}, STATUS_TIMEOUT_SECONDS)
    except ControlError as exc:
        print(f"gatewayd confirm: {exc}", file=sys.stderr)
        return 1
    if answer.get("ok"):
        print(f"confirmed: generation {answer['generation']} is kept")
        return 0
    print(f"gatewayd confirm: {answer.get('error')}", file=sys.stderr)
    return 1


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    socket_help = f"the daemon's control socket (default: {DEFAULT_SOCKET})"
    status = commands.add_parser("status", help="what the running daemon is doing, blocklist included (root)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--socket", default=str(DEFAULT_SOCKET), help=socket_help)
    status.set_defaults(func=run_status)

    apply = commands.add_parser("apply", help="switch the running daemon to a new policy, with health checks")
    apply.add_argument("policy")
    apply.add_argument("--confirm-within", type=confirm_window_argument, metavar="SECONDS",
                       help="revert by itself unless `gatewayd confirm` arrives in time")
    apply.add_argument("--json", action="store_true")
    apply.add_argument("--socket", default=str(DEFAULT_SOCKET), help=socket_help)
    apply.set_defaults(func=run_apply)

    confirm = commands.add_parser("confirm", help="keep the change a pending `apply --confirm-within` made")
    confirm.add_argument("--socket", default=str(DEFAULT_SOCKET), help=socket_help)
    confirm.set_defaults(func=run_confirm)
