"""Read a LAN port's own addresses and its neighbour table over rtnetlink, parsed with `struct`.

The guard needs both at apply time (apply/guard_state.py). pyroute2 did this,
but importing it costs the daemon 22 MiB of its 40 MiB budget (NDB, IPDB,
sqlite3, asyncio and every netlink family load with the package), for two
dumps of a few dozen entries. The dump loop and attribute walk are tc_netlink's.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from gatewayd.apply.tc_netlink import HEADER, NETLINK_ROUTE, attributes, dump_messages
from gatewayd.policy.model import IPAddress

RTM_GETADDR, RTM_GETNEIGH = 22, 30
IFA_ADDRESS, IFA_LOCAL = 1, 2
NDA_DST, NDA_LLADDR = 1, 2
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, ifindex
NDMSG = struct.Struct("=BBHiHBB")  # family, pad, pad, ifindex, state, flags, type



@dataclass(frozen=True)
class Neighbour:
    address: IPAddress
    mac: str  # lower case, colon separated
    state: int  # NUD_* bits


def interface_addresses(ifindex: int) -> list[IPAddress]:
    """Every address on the interface, both families (IFA_LOCAL where a peer address makes them differ)."""
    found = []
    for header, found_attributes in _dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), IFADDRMSG.size):
        if IFADDRMSG.unpack_from(header)[4] != ifindex:
            continue
        raw = found_attributes.get(IFA_LOCAL) or found_attributes.get(IFA_ADDRESS)
        if raw is not None and len(raw) in (4, 16):
            found.append(ipaddress.ip_address(raw))
    return found


def neighbours(ifindex: int) -> list[Neighbour]:
    """The neighbour table of one interface: entries with both an address and a link-layer address."""
    found = []
    request = NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0)
    for header, found_attributes in _dump(RTM_GETNEIGH, request, NDMSG.size):
        _family, _pad1, _pad2, index, state, _flags, _type = NDMSG.unpack_from(header)
        destination, lladdr = found_attributes.get(NDA_DST), found_attributes.get(NDA_LLADDR)
        if index != ifindex or destination is None or len(destination) not in (4, 16) or not lladdr:
            continue
        found.append(Neighbour(ipaddress.ip_address(destination), ":".join(f"{b:02x}" for b in lladdr), state))
    return found


def _dump(message_type: int, request: bytes, header_size: int) -> Iterator[tuple[bytes, dict[int, bytes]]]:
    """(the fixed header, attributes by type) of every message a dump returns."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        for data, offset, length in dump_messages(sock, 1, message_type, request):
            start = offset + HEADER.size
            yield (data[start:start + header_size],
                   dict(attributes(data, start + ((header_size + 3) & ~3), offset + length)))
