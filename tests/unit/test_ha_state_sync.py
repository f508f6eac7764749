"""The HA state sync: what the master sends the backup beside conntrackd, its datagrams and its limits."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from gatewayd.apply.guard_state import BlockedHost
from gatewayd.apply.ha_sync_sets import plain_sets_script
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftKernel
from gatewayd.daemon import ha_state_sync
from gatewayd.daemon.ha_state_sync import GTSM_TTL, SEND_INTERVAL_SECONDS, SYNC_PORT, HaStateSync
from gatewayd.daemon.ha_sync_wire import (
    MAX_DATAGRAM_BYTES,
    BlockedEntry,
    GuardEntry,
    LearnedEntry,
    SyncEntry,
    decode,
    encode,
)
from gatewayd.metrics.ha_sync import HaSyncMetrics
from gatewayd.policy.model import HaNode

# --- the datagrams ---


def test_entries_of_every_kind_survive_the_round_trip() -> None:
    entries: list[SyncEntry] = [LearnedEntry("203.0.113.7", "wechat", 290), LearnedEntry("2001:db8::7", "youku", 30),
               BlockedEntry("192.0.2.10", "203.0.113.9", "tcp", 443, 0x210000, 580),
               BlockedEntry("2001:db8:1::10", "2001:db8::9", 132, 5000, 7, 10),
               GuardEntry("192.0.2.66", 240, "host_sweep"), GuardEntry("192.0.2.67", 20)]
    datagrams = encode("gw-a", entries)
    assert len(datagrams) == 1
    decoded = decode(datagrams[0])
    assert decoded is not None and decoded.node == "gw-a"
    assert sorted(map(repr, decoded.entries)) == sorted(map(repr, entries))
    assert sum(decoded.refused.values()) == 0


def test_many_entries_are_split_into_bounded_datagrams_each_entry_once() -> None:
    entries = [LearnedEntry(str(ipaddress.ip_address("2001:db8::") + n), "some-long-app-name", 86400 + n)
               for n in range(2000)]
    datagrams = encode("gw-a", entries)
    assert len(datagrams) > 10
    assert all(len(datagram) <= MAX_DATAGRAM_BYTES for datagram in datagrams)
    back = [entry for datagram in datagrams for entry in (decode(datagram) or pytest.fail("undecodable")).entries]
    assert back == entries


def test_malformed_entries_are_refused_one_by_one_and_the_rest_taken() -> None:
    message = {"node": "gw-a",
               "learned": [["203.0.113.7", "wechat", 290],  # good
                           ["203.0.113.8", "WeChat; flush ruleset", 290],  # not an app name
                           ["not-an-address", "wechat", 290], ["224.0.0.1", "wechat", 290],
                           ["203.0.113.9", "wechat", 0], ["203.0.113.9", "wechat", 10 ** 9],
                           ["203.0.113.9", "wechat", True], ["203.0.113.9", "wechat"]],
               "blocked": [["192.0.2.10", "203.0.113.9", "tcp", 443, 1, 60],  # good
                           ["192.0.2.10", "2001:db8::9", "tcp", 443, 1, 60],  # families differ
                           ["192.0.2.10", "203.0.113.9", "icmp", 0, 1, 60],
                           ["192.0.2.10", "203.0.113.9", "tcp", 70000, 1, 60],
                           ["192.0.2.10", "203.0.113.9", "tcp", 443, -1, 60]],
               "guard": [["192.0.2.66", 240, "port_scan"], ["192.0.2.66", 240, "because"], "192.0.2.67"]}
    decoded = decode(json.dumps(message).encode())
    assert decoded is not None
    assert decoded.entries == (LearnedEntry("203.0.113.7", "wechat", 290),
                               BlockedEntry("192.0.2.10", "203.0.113.9", "tcp", 443, 1, 60),
                               GuardEntry("192.0.2.66", 240, "port_scan"))
    assert decoded.refused == {"learned": 7, "blocked": 4, "guard": 2}


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1, 2]", b'{"learned": []}', b'{"node": 7}',
                                  json.dumps({"node": "gw-a", "pad": "x" * MAX_DATAGRAM_BYTES}).encode()])
def test_what_is_not_a_sync_datagram_is_ignored_whole(data: bytes) -> None:
    assert decode(data) is None


# --- the channel, over loopback (stands for the sync link) ---

NODE_A = HaNode("gw-a", 150, ipaddress.ip_address("127.0.0.1"))
NODE_B = HaNode("gw-b", 100, ipaddress.ip_address("127.0.0.2"))


class FakeKernel:
    """The few NftKernel calls the sync makes; what the backup writes is recorded as text, one script per
    transaction (the real batch: tests/unit/test_ha_sync_sets.py)."""

    def __init__(self) -> None:
        self.learned: dict[str, list[LearnedElement]] = {"learned_v4": [], "learned_v6": []}
        self.blocked: dict[str, list[BlockedFlow]] = {"recent_blocked_v4": [], "recent_blocked_v6": []}
        self.scripts: list[str] = []

    def learned_elements(self, map_name: str) -> list[LearnedElement]:
        return self.learned[map_name]

    def recent_blocked_flows(self, set_name: str) -> list[BlockedFlow]:
        return self.blocked[set_name]

    def query(self, command: str) -> list[dict[str, Any]]:
        return []  # the guard's sets: empty

    def write_state(self, learned: Sequence[LearnedElement], blocked: Sequence[BlockedFlow],
                    guard: Sequence[BlockedHost]) -> None:
        self.scripts.append("".join(f"{e.address} timeout {e.timeout_seconds}s : goto {e.chain}\n" for e in learned)
                            + plain_sets_script(blocked, guard))


class Node:
    def __init__(self, node: HaNode, peer: HaNode, apps: dict[str, int]) -> None:
        self.kernel = FakeKernel()
        self.registry = CollectorRegistry()
        self.sync = HaStateSync(cast(NftKernel, self.kernel), HaSyncMetrics(self.registry),
                                read_all_learned=lambda: [e for m in self.kernel.learned.values() for e in m],
                                write_state=self.kernel.write_state)
        self.sync.adopt(node, peer, "lo", apps, guard_blocklist=False)

    def count(self, direction: str, kind: str) -> float:
        return self.registry.get_sample_value("gatewayd_ha_sync_entries_total",
                                              {"direction": direction, "kind": kind}) or 0.0

    def written(self) -> str:
        return "".join(self.kernel.scripts)


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    # The same apps numbered differently on the two nodes: names travel, numbers do not.
    a = Node(NODE_A, NODE_B, {"wechat": 12, "youku": 13})
    b = Node(NODE_B, NODE_A, {"wechat": 40, "youku": 41})
    try:
        yield a, b
    finally:
        a.sync.close()
        b.sync.close()


def settle(a: Node, b: Node, now: float, rounds: int = 1, a_state: str = "master", b_state: str = "backup") -> None:
    """`rounds` send rounds of the master (0.5 s apart on its clock), each read by the backup (bounded)."""
    for round_number in range(rounds):
        for _ in range(20):  # the full-sync thread is quick, but a thread
            a.sync.poll(a_state, b_state, now + round_number * SEND_INTERVAL_SECONDS)
            time.sleep(0.005)
            b.sync.poll(b_state, a_state, now)


def test_the_backup_gets_everything_once_then_what_the_classifier_learns(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.kernel.learned["learned_v4"] = [LearnedElement("203.0.113.7", "set_app_12", 290),
                                      LearnedElement("203.0.113.8", "set_app_99", 290)]  # not an app: not sent
    a.kernel.blocked["recent_blocked_v4"] = [BlockedFlow("192.0.2.10", "203.0.113.9", "udp", 53, 5, 580, 20)]
    settle(a, b, 1000.0, rounds=2)
    assert "203.0.113.7 timeout 290s : goto set_app_40" in b.written()  # the backup's own number for wechat
    assert "203.0.113.8" not in b.written()
    assert "192.0.2.10 . 203.0.113.9 . udp . 53 . 0x00000005 timeout 580s" in b.written()
    assert a.count("sent", "learned") == 1 and a.count("sent", "blocked") == 1
    assert b.count("received", "learned") == 1 and b.count("received", "blocked") == 1
    written_before = len(b.kernel.scripts)
    a.sync.note_learned([LearnedElement("2001:db8::5", "set_app_13", 60)])  # a DNS answer on the master
    settle(a, b, 1001.0)
    assert len(b.kernel.scripts) == written_before + 1  # one datagram, one transaction
    assert "2001:db8::5 timeout 60s : goto set_app_41" in b.kernel.scripts[-1]


def test_kernel_set_entries_are_sent_again_only_when_extended_or_the_peer_returns(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.kernel.blocked["recent_blocked_v4"] = [BlockedFlow("192.0.2.10", "203.0.113.9", "tcp", 443, 5, 580, 20)]
    settle(a, b, 1000.0, rounds=2)
    assert a.count("sent", "blocked") == 1
    a.kernel.blocked["recent_blocked_v4"] = [BlockedFlow("192.0.2.10", "203.0.113.9", "tcp", 443, 5, 578, 22)]
    settle(a, b, 1002.0, rounds=2)  # two seconds later, two seconds less left: nothing new
    assert a.count("sent", "blocked") == 1
    a.kernel.blocked["recent_blocked_v4"] = [BlockedFlow("192.0.2.10", "203.0.113.9", "tcp", 443, 5, 600, 0)]
    settle(a, b, 1004.0, rounds=2)  # blocked again: its time restarted
    assert a.count("sent", "blocked") == 2
    a.sync.poll("master", "unknown", 1006.0)  # the peer went silent: it may come back empty
    settle(a, b, 1007.0, rounds=2)
    assert a.count("sent", "blocked") == 3 and b.count("received", "blocked") == 3


def test_an_app_the_backup_does_not_know_is_refused_and_a_master_takes_nothing(pair: tuple[Node, Node]) -> None:
    a, b = pair
    b.sync.adopt(NODE_B, NODE_A, "lo", {"wechat": 40}, guard_blocklist=False)  # no youku on this node
    settle(a, b, 1000.0)  # the (empty) full sync
    a.sync.note_learned([LearnedElement("203.0.113.7", "set_app_13", 290)])
    settle(a, b, 1001.0)
    assert b.kernel.scripts == [] and b.count("refused", "learned") == 1
    a.sync.note_learned([LearnedElement("203.0.113.8", "set_app_12", 290)])
    settle(a, b, 1002.0, b_state="master")  # both think they are master: each keeps its own
    assert b.kernel.scripts == [] and b.count("refused", "learned") == 2


def test_a_backup_sends_nothing(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.kernel.blocked["recent_blocked_v4"] = [BlockedFlow("192.0.2.10", "203.0.113.9", "tcp", 443, 5, 580, 20)]
    a.sync.note_learned([LearnedElement("203.0.113.8", "set_app_12", 290)])
    settle(a, b, 1000.0, rounds=2, a_state="backup", b_state="master")
    assert a.count("sent", "learned") == 0 and a.count("sent", "blocked") == 0


def inject(source: str, ttl: int, message: dict[str, Any]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.bind((source, 0))
        sock.sendto(json.dumps(message).encode(), (str(NODE_B.sync_address), SYNC_PORT))


def read_for_a_while(node: Node) -> None:
    for _ in range(20):
        time.sleep(0.005)
        node.sync.poll("backup", "master", 1000.0)


@pytest.mark.parametrize(("source", "ttl", "node"), [("127.0.0.3", GTSM_TTL, "gw-a"),  # not the peer's address
                                                     ("127.0.0.1", 64, "gw-a"),  # routed to us: TTL below 255
                                                     ("127.0.0.1", GTSM_TTL, "gw-x")])  # not naming the peer
def test_only_the_peer_on_the_link_itself_can_write_entries(pair: tuple[Node, Node], source: str, ttl: int,
                                                            node: str) -> None:
    _a, b = pair
    inject(source, ttl, {"node": node, "learned": [["203.0.113.66", "wechat", 300]]})
    read_for_a_while(b)
    assert b.kernel.scripts == []
    inject("127.0.0.1", GTSM_TTL, {"node": "gw-a", "learned": [["203.0.113.66", "wechat", 300]]})  # the control
    read_for_a_while(b)
    assert len(b.kernel.scripts) == 1


def test_what_the_backup_writes_per_second_is_bounded(pair: tuple[Node, Node],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    monkeypatch.setattr(ha_state_sync, "MAX_RECEIVED_ENTRIES_PER_SECOND", 30)
    settle(a, b, 1000.0)
    a.sync.note_learned([LearnedElement(f"203.0.113.{n}", "set_app_12", 300) for n in range(1, 101)])
    settle(a, b, 1001.0)
    assert a.count("sent", "learned") == 100
    assert b.count("received", "learned") == 30 and b.count("refused", "learned") == 70


def test_the_master_sends_at_most_its_budget_per_round_and_the_rest_next_round(
        pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    monkeypatch.setattr(ha_state_sync, "MAX_SENT_ENTRIES_PER_SECOND", 100)  # 50 per half-second round
    settle(a, b, 1000.0)
    a.sync.note_learned([LearnedElement(f"203.0.113.{n}", "set_app_12", 300) for n in range(1, 81)])
    settle(a, b, 1001.0)
    assert a.count("sent", "learned") == 50
    settle(a, b, 1001.5)
    assert a.count("sent", "learned") == 80 and b.count("received", "learned") == 80


def test_what_waits_to_be_sent_is_bounded(pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _b = pair
    monkeypatch.setattr(ha_state_sync, "MAX_PENDING_ENTRIES", 10)
    a.sync.note_learned([LearnedElement(f"203.0.113.{n}", "set_app_12", 300) for n in range(1, 26)])
    a.sync.poll("master", "backup", 1000.0)  # the writer's thread hands over; the loop queues them
    assert a.count("refused", "learned") == 15


def test_the_loop_polls_only_when_a_datagram_waits_or_a_round_is_due(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.sync.poll("master", "backup", 1000.0)
    assert not a.sync.wants_poll([], 1000.2) and a.sync.seconds_to_next_round(1000.2) == pytest.approx(0.3)
    assert a.sync.wants_poll([], 1000.5)
    assert b.sync.wants_poll(b.sync.fds(), 0.0)
