"""`gatewayd confirm`: keep the change a pending `gatewayd apply --confirm-within` made."""

from __future__ import annotations

import argparse
import sys

from gatewayd.cli.control_client import (
    STATUS_TIMEOUT_SECONDS,
    add_socket_option,
    request_or_report,
)


def run_confirm(args: argparse.Namespace) -> int:
    answer = request_or_report(args, {"command": "confirm"}, STATUS_TIMEOUT_SECONDS)
    if answer is None:
        return 1
    if answer.get("ok"):
        print(f"confirmed: generation {answer['generation']} is kept")
        return 0
    print(f"gatewayd confirm: {answer.get('error')}", file=sys.stderr)
    return 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    confirm = commands.add_parser("confirm", help="keep the change a pending `apply --confirm-within` made")
    add_socket_option(confirm)
    confirm.set_defaults(func=run_confirm)
