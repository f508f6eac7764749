"""The learned-address writer (apply/learned_writer.py): what it wrote, what waits, what it dropped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.learned_writer import LearnedWriteStats
from gatewayd.metrics.base import SourceCollector


class LearnedWriteSource(Protocol):
    def learned_write_stats(self) -> LearnedWriteStats: ...


class LearnedWriteCollector(SourceCollector):
    name = "learned_writes"

    def __init__(self, source: LearnedWriteSource) -> None:
        super().__init__()
        self._source = source

    def read(self) -> Iterator[Metric]:
        stats = self._source.learned_write_stats()
        yield CounterMetricFamily("gatewayd_dns_learned", "Addresses learned from DNS answers written into the "
                                  "kernel's learned maps (new, changed app, or refreshed).", value=stats.written)
        yield CounterMetricFamily("gatewayd_dns_learned_write_batches", "nft transactions that wrote learned "
                                  "addresses (one per batch).", value=stats.batches)
        yield GaugeMetricFamily("gatewayd_dns_learned_pending", "Learned addresses waiting for the writer.",
                                value=stats.pending)
        yield CounterMetricFamily("gatewayd_dns_learned_overflow", "Learned addresses dropped because the writer's "
                                  "queue was full (their flows are classified in Python until a later answer "
                                  "writes them).", value=stats.overflowed)
        yield CounterMetricFamily("gatewayd_dns_learned_write_failures", "Learned addresses of batches the kernel "
                                  "refused.", value=stats.failed)
        yield GaugeMetricFamily("gatewayd_dns_learned_book_entries", "Learned addresses the writer remembers "
                                "writing, to skip answers that change nothing (bounded).", value=stats.book_entries)
        yield CounterMetricFamily("gatewayd_dns_learned_book_forgotten", "Learned addresses the writer's book "
                                  "forgot to stay within its bound (a later answer for one is written again).",
                                  value=stats.forgotten)
