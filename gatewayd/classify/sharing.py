"""One object for equal values that many flows hold (decisions, server addresses).

A full flow table holds tens of thousands of flows, most of them to a few
servers and with a few distinct decisions; each flow keeping its own equal copy
made those copies a fifth of a tracked flow's bytes (issue 14). The table is
bounded: when full it starts afresh, and the values in use stay with their flows.
Only immutable values may be shared.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SharedValues(Generic[Key, Value]):
    __slots__ = ("_capacity", "_values")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._values: dict[Key, Value] = {}

    def __len__(self) -> int:
        return len(self._values)

    def share(self, key: Key, value: Value) -> Value:
        """The value first shared under `key` if the table still holds it, else `value` (now shared)."""
        known = self._values.get(key)
        if known is not None:
            return known
        if len(self._values) >= self._capacity:
            self._values.clear()
        self._values[key] = value
        return value
