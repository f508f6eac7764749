"""NFQUEUE health from /proc/net/netfilter/nfnetlink_queue: backlog and drops of our queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector

PROC_QUEUE = Path("/proc/net/netfilter/nfnetlink_queue")


def read_queue_line(queue_num: int, path: Path = PROC_QUEUE) -> dict[str, int] | None:
    """Fields per the kernel's nfnetlink_queue seq_show: queue, portid, total, mode, range, dropped,
    user_dropped, sequence (the id of the last packet the kernel numbered; 0 on kernels without it)."""
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 7 and int(fields[0]) == queue_num:
            return {"backlog": int(fields[2]), "queue_dropped": int(fields[5]), "user_dropped": int(fields[6]),
                    "sequence": int(fields[7]) if len(fields) >= 8 else 0}
    return None


class NfqueueCollector(PlanCollector):
    name = "nfqueue"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        stats = read_queue_line(plan.policy.classifier.queue_num)
        dropped = CounterMetricFamily("gatewayd_nfqueue_dropped_packets",
                                      "Packets the kernel could not queue to the classifier (queue full, or the "
                                      "socket buffer).",
                                      labels=["reason"])
        backlog = GaugeMetricFamily("gatewayd_nfqueue_backlog_packets", "Packets waiting in the queue for a verdict.")
        if stats:
            dropped.add_metric(["queue_full"], stats["queue_dropped"])
            dropped.add_metric(["socket"], stats["user_dropped"])
            backlog.add_metric([], stats["backlog"])
        yield dropped
        yield backlog
