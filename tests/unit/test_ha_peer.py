"""The HA pair's own report: this node's VRRP state (ha-notify's file) and the peer's, over the sync link."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gatewayd.apply.ha_state import read_state, write_state
from gatewayd.cli.status import render_ha
from gatewayd.daemon.ha_peer import PEER_SILENT_SECONDS, HaPeer
from gatewayd.daemon.policy_builder import BuildRequest, build_policy
from gatewayd.metrics.daemon_state import DaemonMetrics
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import HaNode, HaPair

# Loopback stands for the sync link: both addresses are local, so each peer is named outright.
PAIR = HaPair((HaNode("gw-a", 150, ipaddress.ip_address("127.0.0.1")),
               HaNode("gw-b", 100, ipaddress.ip_address("127.0.0.2"))),
              "sync0", (), (), 51, 100)


def free_pair_port() -> int:
    """A UDP port free on both loopback addresses the pair binds (not the real 3781: a unit run
    beside another, or beside a real pair on this box, would hear the other's heartbeats)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_a:
            probe_a.bind(("127.0.0.1", 0))
            port = int(probe_a.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_b:
                try:
                    probe_b.bind(("127.0.0.2", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no UDP port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
def port() -> int:
    return free_pair_port()


@pytest.fixture
def peers(tmp_path: Path, port: int) -> Iterator[tuple[HaPeer, HaPeer]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = HaPeer(tmp_path / "a", "gw-a", port), HaPeer(tmp_path / "b", "gw-b", port)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def exchange(a: HaPeer, b: HaPeer) -> None:
    """Each sends its heartbeat, then each reads the other's (bounded: a few rounds)."""
    now = time.monotonic()
    for round_number in range(20):
        a.poll(now + round_number * 10)
        b.poll(now + round_number * 10)
        if a.heard is not None and b.heard is not None:
            return
        time.sleep(0.01)


def test_state_file_round_trip_and_anything_else_reads_as_unknown(tmp_path: Path) -> None:
    assert read_state(tmp_path) == "unknown"
    write_state(tmp_path, "master")
    assert read_state(tmp_path) == "master"
    (tmp_path / "vrrp-state").write_text("garbage\n")
    assert read_state(tmp_path) == "unknown"


def test_each_node_hears_the_peers_state_and_compares_policy_hashes(peers: tuple[HaPeer, HaPeer]) -> None:
    a, b = peers
    write_state(a.runtime_dir, "master")
    write_state(b.runtime_dir, "backup")
    a.adopt(PAIR, "hash-1")
    b.adopt(PAIR, "hash-1")
    exchange(a, b)
    assert a.report() == {"node": "gw-a", "state": "master", "peer": "gw-b", "peer_state": "backup",
                          "policy_hash": "hash-1", "same_policy": True}
    assert b.peer_state() == "master" and b.same_policy() is True
    b.adopt(PAIR, "hash-2")  # a reload to another file: told at once
    b.heard = None
    exchange(a, b)
    assert a.same_policy() is False and b.same_policy() is False


def test_a_silent_peer_becomes_unknown_and_is_not_compared(peers: tuple[HaPeer, HaPeer]) -> None:
    a, b = peers
    a.adopt(PAIR, "hash-1")
    b.adopt(PAIR, "hash-1")
    exchange(a, b)
    assert a.heard is not None
    later = a.heard.at + PEER_SILENT_SECONDS + 0.1
    assert a.peer_state(later) == "unknown" and a.same_policy(later) is None


def test_datagrams_not_from_the_peer_or_too_big_are_ignored(peers: tuple[HaPeer, HaPeer], port: int) -> None:
    a, _ = peers
    a.adopt(PAIR, "hash-1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.3", 0))
        stranger.sendto(b'{"node": "gw-b", "state": "master", "policy_hash": "x"}', ("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.2", 0))
        peer.sendto(b'{"node": "gw-b", "state": "master", "policy_hash": "' + b"x" * 600 + b'"}',
                    ("127.0.0.1", port))
        peer.sendto(b"not json", ("127.0.0.1", port))
    time.sleep(0.05)
    a.poll()
    assert a.heard is None


def test_without_an_ha_section_there_is_no_report(tmp_path: Path) -> None:
    peer = HaPeer(tmp_path)
    peer.adopt(None, "hash")
    assert peer.report() is None and peer.fds() == [] and render_ha(None) == []


POLICY = """\
version: 1
interfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}
classes:
  default: {priority: 3}
"""


def test_the_hash_sent_to_the_peer_is_of_the_text_loaded_not_of_the_file_at_adoption(
        tmp_path: Path, peers: tuple[HaPeer, HaPeer]) -> None:
    """The daemon loads the file, an admin edits it before the plan is adopted: the peer must be
    told the hash of the policy in force. A revert (a policy given as an object) keeps its hash."""
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    built = build_policy(BuildRequest(path=str(path)), None, 0, None)
    path.write_text(POLICY + "# edited after the load\n")
    a, _ = peers
    a.adopt(PAIR, built.plan.policy.content_sha256)
    assert a.policy_hash == hashlib.sha256(POLICY.encode()).hexdigest()
    assert a.policy_hash != hashlib.sha256(path.read_bytes()).hexdigest()
    reverted = build_policy(BuildRequest(policy=built.plan.policy), built.plan, 1, None)
    assert reverted.plan.policy.content_sha256 == a.policy_hash
    assert load_policy_text(POLICY + "# another\n", "q.yaml").content_sha256 != a.policy_hash


def test_status_line_and_metrics_say_master_backup_and_a_different_policy() -> None:
    report = {"node": "gw-b", "state": "backup", "peer": "gw-a", "peer_state": "master",
              "policy_hash": "0123456789abcdef", "same_policy": False}
    assert render_ha(report) == ["ha          node gw-b backup   peer gw-a master   DIFFERENT POLICY "
                                 "(sha256 0123456789ab)"]
    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry)
    metrics.set_ha("backup", "master", False)
    assert registry.get_sample_value("gatewayd_ha_state", {"state": "backup"}) == 1
    assert registry.get_sample_value("gatewayd_ha_state", {"state": "master"}) == 0
    assert registry.get_sample_value("gatewayd_ha_peer_state", {"state": "master"}) == 1
    assert registry.get_sample_value("gatewayd_ha_policy_hash_match") == 0
    metrics.set_ha("master", "unknown", None)
    assert registry.get_sample_value("gatewayd_ha_policy_hash_match") == 0
    assert registry.get_sample_value("gatewayd_ha_peer_state", {"state": "unknown"}) == 1
