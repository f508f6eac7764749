"""Benchmark WAN failover and balancing, from one run in lab namespaces (root).

The two-line office (gatewayd/lab/multiwan.py: two ISP namespaces between the
gateway and the internet, weights 2:1, probes at their defaults: every 500 ms,
down after 3 silent rounds). Each failover round:

  1. long-lived connections are opened (balanced over both lines) and pinged
     every 0.2 s until the end of the round;
  2. a client starts trying a new connection every 50 ms to an address pinned
     to line one (then line two once one is down);
  3. ISP one silently drops everything (its line to the gateway stays up);
  4. failover time = from that moment to the first new connection answered
     over line two; then ISP one is restored and the failback awaited.

Prints: failover time (median, min, max of the rounds), connections on the
healthy line wrongly ended (target 0) and on the failed line ended, and the
balance accuracy: the share of each line over many new connections against
its weight share.

Then the branch office (gatewayd/lab/branch.py: head office and branch
gateways, a WireGuard tunnel between them over an emulated Internet, the
branch's 20 Mbit/s line a modem with a deep buffer): ERP round trips from a
branch host to the head-office server inside the tunnel, idle and while bulk
uploads saturate both the tunnel and the line, without gatewayd and with it.

    python bench/multiwan.py [--rounds 5] [--connections 3000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab.branch import BRANCH_GATEWAY, BranchLab
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.multiwan import LINKS, MultiWanLab
from gatewayd.lab.topology import GATEWAY

ONE, TWO = (link.gateway_address for link in LINKS)
HELD = 20
TUNNEL_LOAD_SECONDS = 12


def failover_round(lab: MultiWanLab, daemon: GatewayDaemon) -> tuple[float | None, int, int, int, int]:
    """(failover seconds, held on two, wrongly ended on two, held on one, ended on one)."""
    held = lab.hold_connections("sales2", HELD, seconds=6)
    offset = daemon.log_size()
    watch = lab.wait_for_peer("sales1", TWO, seconds=10)
    cut_at = time.monotonic()
    lab.cut_upstream("isp1")
    try:
        answered_at = watch.answered_at()
        result = held.result()
    finally:
        lab.restore_upstream("isp1")
    daemon.wait_for_log("event=link_up link=one", offset, timeout=15)
    on_two = {i for i, peer in enumerate(held.opened) if peer == TWO}
    dead = {int(i) for i in result["dead"]}
    return (answered_at - cut_at if answered_at is not None else None, len(on_two), len(dead & on_two),
            HELD - len(on_two), len(dead - on_two))


def tunnel_rtts() -> dict[str, dict[str, float]]:
    lab = BranchLab()
    with lab:
        lab.start_servers()
        figures = {"idle, without gatewayd": lab.erp_rtt(100),
                   "under load, without gatewayd": lab.erp_rtt_under_load(TUNNEL_LOAD_SECONDS, rounds=200)}
        head_office = GatewayDaemon(lab, lab.policy(GATEWAY)).start()
        branch = GatewayDaemon(lab.branch_gateway(), lab.policy(BRANCH_GATEWAY)).start()
        try:
            figures["idle, with gatewayd"] = lab.erp_rtt(100)
            figures["under load, with gatewayd"] = lab.erp_rtt_under_load(TUNNEL_LOAD_SECONDS, rounds=200)
        finally:
            branch.stop()
            head_office.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=3000)
    args = parser.parse_args()
    lab = MultiWanLab()
    with lab:
        lab.start_echo()
        daemon = GatewayDaemon(lab, lab.write_policy(one_weight=2)).start()
        try:
            counts = lab.count_links("sales1", args.connections, timeout=600)
            rounds = []
            for _ in range(args.rounds):
                rounds.append(failover_round(lab, daemon))
                time.sleep(1.0)
        finally:
            daemon.stop()
    times = [r[0] for r in rounds if r[0] is not None]
    print(f"failover (upstream loss -> first new connection over the other line), {len(rounds)} rounds:")
    if times:
        print(f"  median {statistics.median(times):.2f} s   min {min(times):.2f} s   max {max(times):.2f} s"
              f"   ({len(rounds) - len(times)} rounds without failover)")
    else:
        print("  no round failed over")
    print(f"connections on the healthy line wrongly ended: {sum(r[2] for r in rounds)} of {sum(r[1] for r in rounds)}"
          " (target 0)")
    print(f"connections on the failed line ended: {sum(r[4] for r in rounds)} of {sum(r[3] for r in rounds)}")
    total = sum(counts.values())
    print(f"balance over {total} new connections (weights 2:1):")
    for name, address, weight_share in (("one", ONE, 2 / 3), ("two", TWO, 1 / 3)):
        share = counts.get(address, 0) / total
        print(f"  {name}: {share:.1%} (weight share {weight_share:.1%}, "
              f"off by {abs(share - weight_share) / weight_share:.1%} of it)")
    failed = counts.get("failed", 0)
    print(f"  failed connections: {failed}")
    print("ERP round trip inside the branch tunnel (bulk saturating the tunnel and the 20 Mbit/s line):")
    for situation, rtt in tunnel_rtts().items():
        print(f"  {situation:<30} median {rtt['median_ms']:7.2f} ms   p90 {rtt['p90_ms']:7.2f} ms"
              f"   lost {rtt['lost']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
