"""Shared pieces: the current plan as seen by collectors, and scrape bookkeeping."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd.compile.plan import Plan

log = logging.getLogger("gatewayd.metrics")


class PlanSource(Protocol):
    def current_plan(self) -> Plan | None: ...


class SourceCollector(Collector):
    """A collector that reports, like node_exporter, whether its scrape worked and how long it took."""

    name = "base"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # scrapes may overlap; kernel handles are not shared between threads

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        success = 1.0
        metrics: list[Metric] = []
        with self._lock:
            try:
                metrics = list(self.read())
            except Exception as exc:  # a failing source must not break the whole scrape
                success = 0.0
                log.warning("event=collector_failed collector=%s error=%r", self.name, str(exc))
        yield from metrics
        duration = GaugeMetricFamily("gatewayd_scrape_collector_duration_seconds",
                                     "How long a collector took to read its source.", labels=["collector"])
        duration.add_metric([self.name], time.perf_counter() - start)
        ok = GaugeMetricFamily("gatewayd_scrape_collector_success",
                               "Whether a collector read its source (1) or failed (0).", labels=["collector"])
        ok.add_metric([self.name], success)
        yield duration
        yield ok

    def read(self) -> Iterator[Metric]:
        raise NotImplementedError


class PlanCollector(SourceCollector):
    """A collector that labels what it reads with the names of the plan in force."""

    def __init__(self, plans: PlanSource) -> None:
        super().__init__()
        self._plans = plans

    def read(self) -> Iterator[Metric]:
        plan = self._plans.current_plan()
        if plan is not None:
            yield from self.read_plan(plan)

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        raise NotImplementedError
