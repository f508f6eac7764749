"""Kernel receive timestamps, for measuring how long a queued packet waits before the daemon reads it.

The kernel stamps received packets only while some socket asks for timestamps
(SO_TIMESTAMP turns on a system-wide switch, net_enable_timestamp); the queue
then hands the stamp over with the packet (NFQA_TIMESTAMP, Packet.get_timestamp).
One clock read per received packet for the whole box, so it is a measuring
option (`gatewayd run --measure-queue-wait`, used by bench/classify_speed.py),
not a default.
"""

from __future__ import annotations

import socket

SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux's value; Python builds may lack the name


def enable_receive_timestamps() -> socket.socket:
    """A socket that keeps the kernel stamping received packets for as long as it stays open."""
    keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    except OSError:
        keeper.close()
        raise
    return keeper
