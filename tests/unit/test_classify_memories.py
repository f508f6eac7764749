"""The classifier's memories between flows (classify/memories.py): expiry, bound, revision."""

from __future__ import annotations

from gatewayd.classify.memories import ExpiringMemory


def test_an_entry_is_recalled_until_its_expiry_and_not_after() -> None:
    memory: ExpiringMemory[str, str] = ExpiringMemory(capacity=4)
    memory.remember("a", "app", expires_at=10.0)
    assert memory.recall("a", now=10.0) == "app"  # the expiry instant itself still counts
    assert memory.recall("a", now=10.5) is None
    assert len(memory) == 1  # a plain recall leaves the expired entry for eviction
    assert memory.recall("a", now=10.5, forget_expired=True) is None
    assert len(memory) == 0
    assert memory.recall("never", now=0.0) is None


def test_the_least_recently_written_entry_goes_first_when_full() -> None:
    memory: ExpiringMemory[str, int] = ExpiringMemory(capacity=2)
    memory.remember("a", 1, 100.0)
    memory.remember("b", 2, 100.0)
    memory.remember("a", 3, 100.0)  # rewritten: now the newest
    memory.remember("c", 4, 100.0)  # over capacity: "b" is the oldest write
    assert len(memory) == 2
    assert (memory.recall("a", 0.0), memory.recall("b", 0.0), memory.recall("c", 0.0)) == (3, None, 4)


def test_revise_rewrites_or_drops_values_and_keeps_expiry_and_order() -> None:
    memory: ExpiringMemory[str, str] = ExpiringMemory(capacity=3)
    memory.remember("a", "keep", 5.0)
    memory.remember("b", "drop", 50.0)
    memory.remember("c", "keep", 50.0)
    memory.revise(lambda _key, value: None if value == "drop" else value.upper())
    assert (memory.recall("a", 1.0), memory.recall("b", 1.0), memory.recall("c", 1.0)) == ("KEEP", None, "KEEP")
    assert memory.recall("a", 6.0) is None  # expiry unchanged by the revision
    memory.remember("d", "new", 50.0)
    memory.remember("e", "new", 50.0)  # capacity 3: "a", the oldest write, goes first
    assert len(memory) == 3 and memory.recall("c", 1.0) == "KEEP"
