"""What the kernel offers gatewayd (apply/features.py), as gatewayd_kernel_feature{feature=...}."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from gatewayd.apply.features import KernelFeatures
from gatewayd.metrics.base import SourceCollector


class FeatureSource(Protocol):
    def kernel_features(self) -> KernelFeatures: ...


class KernelFeatureCollector(SourceCollector):
    name = "kernel_features"

    def __init__(self, source: FeatureSource) -> None:
        super().__init__()
        self._source = source

    def read(self) -> Iterator[Metric]:
        present = GaugeMetricFamily(
            "gatewayd_kernel_feature",
            "Kernel features gatewayd probed at start: 1 present, 0 missing (gatewayd degrades without it). "
            "leaf_qdisc_KIND: 1 for the kind the HTB leaves use, 0 for the better kinds the kernel lacks.",
            labels=["feature"])
        for feature, value in self._source.kernel_features().gauges().items():
            present.add_metric([feature], value)
        yield present
