"""Build the registry of all collectors and serve it over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server

from gatewayd.metrics.base import CollectorSet, PlanSource
from gatewayd.metrics.classifier_memory import (
    ClassifierMemoryCollector,
    ClassifierSource,
)
from gatewayd.metrics.connections import ConnectionCapCollector
from gatewayd.metrics.daemon_state import DaemonMetrics
from gatewayd.metrics.dns_learning import DnsLearningCollector
from gatewayd.metrics.guard import GuardCollector
from gatewayd.metrics.kernel_features import FeatureSource, KernelFeatureCollector
from gatewayd.metrics.learned_writes import LearnedWriteCollector, LearnedWriteSource
from gatewayd.metrics.links import LinkCollector, LinkSource
from gatewayd.metrics.nfqueue import NfqueueCollector
from gatewayd.metrics.nft_rules import RuleCollector
from gatewayd.metrics.nft_usage import UsageCollector
from gatewayd.metrics.tc_classes import TcClassCollector
from gatewayd.metrics.top_talkers import TopTalkerCollector


class DaemonSource(PlanSource, ClassifierSource, LinkSource, Protocol):
    """What the collectors read from the daemon: the plan in force, the running classifier, the links' health."""


class ApplierSource(FeatureSource, LearnedWriteSource, Protocol):
    """What the collectors read from the apply layer: the kernel's features, the learned-address writer."""


def build_registry(daemon: DaemonSource, applier: ApplierSource,
                   after_scrape: Callable[[], None] = lambda: None) -> tuple[CollectorRegistry, DaemonMetrics]:
    """`after_scrape`: see CollectorSet."""
    registry = CollectorRegistry()
    registry.register(CollectorSet([UsageCollector(daemon), RuleCollector(daemon, daemon), TcClassCollector(daemon),
                                    NfqueueCollector(daemon), GuardCollector(daemon), ConnectionCapCollector(daemon),
                                    ClassifierMemoryCollector(daemon), DnsLearningCollector(daemon),
                                    KernelFeatureCollector(applier), LearnedWriteCollector(applier),
                                    TopTalkerCollector(daemon), LinkCollector(daemon, daemon)], after_scrape))
    return registry, DaemonMetrics(registry)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def serve(registry: CollectorRegistry, listen: str) -> None:
    host, port = parse_listen(listen)
    start_http_server(port, addr=host, registry=registry)
