"""Put learned addresses into the kernel's learned maps whatever the maps hold for them now.

An nft `add element` keeps an element that is already there, and refuses the
whole transaction (EEXIST) when the element there goes to another chain; a
`delete element` refuses it (ENOENT) when the element is not there. So a writer
that adds must know what the kernel holds, which costs memory for every address
it ever wrote (issue 14: ~43 MiB at the learned maps' size). NFT_MSG_DESTROYSETELEM
(Linux >= 6.3) deletes an element if it is there and is no error if not: a
destroy and an add of the same addresses in one transaction leave exactly the new
elements, whatever was there, and a lookup never misses an address that was
there before (the transaction is atomic). Then the writer's memory of what it
wrote (learned_writer.LearnedAddressBook) is only a cache that saves re-sending,
and may forget.

nft 1.0.6 (Debian 12) has no `destroy` command, so the batch is built here with
`struct`, like the other hand-packed netlink of apply/ (tc_netlink.py,
epoch_labels.py). A kernel without the message (EINVAL for the destroy, every add
accepted) turns this off with one log line; the caller then falls back to nft's
add, element by element where one clashes (NftKernel.write_learned).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import struct
from collections.abc import Sequence

from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER, NFGEN_HEADER, NFNETLINK_V0, NLM_F_ACK, NLM_F_REQUEST
from gatewayd.apply.nft import LearnedElement, NftError, NftKernel
from gatewayd.apply.tc_netlink import HEADER, acknowledgements, encode_attribute
from gatewayd.compile.kernel_names import TABLE_FAMILY, TABLE_NAME

log = logging.getLogger("gatewayd.learned")

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DESTROYSETELEM = 30  # Linux 6.3 (uapi nf_tables.h: after NFT_MSG_DESTROYSET)
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NFPROTO_BY_FAMILY = {"inet": 1, "ip": 2, "ip6": 10}

NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_TIMEOUT = 1, 2, 4
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFT_GOTO = -4

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # an error ack without a copy of the (up to ~60 KiB) message it answers
RECEIVE_BUFFER_BYTES = 1 << 16
SOCKET_TIMEOUT_SECONDS = 5.0  # the kernel answers a batch while handling it: only a broken kernel waits

# (address, chain, timeout in seconds): one element of a learned map.
Element = tuple[str, str, int]


class LearnedBatchError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class DestroyUnsupported(LearnedBatchError):
    """The kernel does not know NFT_MSG_DESTROYSETELEM (before Linux 6.3)."""


def nested(kind: int, payload: bytes) -> bytes:
    return encode_attribute(kind | NLA_F_NESTED, payload)


def strz(text: str) -> bytes:
    return text.encode() + b"\0"


def element_key(address: str) -> bytes:
    """The key of a learned map's element: the address in network order, as the set's key type holds it."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    return nested(NFTA_SET_ELEM_KEY, encode_attribute(NFTA_DATA_VALUE, packed))


@functools.lru_cache(maxsize=1024)  # one per app chain of the table in force
def goto_data(chain: str) -> bytes:
    verdict = (encode_attribute(NFTA_VERDICT_CODE, struct.pack("!i", NFT_GOTO))
               + encode_attribute(NFTA_VERDICT_CHAIN, strz(chain)))
    return nested(NFTA_SET_ELEM_DATA, nested(NFTA_DATA_VERDICT, verdict))


def added_element(key: bytes, chain: str, timeout_seconds: int) -> bytes:
    timeout = encode_attribute(NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", timeout_seconds * 1000))
    return nested(NFTA_LIST_ELEM, key + timeout + goto_data(chain))


def destroyed_element(key: bytes) -> bytes:
    return nested(NFTA_LIST_ELEM, key)


def element_list_message(message_type: int, flags: int, family: str, table: str, map_name: str,
                         elements: bytes, sequence: int) -> bytes:
    body = (NFGEN_HEADER.pack(NFPROTO_BY_FAMILY[family], NFNETLINK_V0, 0)
            + encode_attribute(NFTA_SET_ELEM_LIST_TABLE, strz(table))
            + encode_attribute(NFTA_SET_ELEM_LIST_SET, strz(map_name))
            + nested(NFTA_SET_ELEM_LIST_ELEMENTS, elements))
    return HEADER.pack(HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | message_type,
                       NLM_F_REQUEST | NLM_F_ACK | flags, sequence, 0) + body


def batch_marker(message_type: int, sequence: int) -> bytes:
    # The batch's begin and end name the subsystem in the resource id, big-endian.
    body = NFGEN_HEADER.pack(socket.AF_UNSPEC, NFNETLINK_V0, socket.htons(NFNL_SUBSYS_NFTABLES))
    return HEADER.pack(HEADER.size + len(body), message_type, NLM_F_REQUEST, sequence, 0) + body


def replace_batch(family: str, table: str, maps: Sequence[tuple[str, Sequence[Element]]],
                  first_sequence: int) -> tuple[bytes, dict[int, str]]:
    """One nf_tables transaction that destroys then adds every element of every map; and what each
    acknowledged message was ("destroy" or "add", by sequence number)."""
    frames = [batch_marker(NFNL_MSG_BATCH_BEGIN, first_sequence)]
    kinds: dict[int, str] = {}
    sequence = first_sequence
    for map_name, elements in maps:
        if not elements:
            continue
        keys = [element_key(address) for address, _chain, _timeout in elements]
        bodies = (("destroy", NFT_MSG_DESTROYSETELEM, 0, b"".join(destroyed_element(key) for key in keys)),
                  ("add", NFT_MSG_NEWSETELEM, NLM_F_CREATE,
                   b"".join(added_element(key, chain, timeout) for key, (_, chain, timeout) in zip(keys, elements,
                                                                                                    strict=True))))
        for kind, message_type, flags, body in bodies:
            sequence += 1
            kinds[sequence] = kind
            frames.append(element_list_message(message_type, flags, family, table, map_name, body, sequence))
    frames.append(batch_marker(NFNL_MSG_BATCH_END, sequence + 1))
    return b"".join(frames), kinds


def batch_outcome(kinds: dict[int, str], first_sequence: int, codes: dict[int, int]) -> None:
    """Raise for a refused batch: DestroyUnsupported when only the destroys were refused as unknown."""
    begin_code = codes.get(first_sequence, 0)  # a failed commit is told on the batch's begin
    failed = {sequence: code for sequence, code in codes.items() if code != 0 and sequence in kinds}
    if not failed and begin_code == 0:
        return
    if failed and all(kinds[s] == "destroy" for s in failed) and \
            all(-code in (errno.EINVAL, errno.EOPNOTSUPP) for code in failed.values()):
        raise DestroyUnsupported("the kernel has no NFT_MSG_DESTROYSETELEM", -next(iter(failed.values())))
    code = -(next(iter(failed.values())) if failed else begin_code)
    raise LearnedBatchError(f"learned maps: {os.strerror(code)}", code)


class LearnedMapSocket:
    """A netlink socket for the learned maps' transactions (one thread's: the learned writer's)."""

    def __init__(self, family: str, table: str) -> None:
        self._family = family
        self._table = table
        self._socket: socket.socket | None = None
        self._sequence = 0

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.bind((0, 0))
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def replace(self, maps: Sequence[tuple[str, Sequence[Element]]]) -> None:
        """Destroy and add the elements in one transaction; LearnedBatchError if the kernel refused it
        (nothing of it applied), OSError if the socket failed."""
        first = self._sequence + 1
        frames, kinds = replace_batch(self._family, self._table, maps, first)
        if not kinds:
            return
        self._sequence = (first + len(kinds) + 1) & 0x7FFF_FFFF
        sock = self._open()
        try:
            sock.sendall(frames)
            codes: dict[int, int] = {}
            while not all(sequence in codes for sequence in kinds):
                for sequence, code in acknowledgements(sock.recv(RECEIVE_BUFFER_BYTES)):
                    codes.setdefault(sequence, code)
        except OSError:
            self.close()  # a half-read answer would be misread by the next batch
            raise
        batch_outcome(kinds, first, codes)


class KernelLearnedMaps:
    """The learned writer's kernel side: destroy + add over netlink where the kernel has the destroy,
    else nft's add (NftKernel.write_learned). Used from the writer's thread only."""

    def __init__(self, nft: NftKernel, maps_socket: LearnedMapSocket | None = None) -> None:
        self._socket = maps_socket if maps_socket is not None else LearnedMapSocket(TABLE_FAMILY, TABLE_NAME)
        self._nft = nft
        self.destroy_supported = True

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        """NftError when the kernel refused the batch (nothing of it applied)."""
        if self.destroy_supported:
            maps = [(name, [(e.address, e.chain, e.timeout_seconds) for e in elements]) for name, elements in batches]
            try:
                self._socket.replace(maps)
                return
            except DestroyUnsupported:
                self.destroy_supported = False
                self._socket.close()
                log.warning("event=learned_destroy_unsupported fallback=nft_add detail=%r",
                            "no NFT_MSG_DESTROYSETELEM (Linux < 6.3): an address whose app changed costs a "
                            "transaction of its own")
            except (LearnedBatchError, OSError) as exc:
                raise NftError(str(exc)) from exc
        self._nft.write_learned(batches)
