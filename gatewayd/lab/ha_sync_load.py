"""The HA pair's state sync under load: a policy with something to sync, new flows at a set rate,
and the bytes each sync sends over the sync link (bench/ha.py, tests/integration/test_ha_state_sync_live.py).

The policy is lab/ha_pair.py's with a DNS-learned app that is blocked (bilibili, from the
catalog), one that is allowed (crm) and the guard's port-scan blocklist, so every set
gatewayd syncs has entries: learned addresses, recently blocked flows, blocklisted hosts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gatewayd.lab.ha_pair import HaPairLab
from gatewayd.lab.services import DEFAULT_SITES

BLOCKED_SITE, ALLOWED_SITE = DEFAULT_SITES["bilibili"], DEFAULT_SITES["crm"]
SCAN_PORTS = 20  # the guard's threshold for a port scan
BLOCK_SECONDS = 600

POLICY_APPS = "  crm: { name: Company CRM, category: erp-crm-oa, domains: [crm.example.com] }\n"
POLICY_RULES = "  - name: no video\n    apps: [bilibili]\n    action: block\n"
POLICY_SECURITY = f"""security:
  port_scan:
    ports: {SCAN_PORTS}
    hosts: 200
    window: 10s
    block_for: {BLOCK_SECONDS}s
"""

# Byte counters of what the master sends on the sync link: conntrackd (UDP 3780, compile/ha.py)
# and gatewayd's state sync (UDP 3782, daemon/ha_state_sync.py). IP and UDP headers included.
MEASURE_TABLE = """table inet ha_sync_cost {
  counter conntrackd { }
  counter gatewayd { }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "sync0" udp dport 3780 counter name conntrackd
    oifname "sync0" udp dport 3782 counter name gatewayd
  }
}
"""

# New UDP flows at a steady rate, each from a fresh socket (a new source port, so a new conntrack
# entry): most to a lab echo server, every `blocked_every`-th to the blocked app's address on a
# port of its own (a new recently-blocked entry each). Bounded by `seconds`.
FLOWS_SCRIPT = r"""
import json, socket, sys, time
p = json.loads(sys.argv[1])
started = time.monotonic()
sent = 0
while True:
    now = time.monotonic()
    if now - started >= p["seconds"]:
        break
    due = int((now - started) * p["rate"])
    while sent < due:
        blocked = sent % p["blocked_every"] == 0
        address = p["blocked"] if blocked else p["allowed"]
        port = p["blocked_port"] + (sent // p["blocked_every"]) % 1000 if blocked else p["allowed_port"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"flow", (address, port))
            except OSError:
                pass
        sent += 1
    time.sleep(0.002)
print(json.dumps({"flows": sent, "seconds": time.monotonic() - started}), flush=True)
"""


def write_sync_policy(lab: HaPairLab, advert_interval: str = "1s", scan_guard: bool = True) -> Path:
    """`scan_guard=False` leaves the port-scan guard out: the load's blocked flows, each to a port of
    its own, would otherwise blocklist their client after SCAN_PORTS of them."""
    policy = lab.write_policy(advert_interval=advert_interval)
    text = policy.read_text().replace("applications:\n", "applications:\n" + POLICY_APPS, 1)
    text = text.replace("rules:\n", "rules:\n" + POLICY_RULES, 1)
    policy.write_text(text + (POLICY_SECURITY if scan_guard else ""))
    return policy


@dataclass(frozen=True)
class SyncCost:
    flows: int
    seconds: float
    conntrackd_bytes: int
    gatewayd_bytes: int

    @property
    def flows_per_second(self) -> float:
        return self.flows / self.seconds

    @property
    def conntrackd_bytes_per_second(self) -> float:
        return self.conntrackd_bytes / self.seconds

    @property
    def gatewayd_bytes_per_second(self) -> float:
        return self.gatewayd_bytes / self.seconds


def sent_bytes(lab: HaPairLab, node: str) -> dict[str, int]:
    out = lab.run(lab.node(node).ns_key, ["nft", "list", "table", "inet", "ha_sync_cost"]).stdout
    return {name: int(count) for name, count in re.findall(r"counter (\w+) \{\s*packets \d+ bytes (\d+)", out)}


def measure_sync_cost(lab: HaPairLab, client: str, rate: int, seconds: float, blocked_every: int = 10) -> SyncCost:
    """New flows from `client` through the master gw-a at `rate` a second for `seconds`; what gw-a sent
    on the sync link meanwhile. The blocked app's address must already be learned (a lookup first)."""
    lab.run(lab.node("gw-a").ns_key, ["nft", "-f", "-"], input=MEASURE_TABLE)
    before = sent_bytes(lab, "gw-a")
    params = {"rate": rate, "seconds": seconds, "blocked_every": blocked_every,
              "blocked": BLOCKED_SITE.ipv4, "blocked_port": 20000,
              "allowed": DEFAULT_SITES["news"].ipv4, "allowed_port": 7}
    process = lab.popen(client, [sys.executable, "-c", FLOWS_SCRIPT, json.dumps(params)], stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=seconds + 30)
    after = sent_bytes(lab, "gw-a")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return SyncCost(result["flows"], result["seconds"], after["conntrackd"] - before["conntrackd"],
                    after["gatewayd"] - before["gatewayd"])
