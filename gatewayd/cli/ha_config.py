"""`gatewayd ha-config POLICY --node NAME --into DIR`: write one node's keepalived.conf and conntrackd.conf
(and radvd.conf when the LAN has an IPv6 virtual address).

What a unit runs before keepalived, conntrackd and radvd (and what the lab does); the files
name DIR for conntrackd's socket and lock, so two nodes on one machine never share them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from gatewayd.policy.loader import load_policy_or_report


def run_config(args: argparse.Namespace) -> int:
    from gatewayd.compile.ha import HaPaths, compile_ha

    policy = load_policy_or_report(args.policy, args.catalog)
    if policy is None:
        return 1
    if policy.ha is None:
        print(f"gatewayd ha-config: {args.policy} has no ha section", file=sys.stderr)
        return 1
    into = Path(args.into).resolve()
    command = args.gatewayd_command or shlex.join([sys.executable, "-m", "gatewayd"])
    config = compile_ha(policy.ha, policy.interfaces, HaPaths(str(into), command)).for_node(args.node)
    if config is None:
        names = ", ".join(node.name for node in policy.ha.nodes)
        print(f"gatewayd ha-config: no node '{args.node}' in the ha section (nodes: {names})", file=sys.stderr)
        return 1
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {"keepalived.conf": config.keepalived_conf, "conntrackd.conf": config.conntrackd_conf}
    if config.radvd_conf is not None:
        files["radvd.conf"] = config.radvd_conf
    for name, text in files.items():
        temporary = into / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, into / name)  # a reader never sees half a file
    print(f"wrote {', '.join(f'{into}/{name}' for name in files)} for node {args.node}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("ha-config", help="write one node's keepalived.conf and conntrackd.conf")
    config.add_argument("policy")
    config.add_argument("--node", required=True, help="this node's name in the policy's ha section")
    config.add_argument("--into", required=True, help="directory for the files, conntrackd's socket and lock")
    config.add_argument("--gatewayd-command", help="how keepalived calls gatewayd (default: this Python's -m gatewayd)")
    config.set_defaults(func=run_config)
