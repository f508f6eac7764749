"""The learned-address writer: the verdict loop hands addresses over without waiting; a thread
writes them in batches (one nft transaction each), coalesced, bounded, counted."""

from __future__ import annotations

import ipaddress
import threading
import time
import tracemalloc
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply import learned_writer
from gatewayd.apply.learned_writer import LearnedAddressBook, LearnedWriter, LearnedWriteStats
from gatewayd.apply.nft import LearnedElement, NftError
from gatewayd.classify.engine import LearnedAddress
from gatewayd.compile.kernel_names import MAP_LEARNED_V4, MAP_LEARNED_V6, set_app_chain
from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.learned_writes import LearnedWriteCollector

NUMBERS = {"erp": 10, "crm": 11}
WAIT_SECONDS = 5.0  # bound on waiting for the writer thread


class LearnedMaps:
    """The kernel's learned maps: one entry per transaction, as (map, elements) per map."""

    def __init__(self, refuse: bool = False) -> None:
        self.transactions: list[list[tuple[str, list[LearnedElement]]]] = []
        self.refuse = refuse
        self.wrote = threading.Event()

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        if self.refuse:
            raise NftError("Error: No such file or directory")
        self.transactions.append([(name, list(elements)) for name, elements in batches])
        self.wrote.set()

    def addresses(self, transaction: int) -> list[str]:
        return [element.address for _, elements in self.transactions[transaction] for element in elements]


def learned(address: str, app: str = "erp", ttl: int = 300) -> LearnedAddress:
    return LearnedAddress(ipaddress.ip_address(address), app, ttl, f"{app}.example.com")


def writer(kernel: LearnedMaps, max_pending: int = 64, max_batch: int = 16) -> LearnedWriter:
    made = LearnedWriter(kernel, clock=lambda: 1000.0, max_pending=max_pending, max_batch=max_batch)
    made.use_numbers(NUMBERS)
    return made


def test_a_batch_is_one_transaction_for_both_maps_and_holds_at_most_max_batch() -> None:
    kernel = LearnedMaps()
    books = writer(kernel, max_batch=4)
    books.submit([learned(f"192.0.2.{n}") for n in range(1, 6)] + [learned("2001:db8::1"), learned("2001:db8::2")])
    assert books.write_next_batch() and books.write_next_batch() and not books.write_next_batch()
    assert len(kernel.transactions) == 2
    assert kernel.addresses(0) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]  # oldest first
    assert [name for name, _ in kernel.transactions[1]] == [MAP_LEARNED_V4, MAP_LEARNED_V6]
    assert kernel.addresses(1) == ["192.0.2.5", "2001:db8::1", "2001:db8::2"]
    assert kernel.transactions[1][0][1][0] == LearnedElement("192.0.2.5", set_app_chain(10), 300)
    assert books.stats.written == 7 and books.stats.batches == 2 and books.stats.pending == 0


def test_each_batch_in_the_kernel_is_told_to_the_ha_sync_and_a_refused_one_is_not() -> None:
    told: list[list[LearnedElement]] = []
    kernel = LearnedMaps()
    books = writer(kernel)
    books.on_written = told.append
    books.submit([learned("192.0.2.7"), learned("2001:db8::7", app="crm")])
    assert books.write_next_batch()
    assert told == [[LearnedElement("192.0.2.7", set_app_chain(10), 300),
                     LearnedElement("2001:db8::7", set_app_chain(11), 300)]]
    refusing = writer(LearnedMaps(refuse=True))
    refusing.on_written = told.append
    refusing.submit([learned("192.0.2.8")])
    assert refusing.write_next_batch()
    assert len(told) == 1  # the backup must not hold what the master's kernel does not


def test_answers_for_a_waiting_address_coalesce_and_the_newest_wins() -> None:
    kernel = LearnedMaps()
    books = writer(kernel)
    books.submit([learned("192.0.2.7", "erp")])
    books.submit([learned("192.0.2.7", "crm"), learned("192.0.2.7", "crm")])
    assert books.stats.pending == 1
    books.write_next_batch()
    assert kernel.transactions[0] == [(MAP_LEARNED_V4, [LearnedElement("192.0.2.7", set_app_chain(11), 300)])]


def test_the_queue_is_bounded_and_what_overflows_is_counted() -> None:
    kernel = LearnedMaps()
    books = writer(kernel, max_pending=3)
    books.submit([learned(f"198.51.100.{n}") for n in range(1, 6)])
    books.submit([learned("198.51.100.1", "crm")])  # waiting already: replaced, not an overflow
    assert books.stats.pending == 3 and books.stats.overflowed == 2
    while books.write_next_batch():
        pass
    assert [a for t in range(len(kernel.transactions)) for a in kernel.addresses(t)] == \
        ["198.51.100.1", "198.51.100.2", "198.51.100.3"]


def test_a_refresh_or_a_changed_app_replaces_the_element_and_a_fresh_one_is_not_sent_again() -> None:
    kernel = LearnedMaps()
    books = writer(kernel)
    books.submit([learned("203.0.113.5", "erp")])
    books.write_next_batch()
    books.submit([learned("203.0.113.5", "erp")])  # the same app, still comfortably alive: nothing to write
    books.write_next_batch()
    books.submit([learned("203.0.113.5", "crm")])
    books.write_next_batch()
    assert len(kernel.transactions) == 2
    assert kernel.transactions[1] == [(MAP_LEARNED_V4, [LearnedElement("203.0.113.5", set_app_chain(11), 300)])]


def test_an_app_the_table_does_not_number_is_not_written_and_a_refused_batch_is_counted() -> None:
    kernel = LearnedMaps(refuse=True)
    books = writer(kernel)
    books.submit([learned("192.0.2.9", "youku"), learned("192.0.2.10", "erp")])
    books.write_next_batch()
    assert books.stats.failed == 1 and books.stats.written == 0
    kernel.refuse = False
    books.submit([learned("192.0.2.10", "erp")])  # not recorded as written: sent again
    books.write_next_batch()
    assert kernel.addresses(0) == ["192.0.2.10"]


def test_the_thread_writes_nothing_while_paused_and_then_uses_the_numbers_of_the_new_table() -> None:
    kernel = LearnedMaps()
    books = writer(kernel)
    books.start()
    try:
        with books.paused():
            books.submit([learned("192.0.2.20", "crm")])
            time.sleep(0.05)  # time enough for the thread to try
            assert kernel.transactions == []
            books.use_numbers({"crm": 42})
        assert kernel.wrote.wait(WAIT_SECONDS)
        assert kernel.transactions[0][0][1] == [LearnedElement("192.0.2.20", set_app_chain(42), 300)]
    finally:
        books.close()


def test_the_writers_figures_are_exported() -> None:
    kernel = LearnedMaps()
    books = writer(kernel, max_pending=2)
    books.submit([learned("192.0.2.30"), learned("192.0.2.31"), learned("192.0.2.32")])
    books.write_next_batch()
    books.submit([learned("192.0.2.33")])

    class Source:
        def learned_write_stats(self) -> LearnedWriteStats:
            return books.stats

    registry = CollectorRegistry()
    registry.register(CollectorSet([LearnedWriteCollector(Source())]))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gatewayd_dns_learned_total") == 2
    assert metric_value(text, "gatewayd_dns_learned_write_batches_total") == 1
    assert metric_value(text, "gatewayd_dns_learned_pending") == 1
    assert metric_value(text, "gatewayd_dns_learned_overflow_total") == 1
    assert metric_value(text, "gatewayd_dns_learned_write_failures_total") == 0
    assert metric_value(text, "gatewayd_dns_learned_book_entries") == 2
    assert metric_value(text, "gatewayd_dns_learned_book_forgotten_total") == 0


def test_the_book_is_bounded_and_a_forgotten_address_is_sent_again() -> None:
    kernel = LearnedMaps()
    books = LearnedWriter(kernel, clock=lambda: 1000.0, max_pending=512, max_batch=512, book_entries=64)
    books.use_numbers(NUMBERS)
    books.submit([learned(f"192.0.2.{n}") for n in range(1, 201)])
    books.write_next_batch()
    # 200 written into a book of 64: the oldest are forgotten a sixteenth (4) past the bound at a time.
    assert books.stats.written == 200 and books.stats.book_entries <= 64
    assert books.stats.forgotten == 200 - books.stats.book_entries
    books.submit([learned("192.0.2.1"), learned("192.0.2.200")])  # the first forgotten, the last remembered
    books.write_next_batch()
    assert kernel.addresses(1) == ["192.0.2.1"]


def test_a_write_moves_an_address_to_the_young_end_of_the_book() -> None:
    now = [1000.0]
    kernel = LearnedMaps()
    books = LearnedWriter(kernel, clock=lambda: now[0], book_entries=4)
    books.use_numbers(NUMBERS)
    for n in range(1, 5):
        books.submit([learned(f"198.51.100.{n}", ttl=300)])
        books.write_next_batch()
    now[0] += 200  # past half the life of each: .1 is written again, and so becomes the youngest
    books.submit([learned("198.51.100.1", ttl=300)])
    books.write_next_batch()
    books.submit([learned("198.51.100.5", ttl=300)])  # a fifth: the oldest written (.2) is forgotten
    books.write_next_batch()
    books.submit([learned("198.51.100.1", ttl=300), learned("198.51.100.2", ttl=300)])
    books.write_next_batch()
    assert kernel.addresses(len(kernel.transactions) - 1) == ["198.51.100.2"]


def test_the_book_tells_ipv4_from_ipv6_and_every_app_apart() -> None:
    book = LearnedAddressBook(max_entries=16)
    v4, v6 = learned("192.0.2.1"), learned("::c000:201")  # the same 32 low bits
    book.record([v4], 1000.0)
    assert book.stale([v4, v6], 1000.0) == [v6]
    book.record([v6], 1000.0)
    assert book.stale([learned("::c000:201", app="crm")], 1000.0) != []


def test_a_book_out_of_app_ids_starts_afresh_rather_than_share_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learned_writer, "APP_MASK", 3)  # four app ids
    book = LearnedAddressBook(max_entries=16)
    for n, app in enumerate(("a", "b", "c", "d")):
        book.record([learned(f"192.0.2.{n}", app=app)], 1000.0)
    assert len(book) == 4
    book.record([learned("192.0.2.9", app="e")], 1000.0)  # a fifth app: "e" never takes "a"'s id
    assert len(book) == 1 and book.forgotten == 4
    assert book.stale([learned("192.0.2.0", app="a")], 1000.0) != []


def test_bytes_per_entry_of_a_full_book_stay_compact() -> None:
    """The book's own memory at its bound, measured with tracemalloc (the figure: bench/memory_abuse.py)."""
    entries = 4096
    book = LearnedAddressBook(max_entries=entries)
    batch = [learned(str(ipaddress.IPv4Address(0xC6336400 + n)), app=f"app{n % 7}") for n in range(entries)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        book.record(batch, 1000.0)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(book) == entries
    assert used / entries < 120, used / entries  # the str-keyed tuples of before took ~170
