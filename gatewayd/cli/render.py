"""`gatewayd render POLICY`: the nft ruleset and tc trees a policy compiles to; no root, no kernel."""

from __future__ import annotations

import argparse
import sys

from gatewayd.policy.loader import load_policy_or_report


def run(args: argparse.Namespace) -> int:
    from gatewayd.compile.plan import compile_plan

    policy = load_policy_or_report(args.policy, args.catalog)
    if policy is None:
        return 1
    sys.stdout.write(compile_plan(policy).render())
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = commands.add_parser("render", help="print the nft ruleset and tc trees a policy compiles to")
    render.add_argument("policy")
    render.set_defaults(func=run)
