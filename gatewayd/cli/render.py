"""`gatewayd render POLICY`: the nft ruleset and tc trees a policy compiles to; no root, no kernel."""

from __future__ import annotations

import argparse
import sys

from gatewayd.policy.loader import load_policy_or_report


def run(args: argparse.Namespace) -> int:
    from gatewayd.compile.checked import compile_or_report

    policy = load_policy_or_report(args.policy, args.catalog)
    compiled = compile_or_report(policy) if policy is not None else None
    if compiled is None:
        return 1
    sys.stdout.write(compiled[1])
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = commands.add_parser("render", help="print the nft ruleset and tc trees a policy compiles to")
    render.add_argument("policy")
    render.set_defaults(func=run)
