"""`gatewayd ha-notify master|backup|fault`: keepalived's notify for the pair (apply/ha_takeover.py).

keepalived.conf (compile/ha.py) calls it with this node's conntrackd config and the
ports to hold; it prints one line per step and exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatewayd.compile.ha import NOTIFY_STATES


def run_notify(args: argparse.Namespace) -> int:
    from gatewayd.apply.ha_state import write_state
    from gatewayd.apply.ha_takeover import Takeover
    from gatewayd.apply.nft import NftKernel

    held = tuple(name for name in args.hold.split(",") if name)
    try:  # first, so `gatewayd status` tells the state even while the steps below run
        write_state(Path(args.conntrackd_config).parent, args.state)
    except OSError as error:
        print(f"node={args.node} state={args.state} step=record_state ok=false error={error}", file=sys.stderr)
    results = Takeover(NftKernel(), args.conntrackd_config, held).notify(args.state)
    for result in results:
        print(f"node={args.node} state={args.state} step={result.step} ok={str(result.ok).lower()} "
              f"seconds={result.seconds:.3f} at={result.ended_at:.3f}", file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = commands.add_parser("ha-notify", help="keepalived's notify: hold, commit conntrackd's states, release")
    notify.add_argument("state", choices=NOTIFY_STATES)
    notify.add_argument("--node", required=True, help="this node's name in the policy's ha section")
    notify.add_argument("--conntrackd-config", required=True)
    notify.add_argument("--hold", required=True, help="comma-separated ports to hold (LAN ports and WAN)")
    notify.set_defaults(func=run_notify)
