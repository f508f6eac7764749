"""What each periodic piece of the verdict loop's tick costs, against a running daemon's tables (root, lab).

The loop (daemon/reactor.py) serves queued packets; between reads it also does
periodic work, and a queued packet waits while it runs. This starts the real
daemon with policies/office.yaml (its LAN guard on) plus per-host limits on the
hr group (so the host-class watch runs), then times, in the gateway's
namespace, each kernel read the tick makes, with how often the tick makes it:
  * the hosts waiting for classes (daemon/host_classes.py, every 0.1 s), through
    libnftables (the read before this change) and by a netlink dump of the sets;
  * the guard's blocklist (daemon/blocklist_watch.py, every 1 s), the same two ways;
  * the queue line of /proc/net/netfilter/nfnetlink_queue (undelivered ids, at most
    every 0.05 s while packets come);
  * on an HA master only, the recently blocked flows it sends the backup (daemon/ha_state_sync.py,
    every 1 s, libnftables; with the blocklist read the same way when the guard has one).
Printed per read: median, p99 and max microseconds over --calls calls, and the
loop time it costs per second (median x calls per second).

    python bench/loop_work.py [--calls 500]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gatewayd.lab.gateway import GatewayDaemon  # noqa: E402
from gatewayd.lab.office import OFFICE_HOSTS  # noqa: E402
from gatewayd.lab.topology import GATEWAY, Lab  # noqa: E402

OFFICE_POLICY = ROOT / "policies" / "office.yaml"

TIMER = r'''
import json, sys, time
from gatewayd.apply.guard_state import blocklist_by_netlink, read_blocklist
from gatewayd.apply.host_sets import waiting_hosts, waiting_hosts_by_netlink
from gatewayd.apply.nft import NftKernel
from gatewayd.apply.set_dump_netlink import SetReader
from gatewayd.daemon.ha_state_sync import RECENT_BLOCKED_SETS
from gatewayd.metrics.nfqueue import read_queue_line

calls, queue_num = int(sys.argv[1]), int(sys.argv[2])
kernel, reader = NftKernel(), SetReader()
reads = {
    "waiting hosts, libnftables": lambda: waiting_hosts(kernel),
    "waiting hosts, netlink dump": lambda: waiting_hosts_by_netlink(reader),
    "blocklist, libnftables": lambda: read_blocklist(kernel),
    "blocklist, netlink dump": lambda: blocklist_by_netlink(reader),
    "nfqueue /proc line": lambda: read_queue_line(queue_num),
    "HA master: blocked flows, nft": lambda: [kernel.recent_blocked_flows(n) for n in RECENT_BLOCKED_SETS.values()],
}
result = {}
for _ in range(2):  # alternate: the other helpers' load moves between the two passes
    for name, read in reads.items():
        for _ in range(calls // 2):
            begin = time.perf_counter()
            read()
            result.setdefault(name, []).append(time.perf_counter() - begin)
print(json.dumps(result))
'''

EVERY_SECONDS = {"waiting hosts": 0.1, "blocklist": 1.0, "nfqueue /proc line": 0.05, "HA master": 1.0}


def policy_with_host_limits(tmp: Path) -> Path:
    text = OFFICE_POLICY.read_text()
    text, n = re.subn(r"(?m)^(    members: \[192\.0\.2\.144/28\]\n)",
                      r"\1    per_host: { download: { limit: 2mbit }, upload: { limit: 1mbit } }\n", text)
    assert n == 1, "office.yaml's hr group moved; update the benchmark"
    path = tmp / "office-host-limits.yaml"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    import json

    with tempfile.TemporaryDirectory() as tmp, Lab(hosts=OFFICE_HOSTS) as lab:
        policy = policy_with_host_limits(Path(tmp))
        queue_num = int(re.search(r"(?m)^\s+queue_num:\s*(\d+)", policy.read_text()).group(1)) \
            if re.search(r"(?m)^\s+queue_num:\s*(\d+)", policy.read_text()) else 0
        daemon = GatewayDaemon(lab, policy, log_name="loop-work.log").start()
        try:
            out = lab.exec_python(GATEWAY, TIMER, [str(args.calls), str(queue_num)], timeout=300)
        finally:
            daemon.stop()
    result: dict[str, list[float]] = json.loads(out.stdout)
    print(f"verdict loop tick work, office.yaml (guard on) + per-host limits on hr, {args.calls} calls each, "
          "in the gateway namespace with the daemon's tables:")
    for name, seconds in result.items():
        ordered = sorted(seconds)
        median, p99, worst = (ordered[len(ordered) // 2], ordered[int(0.99 * (len(ordered) - 1))], ordered[-1])
        every = next(v for k, v in EVERY_SECONDS.items() if name.startswith(k))
        print(f"  {name:30s} median {median * 1e6:7.1f} us, p99 {p99 * 1e6:7.1f} us, max {worst * 1e6:7.1f} us; "
              f"every {every:g} s -> {median / every * 1e3:6.3f} ms of loop per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
