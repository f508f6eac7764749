"""What `gatewayd status`, `apply` and `confirm` share: the --socket option and one request to the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gatewayd.control.protocol import DEFAULT_SOCKET, ControlError, request

STATUS_TIMEOUT_SECONDS = 10.0


def add_socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=str(DEFAULT_SOCKET),
                        help=f"the daemon's control socket (default: {DEFAULT_SOCKET})")


def request_or_report(args: argparse.Namespace, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """The daemon's answer, or None after saying on stderr why there is none."""
    try:
        return request(Path(args.socket), message, timeout)
    except ControlError as exc:
        print(f"gatewayd {args.command}: {exc}", file=sys.stderr)
        return None
