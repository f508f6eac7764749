"""Send gratuitous ARP for the gateway's own addresses on a LAN interface.

A gratuitous ARP is a request whose sender and target address are both the
announced address (RFC 5227 section 3 calls it an ARP Announcement). Linux
takes it even within a neighbour entry's locktime (net/ipv4/arp.c, arp_is_garp),
so it repairs a host that an attacker's forged reply has just poisoned, where
a plain reply would be ignored for a second.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\0" * 6
ARP_HEADER = struct.Struct("!HHBBH")  # hardware type, protocol type, sizes, operation
ARPHRD_ETHER, ETH_P_IP, ARPOP_REQUEST = 1, 0x0800, 1
MINIMUM_FRAME = 60  # Ethernet's minimum without the FCS; padded like the kernel's own ARP


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)


def gratuitous_arp(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """The Ethernet frame announcing that `address` is at `mac`."""
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    own = address.packed
    frame = (BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
             + ARP_HEADER.pack(ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST)
             + mac + own + ZERO_MAC + own)
    return frame + b"\0" * (MINIMUM_FRAME - len(frame))


def interface_mac(interface: str) -> bytes:
    with open(f"/sys/class/net/{interface}/address") as handle:
        return parse_mac(handle.read().strip())


def announce(interface: str, addresses: Iterable[ipaddress.IPv4Address]) -> int:
    """Send one gratuitous ARP per address out of `interface`; the number sent."""
    frames = [gratuitous_arp(interface_mac(interface), address) for address in addresses]
    if not frames:
        return 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, ETH_P_ARP))
        for frame in frames:
            sock.send(frame)
    return len(frames)
