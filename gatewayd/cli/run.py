"""`gatewayd run --policy POLICY`: the daemon in the foreground, key=value logs on stderr (root)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from gatewayd.daemon.logsetup import setup_logging
    from gatewayd.daemon.reactor import Daemon

    setup_logging(args.log_level)
    return Daemon(args.policy, args.catalog, Path(args.state_dir), Path(args.control_socket),
                  Path(args.ha_dir), measure_queue_wait=args.measure_queue_wait).run()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daemon = commands.add_parser("run", help="run the daemon in the foreground (root)")
    daemon.add_argument("--policy", required=True)
    daemon.add_argument("--state-dir", default="/var/lib/gatewayd",
                        help="where the last-known-good policy is kept (default: %(default)s)")
    daemon.add_argument("--control-socket", default="/run/gatewayd/control.sock",
                        help="where `gatewayd status/apply/confirm` reach the daemon (default: %(default)s)")
    daemon.add_argument("--ha-dir", default="/run/gatewayd/ha",
                        help="the HA pair's runtime directory (`gatewayd ha-config --into`), where "
                             "`gatewayd ha-notify` records this node's state (default: %(default)s)")
    daemon.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    daemon.add_argument("--measure-queue-wait", action="store_true",
                        help="turn on the kernel's receive timestamps (for the whole box: one clock read per "
                             "received packet) and fill gatewayd_classifier_queue_wait_seconds, the time from "
                             "receiving a queued packet to reading it (benchmarks)")
    daemon.set_defaults(func=run)
