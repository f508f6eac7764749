"""Garbage-collector pauses are timed from gc.callbacks and exported per generation."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.metrics.gc_pauses import GcPauses


def test_a_real_collection_is_timed_under_its_generation() -> None:
    pauses = GcPauses()
    pauses.install()
    try:
        cycles = []
        for _ in range(2000):
            node: list[object] = []
            node.append(node)  # a reference cycle: only the collector frees it
            cycles.append(node)
        del cycles, node
        gc.collect(1)
    finally:
        pauses.uninstall()
    assert pauses.count(1) >= 1 and pauses.longest[1] > 0
    before = pauses.count(1)
    gc.collect(1)
    assert pauses.count(1) == before  # uninstalled: no longer counted


def test_the_exposition_has_buckets_sum_and_longest_per_generation() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.record(0, 0.0003)
    pauses.record(0, 0.004)
    pauses.record(2, 0.03)
    text = generate_latest(registry).decode()
    assert 'gatewayd_gc_pause_seconds_bucket{generation="0",le="0.0005"} 1.0' in text
    assert 'gatewayd_gc_pause_seconds_bucket{generation="0",le="0.005"} 2.0' in text
    assert 'gatewayd_gc_pause_seconds_count{generation="0"} 2.0' in text
    assert 'gatewayd_gc_pause_seconds_count{generation="1"} 0.0' in text
    assert 'gatewayd_gc_pause_longest_seconds{generation="0"} 0.004' in text
    assert 'gatewayd_gc_pause_longest_seconds{generation="2"} 0.03' in text
