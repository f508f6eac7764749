"""`gatewayd check POLICY`: validate a policy file; every error as FILE:LINE:COL: message."""

from __future__ import annotations

import argparse

from gatewayd.policy.loader import load_policy_or_report


def run(args: argparse.Namespace) -> int:
    from gatewayd.compile.checked import compile_or_report

    policy = load_policy_or_report(args.policy, args.catalog)
    if policy is None or compile_or_report(policy) is None:  # the same compile as render
        return 1
    print(f"{args.policy}: OK ({len(policy.groups)} groups, {len(policy.rules)} rules, "
          f"{len(policy.classes)} classes, {len(policy.applications)} apps)")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser("check", help="validate a policy file; errors as FILE:LINE:COL")
    check.add_argument("policy")
    check.set_defaults(func=run)
