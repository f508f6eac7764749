"""`gatewayd apply NEW [--confirm-within S]`: switch the running daemon to a new policy, with health checks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gatewayd.cli.control_client import add_socket_option, request_or_report
from gatewayd.control.confirm_window import confirm_window_argument

APPLY_TIMEOUT_SECONDS = 60.0  # apply + health checks


def run_apply(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"command": "apply", "policy": str(Path(args.policy).resolve())}
    if args.confirm_within is not None:
        message["confirm_within"] = args.confirm_within
    answer = request_or_report(args, message, APPLY_TIMEOUT_SECONDS)
    if answer is None:
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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = commands.add_parser("apply", help="switch the running daemon to a new policy, with health checks")
    apply.add_argument("policy")
    apply.add_argument("--confirm-within", type=confirm_window_argument, metavar="SECONDS",
                       help="revert by itself unless `gatewayd confirm` arrives in time")
    apply.add_argument("--json", action="store_true")
    add_socket_option(apply)
    apply.set_defaults(func=run_apply)
