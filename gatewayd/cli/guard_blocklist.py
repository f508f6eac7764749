"""`gatewayd status` without a daemon: what the LAN guard holds right now, read from the kernel.

Reads the kernel directly (root or CAP_NET_ADMIN), so it also works while the
daemon is stopped but its fail-open rules are still in place.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from gatewayd.apply.guard_state import BlockedHost, read_blocklist
from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.compile.kernel_names import GUARD_TABLE_NAME as TABLE_NAME
from gatewayd.compile.kernel_names import NETDEV


def guard_loaded(kernel: NftKernel) -> bool:
    try:
        kernel.query(f"list table {NETDEV} {TABLE_NAME}")
        return True
    except NftError:
        return False


def format_blocklist(hosts: list[BlockedHost]) -> str:
    if not hosts:
        return "blocklist: empty\n"
    width = max(len(h.address) for h in hosts)
    lines = [f"blocklist: {len(hosts)} host(s)", f"{'ADDRESS'.ljust(width)}  {'REASON':10}  EXPIRES_IN"]
    lines.extend(f"{h.address.ljust(width)}  {h.reason:10}  {h.expires_seconds}s"
                 for h in sorted(hosts, key=lambda h: (":" in h.address, h.address)))
    return "\n".join(lines) + "\n"


def cmd_status(_args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        kernel = NftKernel()
    except Exception as exc:  # libnftables missing or unusable: say so, no traceback
        print(f"gatewayd status: cannot open nftables: {exc}", file=sys.stderr)
        return 1
    if not guard_loaded(kernel):
        print("gatewayd status: no LAN guard loaded (daemon not running, no 'security' section, "
              "or not root)", file=sys.stderr)
        return 1
    out.write(format_blocklist(read_blocklist(kernel)))
    return 0


def main() -> int:
    return cmd_status(argparse.Namespace())


if __name__ == "__main__":
    sys.exit(main())
