"""Classifier memory metrics: buffered bytes, tracked flows, evictions, flows given up by reason."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.nft import Counter
from gatewayd.classify.engine import Classifier
from gatewayd.classify.flow_budget import MIB, FlowBudget
from gatewayd.compile import kernel_names
from gatewayd.compile.plan import Plan
from gatewayd.lab.gateway import metric_value
from gatewayd.lab.hello_flood import unfinished_hello
from gatewayd.metrics.base import CollectorSet, SourceCollector
from gatewayd.metrics.classifier_memory import ClassifierMemoryCollector
from gatewayd.metrics.nft_rules import RuleCollector
from tests.unit.test_classify_flow_budget import ABUSER, SEGMENT, send, tables
from tests.unit.test_qos_plan import plan_of


class RunningDaemon:
    def __init__(self, classifier: Classifier | None, plan: Plan) -> None:
        self.classifier = classifier
        self.plan = plan

    def current_plan(self) -> Plan | None:
        return self.plan

    def current_classifier(self) -> Classifier | None:
        return self.classifier


class KernelCounters:
    """The two NftKernel reads RuleCollector makes, without a kernel."""

    def named_counters(self) -> dict[str, Counter]:
        return {kernel_names.COUNTER_GAVE_UP: Counter(packets=5, bytes=300)}

    def learned_count(self) -> dict[str, int]:
        return {}


def abused_classifier() -> Classifier:
    classifier = Classifier(tables(), max_flows=16,
                            budget=FlowBudget(total_bytes=MIB, host_bytes=5_000, host_flows=4))
    for flow in range(6):  # 6 flows x 3,000 bytes: 5 given up by the host budget; 2 evicted by the share
        send(classifier, ABUSER, 20000 + flow, unfinished_hello(3, SEGMENT), 1.0)
    return classifier


def exposition(*collectors: SourceCollector) -> str:
    registry = CollectorRegistry()
    registry.register(CollectorSet(collectors))
    return generate_latest(registry).decode()


def test_buffered_bytes_flows_and_evictions_are_exported() -> None:
    classifier = abused_classifier()
    text = exposition(ClassifierMemoryCollector(RunningDaemon(classifier, plan_of())))
    assert metric_value(text, "gatewayd_classifier_buffered_bytes") == classifier.buffered_bytes == 3_000
    assert metric_value(text, "gatewayd_classifier_flows") == 4
    assert metric_value(text, "gatewayd_classifier_flows_evicted_total", reason="host_flow_limit") == 2
    assert metric_value(text, "gatewayd_classifier_flows_evicted_total", reason="flow_table_full") == 0


def test_flows_gave_up_counts_the_kernels_and_the_budgets_by_reason() -> None:
    daemon = RunningDaemon(abused_classifier(), plan_of())
    collector = RuleCollector(daemon, daemon)
    collector._kernel = KernelCounters()  # type: ignore[assignment]
    text = exposition(collector)
    assert metric_value(text, "gatewayd_flows_gave_up_total", reason="max_packets") == 5
    assert metric_value(text, "gatewayd_flows_gave_up_total", reason="host_buffer_budget") == 5
    assert metric_value(text, "gatewayd_flows_gave_up_total", reason="total_buffer_budget") == 0


def test_no_classifier_yet_exports_nothing_and_fails_nothing() -> None:
    text = exposition(ClassifierMemoryCollector(RunningDaemon(None, plan_of())))
    assert "gatewayd_classifier_buffered_bytes" not in text
    assert metric_value(text, "gatewayd_scrape_collector_success", collector="classifier") == 1
