"""What this node of the HA pair knows about itself and its peer: VRRP state and policy hash.

Each daemon sends a small datagram to the peer's sync address every HEARTBEAT_SECONDS
(over the sync link, beside conntrackd): its node name, its VRRP state (the file
`gatewayd ha-notify` writes, apply/ha_state.py) and the SHA-256 of the policy text in force
(Policy.content_sha256: what was loaded, not what the file holds now).
What it hears from the peer is kept for PEER_SILENT_SECONDS; after that the peer's
state is "unknown". The daemon finds which node it is by binding to the nodes' sync
addresses: only its own is an address of this box.

Bounded: datagrams over MAX_DATAGRAM_BYTES, from another address than the peer's sync
address, or not naming the peer are ignored, and at most MAX_READS_PER_POLL are read per
loop round.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.apply.ha_state import UNKNOWN, read_state
from gatewayd.policy.model import HaNode, HaPair

log = logging.getLogger("gatewayd.ha")

PEER_PORT = 3781  # beside conntrackd's 3780 on the sync link
HEARTBEAT_SECONDS = 1.0
PEER_SILENT_SECONDS = 3.5  # three heartbeats missed
MAX_DATAGRAM_BYTES = 512
MAX_READS_PER_POLL = 16


@dataclass(frozen=True)
class PeerHeard:
    node: str
    state: str
    policy_hash: str
    at: float  # monotonic


class HaPeer:
    def __init__(self, runtime_dir: Path, local_node: str | None = None, port: int = PEER_PORT) -> None:
        """`local_node` names this node outright (tests); otherwise the bind decides. `port`: both
        nodes' (tests pick a free one, so runs beside a real pair or each other cannot collide)."""
        self.runtime_dir = runtime_dir
        self.port = port
        self.local_node = local_node
        self.node: HaNode | None = None
        self.peer: HaNode | None = None
        self.policy_hash = ""
        self.heard: PeerHeard | None = None
        self._socket: socket.socket | None = None
        self._next_heartbeat = 0.0

    def adopt(self, pair: HaPair | None, policy_hash: str) -> None:
        """The policy in force: its ha section (None: not a pair) and its content hash."""
        self.policy_hash = policy_hash
        if pair is None:
            self.close()
            self.node = self.peer = None
            return
        nodes = pair.nodes if self.local_node is None else tuple(n for n in pair.nodes if n.name == self.local_node)
        found = self._bind_own(nodes)
        if found is None:
            log.warning("event=ha_peer_unbound reason=no_sync_address_of_this_box port=%d", self.port)
            return
        self.node = found
        self.peer = pair.peer_of(found.name)
        self._next_heartbeat = 0.0  # tell the peer about the new policy at once

    def _bind_own(self, nodes: tuple[HaNode, ...]) -> HaNode | None:
        if self.node is not None and self._socket is not None and any(n == self.node for n in nodes):
            return self.node  # already bound to it (a reload keeps the socket)
        self.close()
        for node in nodes:
            family = socket.AF_INET if node.sync_address.version == 4 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((str(node.sync_address), self.port))
            except OSError as error:
                sock.close()
                if error.errno != errno.EADDRNOTAVAIL:
                    log.warning("event=ha_peer_bind_failed address=%s error=%r", node.sync_address, str(error))
                continue
            sock.setblocking(False)
            self._socket = sock
            return node
        return None

    def fds(self) -> list[int]:
        return [self._socket.fileno()] if self._socket is not None else []

    def poll(self, now: float | None = None) -> bool:
        """Read what the peer sent; send our heartbeat when due. True when it was (a second passed)."""
        if self._socket is None or self.peer is None or self.node is None:
            return False
        now = time.monotonic() if now is None else now
        self._read(now)
        if now < self._next_heartbeat:
            return False
        self._next_heartbeat = now + HEARTBEAT_SECONDS
        message = json.dumps({"node": self.node.name, "state": self.own_state(),
                              "policy_hash": self.policy_hash}).encode()
        try:
            self._socket.sendto(message, (str(self.peer.sync_address), self.port))
        except OSError:
            pass  # the sync link is down or the peer gone: its silence is what the report shows
        return True

    def _read(self, now: float) -> None:
        assert self._socket is not None and self.peer is not None
        for _ in range(MAX_READS_PER_POLL):
            try:
                data, sender = self._socket.recvfrom(MAX_DATAGRAM_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) > MAX_DATAGRAM_BYTES or sender[0] != str(self.peer.sync_address):
                continue
            try:
                message = json.loads(data)
                heard = PeerHeard(str(message["node"]), str(message["state"]), str(message["policy_hash"]), now)
            except (ValueError, KeyError, TypeError):
                continue
            if heard.node == self.peer.name:
                self.heard = heard

    def own_state(self) -> str:
        return read_state(self.runtime_dir)

    def peer_state(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.heard is None or now - self.heard.at > PEER_SILENT_SECONDS:
            return UNKNOWN
        return self.heard.state

    def same_policy(self, now: float | None = None) -> bool | None:
        """True or False while the peer is heard; None when it is not."""
        now = time.monotonic() if now is None else now
        if self.heard is None or now - self.heard.at > PEER_SILENT_SECONDS:
            return None
        return self.heard.policy_hash == self.policy_hash

    def report(self, now: float | None = None) -> dict[str, Any] | None:
        if self.node is None or self.peer is None:
            return None
        return {"node": self.node.name, "state": self.own_state(), "peer": self.peer.name,
                "peer_state": self.peer_state(now), "policy_hash": self.policy_hash,
                "same_policy": self.same_policy(now)}

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
