"""A histogram for the verdict path: one writer, observed in about 0.4 us instead of 2.

prometheus_client's Histogram takes a lock twice per observation (sum, then
the bucket) and walks the bounds in Python; on the queued-packet path that was
a tenth of the handler's own time. Here the one writer (the daemon's loop)
adds to a plain list found by bisection, and the scrape thread reads a copy:
copying a list is atomic under the GIL, and counts only grow, so a scrape
sees a consistent, at worst one observation old, state. Exposed under the
same name and buckets, so dashboards, recording rules and benches read it
as before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric


class HotHistogram:
    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf only)
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        """Single writer only (the daemon's loop); `le` bounds are inclusive, as Prometheus has them."""
        self._counts[bisect_left(self.bounds, amount)] += 1
        self._sum += amount

    def collect(self) -> Iterable[Metric]:
        counts, total = list(self._counts), self._sum
        yield HistogramMetricFamily(self.name, self.documentation, buckets=list(self._cumulative(counts)),
                                    sum_value=total)

    def describe(self) -> Iterable[Metric]:
        # Without describe the registry would call collect() at registration to learn the names.
        yield HistogramMetricFamily(self.name, self.documentation)

    def _cumulative(self, counts: list[int]) -> Iterator[tuple[str, float]]:
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            yield bound, running
