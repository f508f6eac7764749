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
flows.

Then the state-sync cost (gatewayd/lab/ha_sync_load.py): new UDP flows at --sync-rate a second
through the master for --sync-seconds (one in ten to a blocked, DNS-learned app on a port of its
own: a new recently-blocked entry each), and the bytes per second the master sends on the sync
link, conntrackd's (UDP 3780) and gatewayd's state sync (UDP 3782), IP and UDP headers included.
The port-scan guard is left out there: the load itself would look like a scan.

    python bench/ha.py [--adverts 1s,200ms] [--downloads 5] [--sync-rate 1000] [--sync-seconds 10]
                       [--sync-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab.ha_pair import NODES, HaPairLab, fail_over
from gatewayd.lab.ha_sync_load import BLOCKED_SITE, measure_sync_cost, write_sync_policy
from gatewayd.lab.topology import DEFAULT_HOSTS
from gatewayd.lab.traffic import dns_query
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
    v6 = result.probe_v6
    v6_gap = "?" if v6 is None else f"{v6.longest_gap:.2f} s ({v6.sent - v6.received} of {v6.sent} lost)"
    return (f"advert {advert:>6}: failover gap {gap:.2f} s "
            f"({probe.sent - probe.received} of {probe.sent} probes lost), IPv6 {v6_gap}   "
            f"TCP resets {result.resets} of {downloads}   other ends {other_ends}   "
            f"verdicts changed {result.verdicts_changed} of {len(result.marks_before)} flows   "
            f"gap after the old master's return {failback}\n"
            f"    from the kill: VRRP detection {since_kill(takeover.get('started'))} "
            f"(bound {master_down:.2f} s: {VRRP_ADVERTS_MISSED} adverts + skew at priority {backup_priority})   "
            f"forwarding back {since_kill(gap_end)}   "
            f"ha-notify commit {since_kill(takeover.get('commit'))}, "
            f"hold released {since_kill(takeover.get('release'))}")


def sync_cost(rate: int, seconds: float) -> str:
    lab = HaPairLab(hosts={key: DEFAULT_HOSTS[key] for key in ("sales1", "sales2")})
    with lab:
        policy = write_sync_policy(lab, scan_guard=False)
        lab.start_node("gw-a", policy)
        lab.wait_for_master("gw-a")
        lab.start_node("gw-b", policy)
        lab.wait_for_backup_hold("gw-b")
        dns_query(lab, "sales1", BLOCKED_SITE.hostname)  # the blocked app's address is learned
        cost = measure_sync_cost(lab, "sales1", rate, seconds)
    return (f"state sync at {cost.flows_per_second:.0f} new flows/s ({cost.flows} flows in {cost.seconds:.1f} s): "
            f"conntrackd {cost.conntrackd_bytes_per_second / 1000:.1f} kB/s, "
            f"gatewayd {cost.gatewayd_bytes_per_second / 1000:.1f} kB/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adverts", default="1s,200ms", help="VRRP advert intervals to try, comma-separated")
    parser.add_argument("--downloads", type=int, default=5)
    parser.add_argument("--sync-rate", type=int, default=1000, help="new flows per second for the sync cost")
    parser.add_argument("--sync-seconds", type=float, default=10.0)
    parser.add_argument("--sync-only", action="store_true", help="measure the state-sync cost only")
    args = parser.parse_args()
    if not args.sync_only:
        for advert in args.adverts.split(","):
            print(one_interval(advert.strip(), args.downloads), flush=True)
    print(sync_cost(args.sync_rate, args.sync_seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
