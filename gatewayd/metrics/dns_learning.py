"""What DNS answers taught the classifier, and why the others taught nothing.

Read from the running classifier's counters (classify/dns_learning.py): one
count per answer by `result`, one per refused address by `reason`. Both label
sets are fixed, so a flood of forged answers adds to counts, never to series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from gatewayd.metrics.classifier_memory import ClassifierCollector, ClassifierView


class DnsLearningCollector(ClassifierCollector):
    name = "dns_learning"

    def read_classifier(self, classifier: ClassifierView) -> Iterator[Metric]:
        stats = classifier.dns_stats
        answers = CounterMetricFamily(
            "gatewayd_dns_answers", "DNS answers the classifier read, by what they taught: learned, refused "
            "(every address refused, see gatewayd_dns_addresses_refused_total), no_app, not_a_resolver "
            "(not from dns.resolvers or the router), unsolicited (no query waiting on its flow), mismatch "
            "(queries wait, none with its id, name and type).", labels=["result"])
        for result, count in stats.answers.items():
            answers.add_metric([result], count)
        refused = CounterMetricFamily(
            "gatewayd_dns_addresses_refused", "Addresses a DNS answer named that were not learned: "
            "catalog_address (the catalog or policy lists it), rate_limited (its client's new entries per "
            "minute), host_share (its client's share of the learned map).", labels=["reason"])
        for reason, count in stats.refused.items():
            refused.add_metric([reason], count)
        yield from (answers, refused)
