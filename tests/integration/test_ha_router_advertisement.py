"""An office IPv6 host that learns its default router from Router Advertisements keeps its path
across a failover (real keepalived, conntrackd and radvd).

The host's default route is the RA's source: the LAN's link-local virtual address fe80::1,
which keepalived moves to the master and from which only the master's radvd advertises.
Without it the host would route to the dead box's own link-local address until the router
lifetime ran out (minutes). A steady UDP probe over IPv6 runs through gw-a; gw-a dies; the
probe must come back through gw-b within the IPv4 failover test's bound, and the host must
never have had any default router but fe80::1.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatewayd.lab.ha_pair import CALL_SERVER_V6, LAN_LINK_LOCAL, HaPairLab, UdpProbe
from gatewayd.lab.topology import DEFAULT_HOSTS

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not all(shutil.which(program) for program in ("keepalived", "conntrackd", "radvd")),
                       reason="needs keepalived, conntrackd and radvd (scripts/setup installs them)"),
]

HOST = "sales1"
PROBE_SECONDS = 34.0  # the failover at 6 s, the return (about 10 s on a loaded box), then some
FAILOVER_AT_SECONDS = 6.0
MAX_GAP_SECONDS = 10.0  # as test_ha_failover: 3 adverts of 1 s, the takeover, a loaded 2-core box
RA_WAIT_SECONDS = 15.0  # radvd sends its first RAs within a few seconds of start (and answers RSs)
MAX_RETURN_GAP_SECONDS = 0.5  # the returning box takes nothing over: no outage (probe every 20 ms)
RETURN_OBSERVED_SECONDS = 5.0  # the probe runs at least this long once gw-a is back (its radvd's first RAs)


@pytest.fixture
def pair() -> Iterator[tuple[HaPairLab, Path]]:
    lab = HaPairLab(hosts={HOST: DEFAULT_HOSTS[HOST]}, ra_hosts=(HOST,))
    with lab:
        yield lab, lab.start_pair(advert_interval="1s")


def default_routes(lab: HaPairLab) -> list[str]:
    return lab.run(HOST, ["ip", "-6", "route", "show", "default"]).stdout.strip().splitlines()


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_host_routing_by_router_advertisement_keeps_its_ipv6_path_across_a_failover_and_the_return(
    pair: tuple[HaPairLab, Path],
) -> None:
    lab, policy = pair
    wait_for(lambda: any(f"via {LAN_LINK_LOCAL} " in route and "proto ra" in route for route in default_routes(lab)),
             f"{HOST} learned no default route from an RA of fe80::1: {default_routes(lab)}\n{lab.node_logs('gw-a')}",
             RA_WAIT_SECONDS)

    probe_ends_at = time.time() + PROBE_SECONDS
    probe = UdpProbe(lab, HOST, PROBE_SECONDS, interval=0.02, server=CALL_SERVER_V6)
    time.sleep(FAILOVER_AT_SECONDS)
    killed_at = time.time()
    lab.kill_node("gw-a")
    lab.wait_for_master("gw-b")
    # The old master boots again and stays backup (no preemption): its freshly started radvd, whose
    # first RAs would go out at once, must stay silent, and the host's path must not notice.
    returned_at = time.time()
    lab.restart_node("gw-a", policy)
    lab.wait_for_backup_hold("gw-a")
    assert probe_ends_at - time.time() > RETURN_OBSERVED_SECONDS, "gw-a came back too late for the probe to see it"
    result = probe.result()

    gap_end, gap = result.longest_gap_in(after=killed_at, before=returned_at)
    assert result.longest_gap_after(returned_at) <= MAX_RETURN_GAP_SECONDS, result
    assert result.received > 0 and result.last_echo is not None and result.first_echo is not None, result
    assert 0 < gap <= MAX_GAP_SECONDS, (gap, result)
    # The path carried on to the end of the probe, through gw-b (gw-a's links are down).
    assert result.last_echo - result.first_echo > PROBE_SECONDS - 2, result
    assert gap_end > killed_at
    # The host's router is still fe80::1, now at gw-b's MAC (its NA and RA moved the neighbour entry),
    # and it never had another default router: gw-b's radvd sent nothing while it was backup.
    routes = default_routes(lab)
    assert len(routes) == 1 and routes[0].startswith(f"default via {LAN_LINK_LOCAL} dev eth0 proto ra"), routes
    neighbour = lab.run(HOST, ["ip", "-6", "neigh", "show", LAN_LINK_LOCAL, "dev", "eth0"]).stdout
    gw_b_lan_mac = f"02:00:00:00:01:{lab.node('gw-b').mac_suffix:02x}"  # lab/ha_pair.py's plan for lan0
    assert gw_b_lan_mac in neighbour and "router" in neighbour, neighbour
    print(f"IPv6 (RA-learned default router) failover gap {gap:.2f}s, after the old master's return "
          f"{result.longest_gap_after(returned_at):.2f}s, {result.sent - result.received} of {result.sent} "
          "datagrams lost")
