"""The gateway's answer to ARP claims of its address: the frame, the counter read, the rate limit."""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Sequence

import pytest

from gatewayd.apply.arp_announce import gratuitous_arp, parse_mac
from gatewayd.apply.counter_netlink import (
    NFT_MSG_GETOBJ,
    NFT_MSG_NEWOBJ,
    counter_of_message,
    get_counters_request,
)
from gatewayd.apply.nfqueue_config import NFGEN_HEADER
from gatewayd.apply.set_elements_netlink import NFNL_SUBSYS_NFTABLES
from gatewayd.apply.tc_netlink import HEADER
from gatewayd.compile.guard import compile_guard
from gatewayd.compile.kernel_names import GATEWAY_CLAIMS_COUNTER
from gatewayd.daemon.gateway_arp import MIN_ANNOUNCE_INTERVAL_SECONDS, GatewayArpDefence
from gatewayd.policy.loader import load_policy_text

GW = ipaddress.IPv4Address("192.0.2.1")
GW_MAC = "02:00:00:00:01:01"


# --- the frame (RFC 826 layout; RFC 5227 section 3 announcement) ---

def test_a_gratuitous_arp_is_a_broadcast_request_for_our_own_address() -> None:
    frame = gratuitous_arp(parse_mac(GW_MAC), GW)
    assert len(frame) == 60
    assert frame[0:6] == b"\xff" * 6 and frame[6:12] == parse_mac(GW_MAC)
    assert struct.unpack("!H", frame[12:14]) == (0x0806,)
    hardware, protocol, hlen, plen, operation = struct.unpack("!HHBBH", frame[14:22])
    assert (hardware, protocol, hlen, plen, operation) == (1, 0x0800, 6, 4, 1)
    sender_mac, sender_ip, target_mac, target_ip = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    assert sender_mac == parse_mac(GW_MAC)
    # Sender and target address equal: what makes Linux take it within the locktime (arp_is_garp).
    assert sender_ip == target_ip == GW.packed
    assert target_mac == b"\0" * 6
    assert frame[42:] == b"\0" * 18


def test_a_bad_mac_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_mac("02:00:00:00:01")
    with pytest.raises(ValueError):
        gratuitous_arp(b"\x02\x00", GW)


# --- the counter read (uapi nf_tables.h: NFTA_OBJ_* and NFTA_COUNTER_*) ---

def attribute(kind: int, payload: bytes, nested: bool = False) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind | (0x8000 if nested else 0)) + payload + b"\0" * (-length % 4)


def newobj(name: bytes, kind: int, packets: int, octets: int, message_type: int = NFT_MSG_NEWOBJ) -> bytes:
    data = attribute(1, struct.pack("!Q", octets)) + attribute(2, struct.pack("!Q", packets))
    body = (NFGEN_HEADER.pack(5, 0, 0) + attribute(1, b"gatewayd_guard\0") + attribute(2, name + b"\0")
            + attribute(3, struct.pack("!I", kind)) + attribute(4, data, nested=True))
    return HEADER.pack(HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | message_type, 2, 7, 0) + body


def test_the_request_filters_by_table_and_counter_type() -> None:
    body = get_counters_request("netdev", "gatewayd_guard")
    assert NFGEN_HEADER.unpack_from(body) == (5, 0, 0)
    assert body[NFGEN_HEADER.size:] == attribute(1, b"gatewayd_guard\0") + attribute(3, struct.pack("!I", 1))
    assert NFT_MSG_GETOBJ == 19


def test_a_counter_message_gives_name_packets_and_bytes() -> None:
    message = newobj(b"gateway_claims", 1, 12, 720)
    assert counter_of_message(message, 0, len(message)) == ("gateway_claims", 12, 720)


def test_other_objects_and_messages_are_not_counters() -> None:
    quota = newobj(b"q", 2, 1, 1)
    assert counter_of_message(quota, 0, len(quota)) is None
    other = newobj(b"gateway_claims", 1, 1, 1, message_type=NFT_MSG_GETOBJ)
    assert counter_of_message(other, 0, len(other)) is None


# --- the compiled guard counts claims of the gateway's address apart ---

POLICY = """
version: 1
interfaces: {lan: lan0, wan: wan0, upload: 100mbit, download: 100mbit}
classes:
  default: {priority: 3, guaranteed: 50%}
security:
  bindings:
    hosts: {192.0.2.10: "02:00:00:00:00:10"}
"""


def test_the_claim_rule_counts_into_the_claims_counter() -> None:
    policy = load_policy_text(POLICY, "test.yaml")
    assert policy.security is not None
    compiled = compile_guard(policy.security, ("lan0",))
    text = compiled.render()
    assert f"counter {GATEWAY_CLAIMS_COUNTER}" in text
    claim_rule = next(line for line in text.splitlines() if "@gateway_v4" in line and "arp saddr" in line)
    assert f"counter name {GATEWAY_CLAIMS_COUNTER}" in claim_rule and "gateway_claims drop" in claim_rule
    # Not a drop reason of its own: the drop metric counts the frame as arp_spoof already.
    assert GATEWAY_CLAIMS_COUNTER not in compiled.counters["netdev"]


# --- when to announce ---

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self) -> None:
        self.claims: int | None = 0
        self.sent: list[tuple[str, tuple[ipaddress.IPv4Address, ...]]] = []
        self.announced = 0
        self.clock = Clock()
        self.defence = GatewayArpDefence(lambda: self.claims, lambda: {"lan0": [GW], "lan1": []}, self.send,
                                         self.count, self.clock)

    def send(self, interface: str, addresses: Sequence[ipaddress.IPv4Address]) -> int:
        self.sent.append((interface, tuple(addresses)))
        return len(addresses)

    def count(self, n: int) -> None:
        self.announced += n


def test_claims_are_answered_once_per_interval_and_old_ones_not_at_all() -> None:
    h = Harness()
    h.claims = 40  # claims from before the daemon watched: the baseline, not answered
    assert h.defence.poll() == 0
    assert h.defence.poll() == 0 and h.sent == []
    h.claims = 45
    assert h.defence.poll() == 1
    assert h.sent == [("lan0", (GW,))] and h.announced == 1  # an interface without IPv4 sends nothing
    h.claims = 50  # more claims within the interval: held back, then answered
    h.clock.now += MIN_ANNOUNCE_INTERVAL_SECONDS / 2
    assert h.defence.poll() == 0
    h.clock.now += MIN_ANNOUNCE_INTERVAL_SECONDS
    assert h.defence.poll() == 1 and len(h.sent) == 2
    h.clock.now += 10
    assert h.defence.poll() == 0 and len(h.sent) == 2  # quiet: nothing to answer


def test_a_recreated_counter_and_a_plan_without_the_guard() -> None:
    h = Harness()
    h.claims = 100
    h.defence.poll()
    h.claims = 3  # the guard table came back after a policy without it: its counter restarted
    assert h.defence.poll() == 1
    h.claims = None  # no ARP guard in the running plan
    h.clock.now += 1
    assert h.defence.poll() == 0
    h.claims = 7  # guard back: a fresh baseline
    assert h.defence.poll() == 0


def test_a_failing_read_or_send_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    h.defence.poll()

    def broken_read() -> int:
        raise OSError(os.strerror(5))
    h.defence.read_claims = broken_read
    assert h.defence.poll() == 0
    assert "event=gateway_claims_read_failed" in caplog.text

    def broken_send(_interface: str, _addresses: Sequence[ipaddress.IPv4Address]) -> int:
        raise OSError("Network is down")
    h.defence.read_claims = lambda: 5
    h.defence.send = broken_send
    assert h.defence.poll() == 0
    assert "event=gateway_announce_failed" in caplog.text
