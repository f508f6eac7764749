"""The guard's kernel reads without pyroute2: a LAN port's addresses and its neighbour table.

Each test runs in a network namespace of its own made with `unshare -n`: it
goes away with the process, whatever happens, so there is nothing to clean up.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SETUP = """\
ip link add lan9 type veth peer name peer9
ip link set lan9 up
ip link set peer9 up
ip addr add 192.0.2.1/24 dev lan9
ip -6 addr add 2001:db8:1::1/64 dev lan9 nodad
ip addr add 198.51.100.1/24 dev peer9
ip neigh add 192.0.2.7 lladdr 02:00:00:00:00:07 dev lan9 nud permanent
ip neigh add 192.0.2.8 lladdr 02:00:00:00:00:08 dev lan9 nud stale
ip neigh add 192.0.2.9 lladdr 02:00:00:00:00:09 dev lan9 nud noarp
ip neigh add 198.51.100.9 lladdr 02:00:00:00:00:09 dev peer9 nud permanent
"""

READ = """\
import json
from gatewayd.apply.guard_state import read_gateway_addresses, read_neighbours
print(json.dumps({
    "addresses": sorted(str(a) for a in read_gateway_addresses(("lan9", "missing0"))),
    "neighbours": sorted(f"{b.address} {b.mac}" for b in read_neighbours(("lan9",))),
}))
"""


def read_in_private_namespace() -> dict[str, list[str]]:
    script = SETUP + f"exec {sys.executable} -c '{READ}'\n"
    done = subprocess.run(["unshare", "-n", "sh", "-e", "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_lan_ports_own_addresses_both_families_and_no_other_ports() -> None:
    addresses = read_in_private_namespace()["addresses"]
    assert "192.0.2.1" in addresses and "2001:db8:1::1" in addresses
    assert "198.51.100.1" not in addresses  # another port's address
    assert all(a.startswith(("192.0.2.", "2001:db8:1::", "fe80::")) for a in addresses), addresses


def test_only_trusted_neighbours_of_the_lan_port_are_learned() -> None:
    neighbours = read_in_private_namespace()["neighbours"]
    # permanent and stale are trusted, noarp is not (TRUSTED_STATES); peer9's entry is another port's.
    assert neighbours == ["192.0.2.7 02:00:00:00:00:07", "192.0.2.8 02:00:00:00:00:08"]
