"""The queue-wait histogram: kernel receive time -> read, from the stamp the queue hands over."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gatewayd.daemon.queue_wait import SO_TIMESTAMP, enable_receive_timestamps
from gatewayd.daemon.verdicts import VerdictHandler
from gatewayd.metrics.daemon_state import DaemonMetrics


class QuietClassifier:
    def on_packet(self, *_args: object) -> object:
        @dataclass
        class Outcome:
            learned: tuple[()] = ()
            flow_decision: None = None
            decision: None = None
        return Outcome()


@dataclass
class StampedPacket:
    id: int
    stamp: float
    accepted: bool = False

    def get_timestamp(self) -> float:
        return self.stamp

    def get_mark(self) -> int:
        return 0

    def get_payload(self) -> bytes:
        return b""

    def accept(self) -> None:
        self.accepted = True


def bucket_counts(metrics: DaemonMetrics) -> dict[float, float]:
    """Cumulative counts by upper bound, and the sum of the observations under key -1."""
    counts = {}
    for family in metrics.queue_wait.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                counts[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                counts[-1.0] = sample.value
    return counts


def handler(measure: bool) -> tuple[VerdictHandler, DaemonMetrics]:
    metrics = DaemonMetrics(CollectorRegistry())
    verdicts = VerdictHandler(QuietClassifier(), None, None, metrics)  # type: ignore[arg-type]
    verdicts.measure_queue_wait = measure
    return verdicts, metrics


def test_a_stamped_packet_counts_its_wait_and_an_unstamped_one_none() -> None:
    verdicts, metrics = handler(measure=True)
    packets = [StampedPacket(1, time.time() - 0.002), StampedPacket(2, 0.0)]  # 0: the router's own packet
    for packet in packets:
        verdicts(packet)
    assert all(packet.accepted for packet in packets)
    buckets = bucket_counts(metrics)
    assert buckets[float("inf")] == 1
    assert buckets[0.001] == 0 and buckets[0.005] == 1  # 2 ms and the time this test took


def test_nothing_is_counted_unless_asked() -> None:
    verdicts, metrics = handler(measure=False)
    verdicts(StampedPacket(1, time.time() - 0.002))
    assert bucket_counts(metrics)[float("inf")] == 0


def test_a_stamp_from_a_clock_ahead_counts_as_no_wait() -> None:
    verdicts, metrics = handler(measure=True)
    verdicts(StampedPacket(1, time.time() + 5))  # the wall clock stepped back between stamp and read
    buckets = bucket_counts(metrics)
    assert buckets[0.00005] == 1 and buckets[-1.0] == 0.0


def test_the_keeper_socket_asks_the_kernel_for_receive_timestamps() -> None:
    keeper = enable_receive_timestamps()
    try:
        assert keeper.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMP) == 1
    finally:
        keeper.close()
