"""The verdict path's histogram and decision counters expose exactly what prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gatewayd.metrics.daemon_state import LATENCY_BUCKETS, DaemonMetrics
from gatewayd.metrics.hot_histogram import HotHistogram

SAMPLES = (0.00001, 0.00005, 0.00007, 0.0003, 0.001, 0.02, 0.05, 0.2, 3.0)  # on, between and above the bounds


def series(exposition: str, name: str) -> list[str]:
    """The bucket, count and sum lines of one histogram (prometheus_client adds a _created gauge we do not)."""
    return [line for line in exposition.splitlines()
            if line.startswith((f"{name}_bucket", f"{name}_count", f"{name}_sum"))]


def test_the_same_observations_give_the_same_series_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotHistogram("latency_seconds", "doc", LATENCY_BUCKETS, ours)
    reference = Histogram("latency_seconds", "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    for value in SAMPLES:
        hot.observe(value)
        reference.observe(value)
    expected = series(generate_latest(theirs).decode(), "latency_seconds")
    assert len(expected) == len(LATENCY_BUCKETS) + 3  # every bound, +Inf, count, sum
    assert series(generate_latest(ours).decode(), "latency_seconds") == expected


def test_decisions_are_counted_by_method_including_methods_not_listed_up_front() -> None:
    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry)
    for method in ("tls-sni", "tls-sni", "quic-sni"):
        metrics.count_decision(method)
    assert registry.get_sample_value("gatewayd_classifier_decisions_total", {"method": "tls-sni"}) == 2
    assert registry.get_sample_value("gatewayd_classifier_decisions_total", {"method": "quic-sni"}) == 1
    assert registry.get_sample_value("gatewayd_classifier_decisions_total", {"method": "dns"}) == 0
