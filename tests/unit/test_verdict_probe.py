"""The figures bench/reload.py prints about verdicts during reloads, from the daemon's own
histogram exposition and the probe's flows: quantiles from buckets, reload windows, pooling."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.lab.histogram import current_buckets, histogram_quantile, quantile_of_buckets
from gatewayd.lab.new_flows import NewFlow
from gatewayd.lab.verdict_probe import LATENCY, VerdictsDuringReloads, flows_during_build, flows_meeting_apply
from gatewayd.metrics.daemon_state import DaemonMetrics

RELOADED = "event=reloaded generation=2 seconds=1.500 load_seconds=0.400 compile_seconds=0.500 " \
           "classifier_seconds=0.100 apply_seconds=0.300"  # a build of 1.0 s


class DaemonHistogram:
    """The daemon's real latency histogram, observed by hand and scraped as Prometheus would."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = DaemonMetrics(self.registry)

    def observe(self, *seconds: float) -> None:
        for value in seconds:
            self.metrics.latency.observe(value)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


def flow(started: float, seconds: float, ok: bool = True) -> NewFlow:
    return NewFlow(kind="dns", started=started, seconds=seconds, ok=ok)


def test_a_quantile_is_interpolated_inside_its_bucket_as_promql_does() -> None:
    buckets = {0.001: 50.0, 0.005: 100.0, math.inf: 100.0}
    assert quantile_of_buckets(buckets, 0.5) == 0.001
    assert math.isclose(quantile_of_buckets(buckets, 0.75), 0.003)  # halfway through the 1-5 ms bucket


def test_a_quantile_beyond_the_last_bound_is_the_last_bound_and_an_empty_histogram_has_none() -> None:
    assert quantile_of_buckets({0.005: 1.0, math.inf: 100.0}, 0.99) == 0.005
    assert math.isnan(quantile_of_buckets({0.005: 0.0, math.inf: 0.0}, 0.99))
    assert math.isnan(quantile_of_buckets({}, 0.99))


def test_only_what_the_histogram_counted_since_the_previous_reading_makes_the_quantile() -> None:
    daemon = DaemonHistogram()
    daemon.observe(*[0.02] * 100)  # slow, but before the window
    before = current_buckets(daemon.exposition(), LATENCY)
    daemon.observe(*[0.00003] * 100)
    p99 = histogram_quantile(daemon.exposition(), LATENCY, 0.99, before)
    assert 0 < p99 <= 0.00005


def test_flows_are_split_into_those_that_met_the_build_and_those_that_met_the_apply() -> None:
    flows = [flow(9.9, 0.2), flow(10.1, 0.01), flow(10.95, 0.1), flow(11.2, 0.01), flow(11.6, 0.01)]
    assert flows_during_build(flows, reload_began=10.0, build_ended=11.0) == [flows[1]]
    # in flight at some moment from the build's end to the reload's end: the one across the boundary too
    assert flows_meeting_apply(flows, build_ended=11.0, reload_ended=11.5) == [flows[2], flows[3]]


def test_late_verdicts_are_pooled_over_reload_windows_and_not_counted_between_them() -> None:
    daemon, verdicts = DaemonHistogram(), VerdictsDuringReloads()
    for began, late in ((10.0, 1), (20.0, 2)):
        verdicts.before_reload(daemon.exposition())
        daemon.observe(*[0.0002] * 50, *[0.008] * late)
        verdicts.after_reload(daemon.exposition(), RELOADED, reload_began=began, reload_ended=began + 1.5)
        daemon.observe(*[0.03] * 40)  # between reloads: not the reloads' figures
    assert (verdicts.queued, verdicts.late, verdicts.lost) == (103, 3, 0)
    assert verdicts.buckets[math.inf] == 103 and verdicts.buckets[0.005] == 100
    assert 0.005 < quantile_of_buckets(verdicts.buckets, 0.99) < 0.01
    flows = [flow(10.5, 0.01), flow(11.2, 0.01), flow(15.0, 0.01), flow(20.2, 0.01), flow(21.4, 0.01)]
    during_build, meeting_apply = verdicts.client_flows(flows)
    assert during_build == [flows[0], flows[3]]
    assert meeting_apply == [flows[1], flows[4]]
