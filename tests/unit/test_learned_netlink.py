"""The learned maps' destroy + add transaction, as bytes (apply/learned_netlink.py), its outcome, and the
fallbacks: nft's add element by element, and the switch to it on a kernel without the destroy."""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from gatewayd.apply.learned_netlink import Element, KernelLearnedMaps, LearnedMapSocket, replace_batch
from gatewayd.apply.nft import LearnedElement, NftError, NftKernel
from gatewayd.apply.set_elements_netlink import (
    NFT_MSG_DESTROYSETELEM,
    NFT_MSG_NEWSETELEM,
    DestroyUnsupported,
    ElementBatchError,
    batch_outcome,
)
from gatewayd.apply.tc_netlink import HEADER

NESTED = 0x8000


def messages(frames: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence, body) of every netlink message in `frames`."""
    offset = 0
    while offset < len(frames):
        length, kind, flags, sequence, _pid = HEADER.unpack_from(frames, offset)
        yield kind, flags, sequence, frames[offset + HEADER.size:offset + length]
        offset += (length + 3) & ~3


def attributes(data: bytes) -> list[tuple[int, bytes]]:
    found, offset = [], 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found.append((kind, data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return found


def elements_of(body: bytes) -> tuple[str, str, list[dict[int, bytes]]]:
    """Table, set and each element's attributes (nested ones flattened by path) of an element-list message."""
    family, _version, _resource = struct.unpack_from("=BBH", body)
    assert family == 1  # NFPROTO_INET
    top = dict(attributes(body[4:]))
    listed = top[3 | NESTED]
    found = []
    for kind, element in attributes(listed):
        assert kind == 1 | NESTED  # NFTA_LIST_ELEM
        flat: dict[int, bytes] = {}
        for attribute, payload in attributes(element):
            flat[attribute] = payload
        found.append(flat)
    return top[1].decode(), top[2].decode(), found


def test_one_batch_destroys_then_adds_every_map_between_begin_and_end() -> None:
    maps: list[tuple[str, Sequence[Element]]] = [
        ("learned_v4", [("192.0.2.7", "set_app_10", 300), ("198.51.100.9", "set_app_11", 30)]),
        ("learned_v6", []),  # nothing for it: no message
        ("learned_v6_other", [("2001:db8::7", "set_app_12", 86400)]),
    ]
    frames, kinds = replace_batch("inet", "gatewayd", maps, 40)
    sent = list(messages(frames))
    assert [kind for kind, *_ in sent] == [0x10, 10 << 8 | NFT_MSG_DESTROYSETELEM, 10 << 8 | NFT_MSG_NEWSETELEM,
                                           10 << 8 | NFT_MSG_DESTROYSETELEM, 10 << 8 | NFT_MSG_NEWSETELEM, 0x11]
    assert [sequence for _, _, sequence, _ in sent] == [40, 41, 42, 43, 44, 45]
    assert kinds == {41: "destroy", 42: "add", 43: "destroy", 44: "add"}
    begin = sent[0][3]
    assert struct.unpack("=BBH", begin) == (0, 0, struct.unpack("=H", struct.pack("!H", 10))[0])  # res_id: big-endian
    assert [flags & 0x405 for _, flags, _, _ in sent[1:5]] == [0x5, 0x405, 0x5, 0x405]  # ACK; add with CREATE
    table, map_name, destroyed = elements_of(sent[1][3])
    assert (table, map_name) == ("gatewayd\0", "learned_v4\0")
    assert [attributes(e[1 | NESTED]) for e in destroyed] == [[(1, bytes([192, 0, 2, 7]))],
                                                               [(1, bytes([198, 51, 100, 9]))]]
    assert all(set(e) == {1 | NESTED} for e in destroyed)  # a destroy names the key only
    _, _, added = elements_of(sent[2][3])
    assert struct.unpack("!Q", added[0][4]) == (300_000,)  # NFTA_SET_ELEM_TIMEOUT, milliseconds
    verdict = dict(attributes(dict(attributes(added[0][2 | NESTED]))[2 | NESTED]))
    assert struct.unpack("!i", verdict[1]) == (-4,) and verdict[2] == b"set_app_10\0"  # goto set_app_10
    _, v6_name, v6 = elements_of(sent[4][3])
    assert v6_name == "learned_v6_other\0"
    assert attributes(v6[0][1 | NESTED]) == [(1, bytes.fromhex("20010db8000000000000000000000007"))]


def test_the_batch_outcome_tells_a_missing_destroy_from_a_refused_batch() -> None:
    kinds = {2: "destroy", 3: "add"}
    batch_outcome(kinds, 1, {2: 0, 3: 0})
    with pytest.raises(DestroyUnsupported):
        batch_outcome(kinds, 1, {2: -errno.EINVAL, 3: 0})  # a kernel before 6.3: an unknown message type
    with pytest.raises(ElementBatchError) as refused:
        batch_outcome(kinds, 1, {2: 0, 3: -errno.ENOENT})  # e.g. no such chain
    assert refused.value.code == errno.ENOENT and not isinstance(refused.value, DestroyUnsupported)
    with pytest.raises(ElementBatchError) as both:
        batch_outcome(kinds, 1, {2: -errno.EINVAL, 3: -errno.EINVAL})  # the adds too: not the destroy's fault
    assert not isinstance(both.value, DestroyUnsupported)
    with pytest.raises(ElementBatchError) as commit:
        batch_outcome(kinds, 1, {1: -errno.ENOMEM, 2: 0, 3: 0})  # a failed commit is told on the begin
    assert commit.value.code == errno.ENOMEM


class ScriptedNft:
    """libnftables refusing any script that adds an element of `clashing` (present with another chain)
    unless the same script deletes it first."""

    clashing = "192.0.2.2"
    scripts: ClassVar[list[str]] = []

    def set_json_output(self, value: bool) -> None:
        pass

    def set_terse_output(self, value: bool) -> None:
        pass

    def set_handle_output(self, value: bool) -> None:
        pass

    def cmd(self, command: str) -> tuple[int, str, str]:
        ScriptedNft.scripts.append(command)
        if f"{self.clashing} timeout" in command and "delete element" not in command:
            return 1, "", "Error: Could not process rule: File exists"
        return 0, "", ""


def test_without_the_destroy_a_refused_add_goes_element_by_element_and_a_clash_is_replaced() -> None:
    ScriptedNft.scripts = []
    elements = [LearnedElement("192.0.2.1", "set_app_1", 60), LearnedElement("192.0.2.2", "set_app_2", 60)]
    NftKernel(ScriptedNft).write_learned([("learned_v4", elements), ("learned_v6", [])])
    add = "add element inet gatewayd learned_v4 {{ {} timeout 60s : goto {} }}\n"
    assert ScriptedNft.scripts == [
        "add element inet gatewayd learned_v4 { 192.0.2.1 timeout 60s : goto set_app_1, "
        "192.0.2.2 timeout 60s : goto set_app_2 }\n",  # refused: 192.0.2.2 goes elsewhere in the kernel
        add.format("192.0.2.1", "set_app_1"),
        add.format("192.0.2.2", "set_app_2"),
        "delete element inet gatewayd learned_v4 { 192.0.2.2 }\n" + add.format("192.0.2.2", "set_app_2"),
    ]


class ScriptedSocket(LearnedMapSocket):
    def __init__(self, failure: ElementBatchError | None) -> None:
        super().__init__("inet", "gatewayd")
        self.failure = failure
        self.sent: list[Sequence[tuple[str, Sequence[Element]]]] = []

    def replace(self, maps: Sequence[tuple[str, Sequence[Element]]]) -> None:
        self.sent.append(maps)
        if self.failure is not None:
            raise self.failure


class CountingNft(NftKernel):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Sequence[tuple[str, list[LearnedElement]]]] = []

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        self.batches.append(batches)


def test_a_kernel_without_the_destroy_switches_to_nft_once_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    nft = CountingNft()
    unsupported = ScriptedSocket(DestroyUnsupported("no destroy", errno.EINVAL))
    maps = KernelLearnedMaps(nft, maps_socket=unsupported)
    batch = [("learned_v4", [LearnedElement("192.0.2.1", "set_app_1", 60)])]
    with caplog.at_level(logging.WARNING, logger="gatewayd.learned"):
        maps.write_learned(batch)
        maps.write_learned(batch)
    assert unsupported.sent == [[("learned_v4", [("192.0.2.1", "set_app_1", 60)])]]  # tried once
    assert nft.batches == [batch, batch] and not maps.destroy_supported
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=learned_destroy_unsupported"]


def test_a_refused_netlink_batch_is_an_nft_error_and_no_fallback() -> None:
    nft = CountingNft()
    maps = KernelLearnedMaps(nft, maps_socket=ScriptedSocket(ElementBatchError("no such chain", errno.ENOENT)))
    with pytest.raises(NftError):
        maps.write_learned([("learned_v4", [LearnedElement("192.0.2.1", "set_app_9", 60)])])
    assert nft.batches == [] and maps.destroy_supported
