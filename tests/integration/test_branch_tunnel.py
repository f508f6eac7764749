"""Head office and branch over an emulated Internet, a WireGuard tunnel between (wireguard-go).

While bulk uploads from the branch saturate both the tunnel and the branch's
line, ERP from the branch to the head-office server inside the tunnel keeps its
guarantee and its round trip stays within 5 ms of idle. Without gatewayd the
same load puts ERP behind the modem's deep queue: that proves the load is real.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from gatewayd.lab.branch import BRANCH_GATEWAY, BranchLab
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.topology import GATEWAY

pytestmark = pytest.mark.skipif(shutil.which("wireguard-go") is None or shutil.which("wg") is None,
                                reason="wireguard-go and wg are missing: run ./scripts/setup")

LOAD_SECONDS = 10
ERP_GUARANTEE_BPS = 2_850_000  # business: 30% of the tunnel's 9.5 Mbit/s (50% of the 19 Mbit/s line)


@pytest.fixture(scope="module")
def offices() -> Iterator[BranchLab]:
    with BranchLab() as lab:
        lab.start_servers()
        yield lab


def test_erp_inside_the_tunnel_keeps_its_guarantee_and_its_rtt_under_load(offices: BranchLab) -> None:
    lab = offices
    unshaped = lab.erp_rtt_under_load(LOAD_SECONDS)
    head_office = GatewayDaemon(lab, lab.policy(GATEWAY)).start()
    branch = GatewayDaemon(lab.branch_gateway(), lab.policy(BRANCH_GATEWAY)).start()
    try:
        idle = lab.erp_rtt(rounds=50)
        loaded = lab.erp_rtt_under_load(LOAD_SECONDS)
        bulk = lab.bulk(LOAD_SECONDS)
        try:
            time.sleep(2.0)
            erp_rate = lab.erp_rate(int(ERP_GUARANTEE_BPS * 0.9), seconds=4)
        finally:
            for process in bulk:
                process.wait(timeout=LOAD_SECONDS + 30)
        tunnel = lab.tunnel_interfaces[BRANCH_GATEWAY]
        classes = lab.run(BRANCH_GATEWAY, ["tc", "-s", "class", "show", "dev", tunnel]).stdout
    finally:
        branch.stop()
        head_office.stop()
    print(f"ERP RTT median: idle {idle['median_ms']} ms, under load {loaded['median_ms']} ms with gatewayd, "
          f"{unshaped['median_ms']} ms without; ERP rate under load {erp_rate / 1e6:.2f} Mbit/s")
    assert unshaped["median_ms"] > idle["median_ms"] + 20, (unshaped, idle)  # the load does fill the line
    assert loaded["rounds"] >= 50, loaded
    assert loaded["lost"] == 0
    assert loaded["median_ms"] <= idle["median_ms"] + 5.0, (loaded, idle)
    assert erp_rate >= 0.9 * ERP_GUARANTEE_BPS * 0.9, erp_rate
    assert "class htb 1:12 parent 1:1 leaf 12: prio 1 rate 2850Kbit" in classes  # ERP's class on the tunnel
