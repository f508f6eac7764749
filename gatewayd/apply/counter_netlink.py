"""Read nf_tables named counters with a netlink dump of one table's counters.

The gateway's ARP defence (daemon/gateway_arp.py) watches one counter several
times a second; through libnftables each read would build a context and a
cache of the whole table (~0.5 ms), by netlink it is one small dump. Built with
`struct`, like the rest of apply/'s hand-packed netlink (set_dump_netlink.py).
"""

from __future__ import annotations

import errno
import socket
import struct

from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER, NFGEN_HEADER, NFNETLINK_V0
from gatewayd.apply.set_elements_netlink import NFNL_SUBSYS_NFTABLES, NFPROTO_BY_FAMILY, strz
from gatewayd.apply.tc_netlink import HEADER, TcBatchError, attributes, dump_messages, encode_attribute

NFT_MSG_NEWOBJ, NFT_MSG_GETOBJ = 18, 19
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFT_OBJECT_COUNTER = 1
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
SOCKET_TIMEOUT_SECONDS = 1.0
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")


def get_counters_request(family: str, table: str) -> bytes:
    """The body of the dump request: nfgenmsg, then the table and the object type as filters."""
    return (NFGEN_HEADER.pack(NFPROTO_BY_FAMILY[family], NFNETLINK_V0, 0)
            + encode_attribute(NFTA_OBJ_TABLE, strz(table))
            + encode_attribute(NFTA_OBJ_TYPE, U32.pack(NFT_OBJECT_COUNTER)))


def counter_of_message(data: bytes, offset: int, length: int) -> tuple[str, int, int] | None:
    """(name, packets, bytes) of one NFT_MSG_NEWOBJ message of a counter; None for anything else."""
    if HEADER.unpack_from(data, offset)[1] != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWOBJ):
        return None
    name: str | None = None
    kind = packets = octets = 0
    for attribute, payload in attributes(data, offset + HEADER.size + NFGEN_HEADER.size, offset + length):
        if attribute == NFTA_OBJ_NAME:
            name = payload.rstrip(b"\0").decode(errors="replace")
        elif attribute == NFTA_OBJ_TYPE and len(payload) == 4:
            (kind,) = U32.unpack(payload)
        elif attribute == NFTA_OBJ_DATA:
            for inner, value in attributes(payload, 0, len(payload)):
                if inner == NFTA_COUNTER_PACKETS and len(value) == 8:
                    (packets,) = U64.unpack(value)
                elif inner == NFTA_COUNTER_BYTES and len(value) == 8:
                    (octets,) = U64.unpack(value)
    if name is None or kind != NFT_OBJECT_COUNTER:
        return None
    return name, packets, octets


class CounterReader:
    """A netlink socket that reads a table's named counters (one thread's)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._sequence = 0

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def packets(self, family: str, table: str) -> dict[str, int]:
        """Packets of every named counter of the table; {} when the table is not there."""
        self._sequence = self._sequence % 0x7FFF_FFFF + 1
        found: dict[str, int] = {}
        try:
            for data, offset, length in dump_messages(self._open(), self._sequence,
                                                      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETOBJ,
                                                      get_counters_request(family, table)):
                counter = counter_of_message(data, offset, length)
                if counter is not None:
                    found[counter[0]] = counter[1]
        except TcBatchError as exc:
            if exc.code == errno.ENOENT:
                return {}
            self.close()
            raise
        except OSError:
            self.close()  # a half-read dump would be misread by the next one
            raise
        return found
