"""What the HA backup writes for one datagram (apply/ha_sync_sets.py): one destroy + add transaction over
every set the datagram touches, as bytes; and the fallback to nft on a kernel without the destroy."""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Sequence

import pytest

from gatewayd.apply.guard_state import BlockedHost
from gatewayd.apply.ha_sync_sets import SyncedStateWriter, plain_sets_script, synced_state_writes
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftError, NftKernel
from gatewayd.apply.set_elements_netlink import (
    NFT_MSG_DESTROYSETELEM,
    NFT_MSG_NEWSETELEM,
    DestroyUnsupported,
    ElementBatchError,
    ElementSocket,
    ElementWrite,
    replace_elements_batch,
)
from gatewayd.apply.tc_netlink import HEADER

NESTED = 0x8000
NFPROTO_INET, NFPROTO_NETDEV = 1, 5


def attributes(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found[kind] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def listed(data: bytes) -> list[dict[int, bytes]]:
    """The NFTA_LIST_ELEM attributes of an element list, each as its attributes."""
    found, offset = [], 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        assert kind == 1 | NESTED
        found.append(attributes(data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return found


def sent_messages(writes: Sequence[ElementWrite]) -> list[tuple[int, int, str, str, list[dict[int, bytes]]]]:
    """(message type, family, table, set, elements) of each element message of the batch built for `writes`."""
    frames, _kinds = replace_elements_batch(writes, 1)
    found, offset = [], 0
    while offset < len(frames):
        length, kind, _flags, _sequence, _pid = HEADER.unpack_from(frames, offset)
        body = frames[offset + HEADER.size:offset + length]
        offset += (length + 3) & ~3
        if kind >> 8 != 10:
            continue  # the batch's begin and end
        family = body[0]
        top = attributes(body[4:])
        found.append((kind & 0xFF, family, top[1].rstrip(b"\0").decode(), top[2].rstrip(b"\0").decode(),
                      listed(top[3 | NESTED])))
    return found


def key_of(element: dict[int, bytes]) -> bytes:
    return attributes(element[1 | NESTED])[1]


def timeout_of(element: dict[int, bytes]) -> int:
    return int(struct.unpack("!Q", element[4])[0]) // 1000


LEARNED = [LearnedElement("203.0.113.7", "set_app_12", 290), LearnedElement("2001:db8::7", "set_app_3", 30)]
BLOCKED = [BlockedFlow("192.0.2.10", "203.0.113.9", "tcp", 443, 0x210000, 580, 0),
           BlockedFlow("2001:db8:1::10", "2001:db8::9", 132, 5000, 7, 10, 0)]
GUARD = [BlockedHost("192.0.2.66", 240, "host_sweep"), BlockedHost("192.0.2.67", 20, "port_scan")]


def test_one_datagram_is_one_transaction_destroying_then_adding_in_every_set_it_touches() -> None:
    sent = sent_messages(synced_state_writes(LEARNED, BLOCKED, GUARD))
    touched = [(family, table, name) for kind, family, table, name, _ in sent if kind == NFT_MSG_DESTROYSETELEM]
    assert touched == [(NFPROTO_INET, "gatewayd", "learned_v4"), (NFPROTO_INET, "gatewayd", "recent_blocked_v4"),
                       (NFPROTO_NETDEV, "gatewayd_guard", "blocklist_v4"),
                       (NFPROTO_NETDEV, "gatewayd_guard", "sweepers_v4"),
                       (NFPROTO_INET, "gatewayd", "learned_v6"), (NFPROTO_INET, "gatewayd", "recent_blocked_v6")]
    # Each destroy is followed by the add of the same keys in the same set.
    for destroy, add in zip(sent[::2], sent[1::2], strict=True):
        assert (destroy[0], add[0]) == (NFT_MSG_DESTROYSETELEM, NFT_MSG_NEWSETELEM)
        assert destroy[1:4] == add[1:4]
        assert [key_of(e) for e in destroy[4]] == [key_of(e) for e in add[4]]
        assert all(set(e) == {1 | NESTED} for e in destroy[4])  # a destroy names the key only
    by_set = {name: elements for kind, _f, _t, name, elements in sent if kind == NFT_MSG_NEWSETELEM}
    (learned,) = by_set["learned_v4"]
    assert key_of(learned) == bytes([203, 0, 113, 7]) and timeout_of(learned) == 290  # the master's time left
    verdict = attributes(attributes(learned[2 | NESTED])[2 | NESTED])
    assert struct.unpack("!i", verdict[1]) == (-4,) and verdict[2] == b"set_app_12\0"  # goto this node's chain
    assert [timeout_of(e) for e in by_set["blocklist_v4"]] == [240, 20]
    assert [key_of(e) for e in by_set["sweepers_v4"]] == [bytes([192, 0, 2, 66])]  # only the host sweeper


def test_a_blocked_flow_key_is_laid_out_like_nfts_concatenation() -> None:
    sent = sent_messages(synced_state_writes([], BLOCKED, []))
    by_set = {name: elements for kind, _f, _t, name, elements in sent if kind == NFT_MSG_NEWSETELEM}
    (v4,) = by_set["recent_blocked_v4"]
    # client . server . inet_proto . inet_service . mark: each field on a 32-bit register, zero-padded;
    # the port in network order, the mark in host order.
    assert key_of(v4) == (bytes([192, 0, 2, 10, 203, 0, 113, 9, 6, 0, 0, 0, 1, 187, 0, 0])
                          + struct.pack("=I", 0x210000))
    (v6,) = by_set["recent_blocked_v6"]
    assert len(key_of(v6)) == 16 + 16 + 4 + 4 + 4 and key_of(v6)[32:40] == bytes([132, 0, 0, 0, 0x13, 0x88, 0, 0])
    assert timeout_of(v6) == 10


def test_a_key_sent_twice_is_written_once_with_the_last_value() -> None:
    twice = [LearnedElement("203.0.113.7", "set_app_1", 60), LearnedElement("203.0.113.7", "set_app_2", 90)]
    (write,) = synced_state_writes(twice, [], [])
    assert len(write.keys) == 1 and len(write.added) == 1 and b"set_app_2\0" in write.added[0]
    assert synced_state_writes([], [], []) == []


class RecordingSocket(ElementSocket):
    def __init__(self, failure: ElementBatchError | None) -> None:
        super().__init__()
        self.failure = failure
        self.sent: list[Sequence[ElementWrite]] = []

    def replace(self, writes: Sequence[ElementWrite]) -> None:
        self.sent.append(writes)
        if self.failure is not None:
            raise self.failure


class RecordingNft(NftKernel):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.learned_batches: list[Sequence[tuple[str, list[LearnedElement]]]] = []

    def run(self, script: str) -> None:
        self.scripts.append(script)

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        self.learned_batches.append(batches)


def test_the_kernel_with_the_destroy_gets_the_batch_and_nft_nothing() -> None:
    nft, sock = RecordingNft(), RecordingSocket(None)
    SyncedStateWriter(nft, sock).write(LEARNED, BLOCKED, GUARD)
    assert len(sock.sent) == 1 and nft.scripts == [] and nft.learned_batches == []


def test_a_kernel_without_the_destroy_falls_back_to_nft_once_with_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    nft, sock = RecordingNft(), RecordingSocket(DestroyUnsupported("no destroy", errno.EINVAL))
    writer = SyncedStateWriter(nft, sock)
    with caplog.at_level(logging.WARNING, logger="gatewayd.ha"):
        writer.write(LEARNED, BLOCKED, GUARD)
        writer.write(LEARNED, [], [])
    assert len(sock.sent) == 1 and not writer.destroy_supported  # tried once
    assert nft.scripts == [plain_sets_script(BLOCKED, GUARD)]  # the second had no plain-set entries
    assert nft.learned_batches == [[("learned_v4", [LEARNED[0]]), ("learned_v6", [LEARNED[1]])]] * 2
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=ha_sync_destroy_unsupported"]


def test_a_refused_batch_is_an_nft_error_and_no_fallback() -> None:
    nft = RecordingNft()
    writer = SyncedStateWriter(nft, RecordingSocket(ElementBatchError("no such set", errno.ENOENT)))
    with pytest.raises(NftError):
        writer.write(LEARNED, BLOCKED, GUARD)
    assert nft.scripts == [] and nft.learned_batches == [] and writer.destroy_supported


def test_the_fallback_script_adds_deletes_and_adds_each_plain_set_element() -> None:
    lines = plain_sets_script(BLOCKED[:1], GUARD).splitlines()
    blocked = "192.0.2.10 . 203.0.113.9 . tcp . 443 . 0x00210000"
    assert lines[:3] == [f"add element inet gatewayd recent_blocked_v4 {{ {blocked} timeout 580s }}",
                         f"delete element inet gatewayd recent_blocked_v4 {{ {blocked} }}",
                         f"add element inet gatewayd recent_blocked_v4 {{ {blocked} timeout 580s }}"]
    assert "add element netdev gatewayd_guard blocklist_v4 { 192.0.2.66 timeout 240s, 192.0.2.67 timeout 20s }" \
        in lines
    assert "add element netdev gatewayd_guard sweepers_v4 { 192.0.2.66 timeout 240s }" in lines
    assert not any("learned" in line or "_v6" in line for line in lines)
    assert plain_sets_script([], []) == ""
