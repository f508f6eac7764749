"""Swapping the gatewayd table in keeps the packets waiting in NFQUEUE.

Unregistering any netfilter hook makes the kernel drop every packet queued in
the namespace (nf_queue_nf_hook_drop), so the swap must keep the table's base
chains, the LAN guard's netdev ingress chain included (its devices must be
read back right, or the swap deletes and remakes it). Here packets are held in
a queue (iptables-nft, as on our kernels without native nft `queue`) while
NftKernel.replace_table swaps the office plan's tables in, then released: all
of them must arrive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.lab.office import OFFICE_POLICY

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HELD = 5
SCRIPT = r"""
import socket, subprocess, sys, time
from netfilterqueue import NetfilterQueue
from gatewayd.apply.nft import NftKernel
from gatewayd.compile.guard import ALL_TABLES
from gatewayd.compile.plan import compile_plan
from gatewayd.policy.loader import load_policy

plan = compile_plan(load_policy(sys.argv[1]))
table = plan.ruleset.table
kernel = NftKernel()
def guard_script():
    return plan.guard.script({family: kernel.present_objects(family, name) for family, name in ALL_TABLES})
with_guard = sys.argv[3] == "guard"
kernel.replace_table(table, companion_script=guard_script() if with_guard else "")  # a first start: hooks made
subprocess.run(["iptables-nft", "-I", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "NFQUEUE", "--queue-num", "7"],
               check=True, timeout=30)
held = []
queue = NetfilterQueue()
queue.bind(7, held.append)
receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
receiver.bind(("192.0.2.1", 9999))
receiver.settimeout(1.0)
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for number in range(int(sys.argv[2])):
    sender.sendto(b"held %d" % number, ("192.0.2.1", 9999))
deadline = time.monotonic() + 5
while len(held) < int(sys.argv[2]) and time.monotonic() < deadline:
    queue.run(block=False)
    time.sleep(0.01)
kernel.replace_table(table, companion_script=guard_script() if with_guard else "")  # the reload, packets waiting
for packet in held:
    packet.accept()
arrived = 0
try:
    while arrived < len(held):
        receiver.recv(100)
        arrived += 1
except socket.timeout:
    pass
print(len(held), arrived)
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"gwd-swapq-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        for command in (["link", "set", "lo", "up"], ["link", "add", "swap0", "type", "veth", "peer", "name", "swap1"],
                        ["addr", "add", "192.0.2.1/24", "dev", "swap0"], ["link", "set", "swap0", "up"],
                        # the office policy's LAN port, for the guard's netdev ingress chain
                        ["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"], ["link", "set", "lan0", "up"]):
            subprocess.run(["ip", "-n", name, *command], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], timeout=10)


@pytest.mark.parametrize("tables", ["gatewayd", "guard"])
def test_a_reload_swap_delivers_the_packets_waiting_in_the_queue(namespace: str, tables: str) -> None:
    """`guard`: the LAN guard's tables ride in the same transaction, as in every apply."""
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", SCRIPT, str(OFFICE_POLICY),
                             str(HELD), tables], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    held, arrived = (int(value) for value in result.stdout.split())
    assert held == HELD, "the packets were not queued"
    assert arrived == HELD, f"{HELD - arrived} of {HELD} queued packets were lost by the swap"
