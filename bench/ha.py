"""Benchmark the HA pair's failover, from one run in lab namespaces (root; real keepalived and conntrackd).

The two-gateway office (gatewayd/lab/ha_pair.py). For each VRRP advert interval: both
nodes start (gw-a master), DOWNLOADS long TCP downloads and a steady UDP call (one
datagram every 10 ms, echoed) run through gw-a, and gw-a dies (links down, SIGKILL to
gatewayd, conntrackd and keepalived) KILL_AFTER seconds in.

Prints per interval: the failover gap (the longest interval without an echo seen by the
steady probe; target <= 3 s at a 1 s advert), TCP connections reset (target 0 of N) and
office flows whose ct mark (verdict and class) differs on the new master (target 0).
Not measured here yet: the state-sync cost at 1,000 new flows per second.

    python bench/ha.py [--adverts 1s,200ms] [--downloads 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab.ha_pair import HaPairLab, fail_over
from gatewayd.lab.topology import DEFAULT_HOSTS

SECONDS = 30.0
KILL_AFTER = 8.0


def one_interval(advert: str, downloads: int) -> str:
    lab = HaPairLab(hosts={key: DEFAULT_HOSTS[key] for key in ("sales1", "sales2")})
    with lab:
        policy = lab.write_policy(advert_interval=advert)
        lab.start_node("gw-a", policy)
        lab.wait_for_master("gw-a")
        lab.start_node("gw-b", policy)
        lab.wait_for_backup_hold("gw-b")
        result = fail_over(lab, downloads, SECONDS, KILL_AFTER)
    probe = result.probe
    other_ends = len(result.outcomes) - result.outcomes.count("completed") - result.resets
    return (f"advert {advert:>6}: failover gap {probe.longest_gap:.2f} s "
            f"({probe.sent - probe.received} of {probe.sent} probes lost)   "
            f"TCP resets {result.resets} of {downloads}   other ends {other_ends}   "
            f"verdicts changed {result.verdicts_changed} of {len(result.marks_before)} flows")


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
