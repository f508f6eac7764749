"""What the classifier remembers between flows: addresses DNS taught, endpoints of calls, servers named by SNI.

All of them have the same shape: key -> value until an expiry time, at most
`capacity` entries, the least recently written one evicted first. An entry
past its expiry is as good as absent; it is dropped when a newer answer
overwrites it, when it is evicted, or when a caller asks to forget it.
`dropped`, when given, hears of every entry that leaves (evicted, forgotten,
revised away), so a caller can keep its own books on what the memory holds
(classify/dns_learning.py counts each client's entries).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ExpiringMemory(Generic[Key, Value]):
    __slots__ = ("_dropped", "_entries", "capacity")

    def __init__(self, capacity: int, dropped: Callable[[Key, Value], None] | None = None) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, tuple[Value, float]] = OrderedDict()  # key -> (value, expires at)
        self._dropped = dropped

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, key: Key, value: Value, expires_at: float) -> None:
        """Store (a rewrite replaces the value without telling `dropped`: the caller knows it)."""
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)  # a rewrite counts as new for eviction
        entries[key] = (value, expires_at)
        while len(entries) > self.capacity:
            evicted_key, (evicted, _) = entries.popitem(last=False)
            if self._dropped is not None:
                self._dropped(evicted_key, evicted)

    def recall(self, key: Key, now: float, forget_expired: bool = False) -> Value | None:
        """The value, unless absent or expired; `forget_expired` also drops an expired entry."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] < now:
            if forget_expired:
                self.forget(key)
            return None
        return entry[0]

    def entry(self, key: Key) -> tuple[Value, float] | None:
        """(value, expires at) as stored, expired or not."""
        return self._entries.get(key)

    def forget(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and self._dropped is not None:
            self._dropped(key, entry[0])

    def revise(self, revised: Callable[[Key, Value], Value | None]) -> None:
        """Replace every value by `revised(key, value)`, or drop it for None; expiries and order stay."""
        for key, (value, expires_at) in list(self._entries.items()):
            new_value = revised(key, value)
            if new_value is None:
                self.forget(key)
            else:
                self._entries[key] = (new_value, expires_at)


# (packed address, port) of one end of a call -> app: a call's ICE checks reuse its ports
CallEndpoints = ExpiringMemory[tuple[bytes, int], str]
# (packed client, packed server) -> the app the client's TLS/QUIC server name gave that server
NamedServers = ExpiringMemory[tuple[bytes, bytes], str]
