"""Benchmark the HA pair's failover, from one run in lab namespaces (root; real keepalived and conntrackd).

The two-gateway office (gatewayd/lab/ha_pair.py). For each VRRP advert interval: both
nodes start (gw-a master), DOWNLOADS long TCP downloads and a steady UDP call (one
datagram every 10 ms, echoed) run through gw-a, and gw-a dies (links down, SIGKILL to
gatewayd, conntrackd and keepalived) KILL_AFTER seconds in.

Prints per interval: the failover gap (the longest interval without an echo seen by the
steady probe; target <= 3 s at a 1 s advert), TCP connections reset (target 0 of N) and
office flows whose ct mark (verdict and class) differs on the new master (target 0).
Then gw-a boots again (it returns as backup, no preemption) and the longest gap after
its return is printed (target: no second outage).

Where the gap goes, from the same run (wall-clock times from the kill): VRRP detection
(until keepalived runs gw-b's master notify; RFC 5798 bounds it by 3 adverts + skew,
(256 - priority)/256 of an advert, minus the time since gw-a's last advert), forwarding
back (the probe's first echo: conntrackd's early commit from the LAN instance's notify,
gratuitous ARP), and `gatewayd ha-notify master` (Python) releasing the hold for new
flows. Not measured here: the state-sync cost at 1,000 new flows per second.

    python bench/ha.py [--adverts 1s,200ms] [--downloads 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab.ha_pair import NODES, HaPairLab, fail_over
from gatewayd.lab.topology import DEFAULT_HOSTS
from gatewayd.policy.ha import parse_advert_interval

SECONDS = 45.0  # long enough for gw-a to boot again and rejoin as backup while the flows run
KILL_AFTER = 8.0
VRRP_ADVERTS_MISSED = 3  # RFC 5798: Master_Down_Interval = 3 * advert + skew


def one_interval(advert: str, downloads: int) -> str:
    lab = HaPairLab(hosts={key: DEFAULT_HOSTS[key] for key in ("sales1", "sales2")})
    with lab:
        policy = lab.write_policy(advert_interval=advert)
        lab.start_node("gw-a", policy)
        lab.wait_for_master("gw-a")
        lab.start_node("gw-b", policy)
        lab.wait_for_backup_hold("gw-b")
        result = fail_over(lab, downloads, SECONDS, KILL_AFTER, bring_back=policy)
        takeover = lab.notify_times("gw-b", "master")
    probe = result.probe
    other_ends = len(result.outcomes) - result.outcomes.count("completed") - result.resets
    advert_seconds = parse_advert_interval(advert) / 100
    backup_priority = next(node.priority for node in NODES if node.name == "gw-b")
    master_down = VRRP_ADVERTS_MISSED * advert_seconds + (256 - backup_priority) / 256 * advert_seconds

    def since_kill(wall_clock: float | None) -> str:
        return "?" if wall_clock is None else f"{wall_clock - result.killed_at:.2f} s"

    failback = "?" if result.failback_gap is None else f"{result.failback_gap:.2f} s"
    gap_end, gap = result.failover_gap
    return (f"advert {advert:>6}: failover gap {gap:.2f} s "
            f"({probe.sent - probe.received} of {probe.sent} probes lost)   "
            f"TCP resets {result.resets} of {downloads}   other ends {other_ends}   "
            f"verdicts changed {result.verdicts_changed} of {len(result.marks_before)} flows   "
            f"gap after the old master's return {failback}\n"
            f"    from the kill: VRRP detection {since_kill(takeover.get('started'))} "
            f"(bound {master_down:.2f} s: {VRRP_ADVERTS_MISSED} adverts + skew at priority {backup_priority})   "
            f"forwarding back {since_kill(gap_end)}   "
            f"ha-notify commit {since_kill(takeover.get('commit'))}, "
            f"hold released {since_kill(takeover.get('release'))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adverts", default="1s,200ms", help="VRRP advert intervals to try, comma-separated")
    parser.add_argument("--downloads", type=int, default=5)
    args = parser.parse_args()
    for advert in args.adverts.split(","):
        print(one_interval(advert.strip(), args.downloads), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
