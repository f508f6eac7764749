"""The /metrics text as a whole: each family once, valid for promtool."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from gatewayd.apply.features import KernelFeatures
from gatewayd.apply.learned_writer import LearnedWriteStats
from gatewayd.compile.plan import Plan
from gatewayd.daemon.link_health import LinkReport
from gatewayd.lab.gateway import promtool_problems
from gatewayd.metrics.base import CollectorSet, SourceCollector
from gatewayd.metrics.server import build_registry


class NoPlan:
    def current_plan(self) -> Plan | None:
        return None

    def current_classifier(self) -> None:
        return None

    def link_reports(self) -> list[LinkReport]:
        return []


class FixedFeatures:
    def kernel_features(self) -> KernelFeatures:
        return KernelFeatures(native_queue=False, strict_tcp_tracking=True, leaf_qdisc="bfifo")

    def learned_write_stats(self) -> LearnedWriteStats:
        return LearnedWriteStats()


class Reads(SourceCollector):
    name = "reads"
    count = 0  # reads so far

    def read(self) -> Iterator[Metric]:
        self.count += 1
        family = GaugeMetricFamily("test_source_value", "A value read from a source.")
        family.add_metric([], 7.0)
        yield family


class Fails(SourceCollector):
    name = "fails"

    def read(self) -> Iterator[Metric]:
        raise OSError("no such table")


def help_lines_per_family(exposition: str) -> Counter[str]:
    return Counter(line.split()[2] for line in exposition.splitlines() if line.startswith("# HELP "))


def test_the_daemons_exposition_has_each_family_once() -> None:
    registry, _ = build_registry(NoPlan(), FixedFeatures())
    exposition = generate_latest(registry).decode()
    repeated = {name: count for name, count in help_lines_per_family(exposition).items() if count > 1}
    assert repeated == {}
    # ...and still one success and one duration sample per collector, each collector once
    success = [line.split('"')[1] for line in exposition.splitlines()
               if line.startswith("gatewayd_scrape_collector_success{")]
    duration = [line.split('"')[1] for line in exposition.splitlines()
                if line.startswith("gatewayd_scrape_collector_duration_seconds{")]
    assert len(success) == len(set(success)) >= 10 and sorted(success) == sorted(duration)
    assert {"nft_usage", "nft_rules", "tc_classes", "kernel_features", "top_talkers"} <= set(success)


def test_collector_set_reports_every_collector_in_one_family() -> None:
    registry = CollectorRegistry()
    registry.register(CollectorSet([Reads(), Fails()]))
    exposition = generate_latest(registry).decode()
    assert help_lines_per_family(exposition)["gatewayd_scrape_collector_success"] == 1
    assert help_lines_per_family(exposition)["gatewayd_scrape_collector_duration_seconds"] == 1
    assert 'gatewayd_scrape_collector_success{collector="reads"} 1.0' in exposition
    assert 'gatewayd_scrape_collector_success{collector="fails"} 0.0' in exposition
    assert "test_source_value 7.0" in exposition


def test_after_scrape_runs_once_per_scrape_after_every_collector_read() -> None:
    """The daemon gives the C heap back there (libnftables' caches of the scrape's listings)."""
    reads = Reads()
    calls: list[int] = []
    registry = CollectorRegistry()
    registry.register(CollectorSet([reads, Fails()], after_scrape=lambda: calls.append(reads.count)))
    generate_latest(registry)
    generate_latest(registry)
    assert calls == [1, 2]  # once per scrape, each time after the collectors had read


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_accepts_the_exposition() -> None:
    registry, _ = build_registry(NoPlan(), FixedFeatures())
    assert promtool_problems(generate_latest(registry).decode()) == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_problems_reports_a_repeated_family_and_new_lint_findings() -> None:
    repeated = "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1\n" * 2
    assert any("second HELP line" in problem for problem in promtool_problems(repeated))
    unit_lint = "# HELP a_milliseconds A.\n# TYPE a_milliseconds gauge\na_milliseconds 1\n"
    assert promtool_problems(unit_lint) != []
