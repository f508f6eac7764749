"""Reload a big policy under traffic, from one run in lab namespaces (root).

The policy is office.yaml plus 5,000 hosts in groups and an app of 100,000
blocked domains (blocked by a rule). While 10 long downloads run through the
gateway, the policy file changes and the daemon gets SIGHUP, several times.
Printed: time from SIGHUP to applied (target < 2 s), established connections
lost (target 0), and the daemon's memory: RSS after start, peak RSS of the
start (the first build) and peak RSS through the reloads (target <= 100 MiB);
with the same policy, what the classifier's flow table full at max_flows adds
(gatewayd/lab/memory_figures.py): RSS with the table full, bytes per tracked flow.

    python bench/reload.py [--reloads 3] [--hosts 5000] [--domains 100000]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab.big_policy import big_policy
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.long_flows import LongDownloads
from gatewayd.lab.memory_figures import clear_peak_rss, flow_table_figures, peak_rss_kib
from gatewayd.lab.office import OFFICE_HOSTS
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--domains", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Lab(hosts=OFFICE_HOSTS) as lab:
        policy = Path(tmp) / "big.yaml"
        policy.write_text(big_policy(args.hosts, args.domains, 0))
        daemon = GatewayDaemon(lab, policy, log_name="bench-reload.log").start(timeout=120)
        assert daemon.process is not None
        time.sleep(1)
        start_rss, start_peak = daemon.memory_kib() / 1024, peak_rss_kib(daemon.process.pid) / 1024
        clear_peak_rss(daemon.process.pid)  # VmHWM from here: the reloads' peak
        sites = [DEFAULT_SITES[key] for key in ("dingtalk", "erp", "crm", "news", "bilibili")]
        flows = LongDownloads(lab, "finance", [(s.ipv4, s.hostname) for s in sites] * 2,
                              seconds=4 + 6 * args.reloads)
        time.sleep(2)
        seconds_to_applied, reported, steps = [], [], []
        try:
            for variant in range(1, args.reloads + 1):
                policy.write_text(big_policy(args.hosts, args.domains, variant))
                offset = daemon.log_size()
                sent = time.monotonic()
                daemon.signal(signal.SIGHUP)
                log = daemon.wait_for_log("event=reloaded", offset, timeout=60)
                seconds_to_applied.append(time.monotonic() - sent)
                line = re.search(r"event=reloaded generation=\d+ seconds=([\d.]+)(.*)", log)
                reported.append(float(line.group(1)))
                steps.append(line.group(2).strip())
                time.sleep(4)
            results = flows.results()
            rss = peak_rss_kib(daemon.process.pid) / 1024
        finally:
            daemon.stop()
        table = flow_table_figures(lab, policy)
    lost = [r for r in results if r.outcome != "completed"]
    print(f"reload of a policy with {args.hosts} hosts in groups and {args.domains} blocked domains "
          f"({args.reloads} reloads under {len(results)} long downloads):")
    print(f"  SIGHUP -> applied: median {statistics.median(seconds_to_applied):.2f} s, "
          f"max {max(seconds_to_applied):.2f} s (daemon's own measure: median {statistics.median(reported):.2f} s)"
          f"  (target < 2 s)")
    print(f"  where the time goes (last reload): {steps[-1]}")
    print(f"  established connections lost: {len(lost)} of {len(results)}  (target 0)"
          + (f": {[(r.host, r.outcome) for r in lost]}" if lost else ""))
    print(f"  daemon RSS after start: {start_rss:.0f} MiB (peak while starting {start_peak:.0f} MiB); "
          f"peak RSS through the reloads: {rss:.0f} MiB  (target <= 100 MiB)")
    print(f"  classifier flow table full ({table.flows} of max_flows {table.max_flows}, same policy, in a process "
          f"of its own): +{table.table_kib / 1024:.1f} MiB RSS, {table.bytes_per_flow():.0f} bytes per tracked flow "
          f"({table.heap_bytes_per_flow():.0f} bytes of Python heap); daemon RSS with the table full ~ "
          f"{start_rss + table.table_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
