"""gatewayd command line: check, render, run."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from gatewayd.control import commands as control_commands
from gatewayd.explain import command as explain_command
from gatewayd.policy.loader import load_policy_or_report
from gatewayd.policy.model import Policy


def load_or_report(args: argparse.Namespace) -> Policy | None:
    """The policy, or None after printing every error as FILE:LINE:COL: message."""
    return load_policy_or_report(args.policy, args.catalog)


def cmd_check(args: argparse.Namespace) -> int:
    policy = load_or_report(args)
    if policy is None:
        return 1
    print(f"{args.policy}: OK ({len(policy.groups)} groups, {len(policy.rules)} rules, "
          f"{len(policy.classes)} classes, {len(policy.applications)} apps)")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from gatewayd.compile.plan import compile_plan

    policy = load_or_report(args)
    if policy is None:
        return 1
    sys.stdout.write(compile_plan(policy).render())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gatewayd.daemon.logsetup import setup_logging
    from gatewayd.daemon.reactor import Daemon

    setup_logging(args.log_level)
    return Daemon(args.policy, args.catalog, Path(args.state_dir), Path(args.control_socket)).run()


def installed_version() -> str:
    """gatewayd's version as installed (pip, the Debian package), for `gatewayd --version`."""
    try:
        return metadata.version("gatewayd")
    except metadata.PackageNotFoundError:  # a source tree run without installing it
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayd", description="Office gateway: app classification, "
                                     "blocking and QoS through nftables and tc.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    parser.add_argument("--catalog", help="application catalog to use instead of the built-in one")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate a policy file; errors as FILE:LINE:COL")
    check.add_argument("policy")
    check.set_defaults(func=cmd_check)

    render = commands.add_parser("render", help="print the nft ruleset and tc trees a policy compiles to")
    render.add_argument("policy")
    render.set_defaults(func=cmd_render)

    explain_command.add_parser(commands)
    explain_command.add_replay_parser(commands)

    run = commands.add_parser("run", help="run the daemon in the foreground (root)")
    run.add_argument("--policy", required=True)
    run.add_argument("--state-dir", default="/var/lib/gatewayd",
                     help="where the last-known-good policy is kept (default: %(default)s)")
    run.add_argument("--control-socket", default="/run/gatewayd/control.sock",
                     help="where `gatewayd status/apply/confirm` reach the daemon (default: %(default)s)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    from gatewayd.cli_classify import register as register_classify

    register_classify(commands)

    control_commands.add_parsers(commands)  # status (blocklist included), apply, confirm
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
