"""Clear rules-epoch ct label bits from every flow before they could tag an epoch wrongly.

nft can set a conntrack label bit but not clear it, and epochs cycle through
marks.EPOCH_LABELS bits (compile/decision_epoch.py). A flow that was decided
EPOCH_LABELS epochs ago and is still open would carry the bit of the epoch about to
start and skip the rules it has not seen; so the bit is cleared first. The same for
every epoch bit at the daemon's first apply (flows from an earlier run carry bits of
its epochs) and at an HA takeover (conntrackd brings the peer's flows with the peer's
bits: apply/ha_takeover.py). Through ctnetlink, CTA_LABELS with CTA_LABELS_MASK: only
those bits change, the other tools' labels stay; only flows that carry one are written.

A conntrack dump per family, then one update (IPCTNL_MSG_CT_NEW without NLM_F_CREATE) per
labelled entry, naming it by its dumped CTA_TUPLE_ORIG (and CTA_ZONE) copied verbatim; built
with `struct` like apply/conntrack_events.py: pyroute2 cost the daemon ~11 MiB and 120 ms of
imports at every start, for this one job (issue 14).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gatewayd.apply.conntrack_events import IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK
from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER, NFGEN_HEADER, NFNETLINK_V0, NLM_F_ACK, NLM_F_REQUEST
from gatewayd.apply.tc_netlink import (
    HEADER,
    TcBatchError,
    acknowledgements,
    dump_messages,
    encode_attribute,
)
from gatewayd.compile import marks
from gatewayd.compile.decision_epoch import epoch_label

log = logging.getLogger("gatewayd.apply")

FAMILIES = (socket.AF_INET, socket.AF_INET6)
IPCTNL_MSG_CT_GET = 1
CTA_TUPLE_ORIG, CTA_ZONE, CTA_LABELS, CTA_LABELS_MASK = 1, 18, 22, 23
# The kernel's label bits are an array of two unsigned longs: host-order 64-bit words, low word first.
LABEL_WORDS = struct.Struct("=QQ")
LOW_BITS = 0xFFFF_FFFF_FFFF_FFFF
UPDATES_PER_SEND = 256  # acks of a chunk fit the socket's buffer many times over
SOCKET_TIMEOUT_SECONDS = 5.0  # the kernel answers while handling each send: only a broken kernel waits


@dataclass(frozen=True)
class LabelledEntry:
    """A dumped conntrack entry: its family, its raw identifying attributes and its label bits."""

    family: int
    identity: bytes  # CTA_TUPLE_ORIG, then CTA_ZONE if the entry has one: encoded attributes, as dumped
    labels: int


def dump_request_body(family: int) -> bytes:
    return NFGEN_HEADER.pack(family, NFNETLINK_V0, 0)


def parse_entry(data: bytes, offset: int, length: int) -> LabelledEntry:
    """One IPCTNL_MSG_CT_NEW message of a dump, at `offset` in `data`."""
    start = offset + HEADER.size
    family = NFGEN_HEADER.unpack_from(data, start)[0]
    identity, labels = b"", 0
    position, end = start + NFGEN_HEADER.size, offset + length
    while position + 4 <= end:
        attribute_length, kind = struct.unpack_from("=HH", data, position)
        if attribute_length < 4:
            break
        if kind & 0x3FFF in (CTA_TUPLE_ORIG, CTA_ZONE):
            # Verbatim, padding included: the kernel reads its own encoding back.
            identity += data[position:position + ((attribute_length + 3) & ~3)]
        elif kind & 0x3FFF == CTA_LABELS and attribute_length >= 4 + LABEL_WORDS.size:
            low, high = LABEL_WORDS.unpack_from(data, position + 4)
            labels = low | high << 64
        position += (attribute_length + 3) & ~3
    return LabelledEntry(family, identity, labels)


def clear_request(entry: LabelledEntry, bits: int, sequence: int) -> bytes:
    """The update that clears `bits` of the entry's labels and leaves every other label bit as it is."""
    body = (NFGEN_HEADER.pack(entry.family, NFNETLINK_V0, 0) + entry.identity
            + encode_attribute(CTA_LABELS, LABEL_WORDS.pack(0, 0))
            + encode_attribute(CTA_LABELS_MASK, LABEL_WORDS.pack(bits & LOW_BITS, bits >> 64 & LOW_BITS)))
    message_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    return HEADER.pack(HEADER.size + len(body), message_type, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body


def clear_label_bits(bits: int) -> int:
    """Clear the ct label bits set in `bits` (a 128-bit mask) on every conntrack entry that has one;
    how many entries were changed. OSError when ctnetlink refuses."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        # The whole dump first: the updates' acks would land among the dump's messages.
        labelled = [entry for entry in _dump_entries(sock) if entry.labels & bits]
        cleared = 0
        for start in range(0, len(labelled), UPDATES_PER_SEND):
            cleared += _send_updates(sock, labelled[start:start + UPDATES_PER_SEND], bits)
    return cleared


def _dump_entries(sock: socket.socket) -> Iterator[LabelledEntry]:
    message_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    for sequence, family in enumerate(FAMILIES, start=1):
        try:
            for data, offset, length in dump_messages(sock, sequence, message_type, dump_request_body(family)):
                yield parse_entry(data, offset, length)
        except TcBatchError as exc:
            raise OSError(exc.code, f"conntrack dump: {os.strerror(exc.code)}") from exc


def _send_updates(sock: socket.socket, entries: list[LabelledEntry], bits: int) -> int:
    """Send one chunk of updates; how many the kernel made. An entry gone meanwhile is no error."""
    first = len(FAMILIES) + 1  # after the dumps' sequence numbers
    sock.sendall(b"".join(clear_request(entry, bits, first + index) for index, entry in enumerate(entries)))
    waiting = set(range(first, first + len(entries)))
    cleared, failure = 0, 0
    while waiting:
        for sequence, code in acknowledgements(sock.recv(1 << 16)):
            if sequence not in waiting:
                continue
            waiting.discard(sequence)
            if code == 0:
                cleared += 1
            elif -code != errno.ENOENT and not failure:  # ENOENT: the flow ended, nothing to clear
                failure = -code
    if failure:
        raise OSError(failure, f"conntrack update: {os.strerror(failure)}")
    return cleared


def ready_epoch_label(epoch: int, *, first_of_run: bool, clear: Callable[[int], int] = clear_label_bits) -> None:
    """Before `epoch` starts: the first of a run clears every epoch bit; later, an epoch whose bit an
    earlier epoch used clears that bit."""
    if first_of_run:
        bits = marks.EPOCH_LABEL_MASK
    elif epoch >= marks.EPOCH_LABELS:
        bits = 1 << epoch_label(epoch)
    else:
        return  # the bit's first use in this run, and no flow kept one from before it
    try:
        cleared = clear(bits)
    except OSError as exc:
        # Flows that carry such a bit could miss this epoch's change: say so, go on with the change.
        log.warning("event=epoch_label_clear_failed epoch=%d error=%r", epoch, str(exc))
    else:
        log.info("event=epoch_labels_cleared epoch=%d flows=%d", epoch, cleared)
