"""What the classifier holds (flows tracked, bytes buffered) and what its budgets made it give up.

Read from the running classifier's counters (no kernel involved); a scrape
runs on the HTTP server's thread, and reading ints and lengths there is safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.classify.dns_learning import DnsLearningStats
from gatewayd.classify.engine import ClassifierStats
from gatewayd.metrics.base import SourceCollector


class ClassifierView(Protocol):
    """The part of the classifier the metrics read (engine.Classifier is one)."""

    @property
    def stats(self) -> ClassifierStats: ...
    @property
    def flow_count(self) -> int: ...
    @property
    def buffered_bytes(self) -> int: ...
    @property
    def dns_stats(self) -> DnsLearningStats: ...


class ClassifierSource(Protocol):
    def current_classifier(self) -> ClassifierView | None: ...


def given_up_by_budget(stats: ClassifierStats) -> dict[str, int]:
    """Flows the classifier gave up before max_packets, by `reason` of gatewayd_flows_gave_up_total."""
    return {"host_buffer_budget": stats.flows_given_up_host_budget,
            "total_buffer_budget": stats.flows_given_up_total_budget}


class ClassifierCollector(SourceCollector):
    """Base of the collectors that read the running classifier (none before the first policy applied)."""

    def __init__(self, source: ClassifierSource) -> None:
        super().__init__()
        self._source = source

    def read(self) -> Iterator[Metric]:
        classifier = self._source.current_classifier()
        if classifier is not None:
            yield from self.read_classifier(classifier)

    def read_classifier(self, classifier: ClassifierView) -> Iterator[Metric]:
        raise NotImplementedError


class ClassifierMemoryCollector(ClassifierCollector):
    name = "classifier"

    def read_classifier(self, classifier: ClassifierView) -> Iterator[Metric]:
        buffered = GaugeMetricFamily("gatewayd_classifier_buffered_bytes",
                                     "Payload bytes the classifier holds in reassembly buffers (all flows).")
        buffered.add_metric([], classifier.buffered_bytes)
        flows = GaugeMetricFamily("gatewayd_classifier_flows",
                                  "Flows the classifier tracks (undecided, or decided and not yet idle).")
        flows.add_metric([], classifier.flow_count)
        evicted = CounterMetricFamily("gatewayd_classifier_flows_evicted",
                                      "Flows the classifier forgot before they went idle: a host over its share "
                                      "of the flow table, or a full table (the heaviest host's oldest).",
                                      labels=["reason"])
        evicted.add_metric(["host_flow_limit"], classifier.stats.flows_evicted_host_limit)
        evicted.add_metric(["flow_table_full"], classifier.stats.flows_evicted)
        yield from (buffered, flows, evicted)
