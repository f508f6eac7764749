"""Kernel feature probes (apply/features.py), their metric and their status line, without root."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.features import (
    KernelFeatures,
    StrictTrackingError,
    choose_leaf_qdisc,
    log_kernel_features,
    probe_native_queue,
    probe_strict_tcp_tracking,
    require_strict_tcp_tracking,
)
from gatewayd.apply.nft import NftError
from gatewayd.cli.status import render_status
from gatewayd.compile.plan import compile_plan
from gatewayd.lab.gateway import metric_value
from gatewayd.lab.office import OFFICE_POLICY
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.kernel_features import KernelFeatureCollector
from gatewayd.policy.loader import load_policy


class ScriptedKernel:
    """Answers `run` like libnftables would: accepts the script, or refuses it."""

    def __init__(self, accepts: bool) -> None:
        self.accepts = accepts
        self.scripts: list[str] = []

    def run(self, script: str) -> None:
        self.scripts.append(script)
        if not self.accepts:
            raise NftError("Error: Could not process rule: No such file or directory")


class FixedFeatures:
    def __init__(self, features: KernelFeatures) -> None:
        self.features = features

    def kernel_features(self) -> KernelFeatures:
        return self.features


def test_native_queue_probe_is_one_scratch_transaction_that_leaves_nothing() -> None:
    accepting, refusing = ScriptedKernel(accepts=True), ScriptedKernel(accepts=False)
    assert probe_native_queue(accepting) is True  # type: ignore[arg-type]
    assert probe_native_queue(refusing) is False  # type: ignore[arg-type]
    (script,) = accepting.scripts
    assert "queue num 0 bypass" in script
    assert script.rstrip().endswith("delete table inet gatewayd_probe")


def test_strict_tcp_tracking_probe(tmp_path: Path) -> None:
    sysctl = tmp_path / "nf_conntrack_tcp_loose"
    sysctl.write_text("0\n")
    assert probe_strict_tcp_tracking(sysctl)
    sysctl.write_text("1\n")  # loose, but the file may be written
    assert probe_strict_tcp_tracking(sysctl)
    assert not probe_strict_tcp_tracking(tmp_path / "absent")  # no conntrack, or /proc/sys hidden


def test_leaf_qdisc_is_the_first_kind_the_kernel_accepts() -> None:
    tried: list[str] = []

    def kernel_with(*kinds: str) -> Callable[[str], bool]:
        def add_leaf(kind: str) -> bool:
            tried.append(kind)
            return kind in kinds
        return add_leaf

    assert choose_leaf_qdisc(kernel_with("cake", "fq_codel", "sfq", "bfifo")) == "cake"
    assert tried == ["cake"]
    tried.clear()
    assert choose_leaf_qdisc(kernel_with("sfq", "bfifo")) == "sfq"
    assert tried == ["cake", "fq_codel", "sfq"]
    assert choose_leaf_qdisc(kernel_with("bfifo")) == "bfifo"


def test_gauges_mark_the_leaf_kind_in_use_and_the_better_kinds_missing() -> None:
    fifo = KernelFeatures(native_queue=False, strict_tcp_tracking=True, leaf_qdisc="bfifo")
    assert fifo.gauges() == {"native_queue": 0, "strict_tcp_tracking": 1, "leaf_qdisc_cake": 0,
                             "leaf_qdisc_fq_codel": 0, "leaf_qdisc_sfq": 0, "leaf_qdisc_bfifo": 1}
    cake = KernelFeatures(native_queue=True, strict_tcp_tracking=False, leaf_qdisc="cake")
    assert cake.gauges() == {"native_queue": 1, "strict_tcp_tracking": 0, "leaf_qdisc_cake": 1}
    assert "leaf_qdisc_cake" not in KernelFeatures(True, True).gauges()  # no leaf made yet: not reported


def test_collector_exports_gatewayd_kernel_feature() -> None:
    registry = CollectorRegistry()
    registry.register(CollectorSet([KernelFeatureCollector(FixedFeatures(KernelFeatures(False, True, "fq_codel")))]))
    exposition = generate_latest(registry).decode()
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="native_queue") == 0
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="strict_tcp_tracking") == 1
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="leaf_qdisc_fq_codel") == 1
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="leaf_qdisc_cake") == 0
    assert 'gatewayd_scrape_collector_success{collector="kernel_features"} 1.0' in exposition


def test_one_log_line_says_what_is_missing_and_what_gatewayd_does_instead(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gatewayd.features"):
        log_kernel_features(KernelFeatures(native_queue=True, strict_tcp_tracking=True, leaf_qdisc="cake"))
        log_kernel_features(KernelFeatures(native_queue=False, strict_tcp_tracking=True, leaf_qdisc="bfifo"))
    complete, degraded = caplog.records
    assert complete.levelno == logging.INFO and "degraded" not in complete.getMessage()
    assert complete.getMessage() == "event=kernel_features native_queue=yes leaf_qdisc=cake strict_tcp_tracking=yes"
    assert degraded.levelno == logging.WARNING
    message = degraded.getMessage()
    assert "native_queue=no leaf_qdisc=bfifo" in message
    assert "iptables-nft chain GATEWAYD_QUEUE" in message and "no cake,fq_codel,sfq" in message


def test_status_text_shows_the_kernel_features() -> None:
    features = KernelFeatures(native_queue=False, strict_tcp_tracking=True, leaf_qdisc="bfifo")
    status = {"policy_file": "p.yaml", "generation": 1, "degraded": False, "fail_mode": "open",
              "uptime_seconds": 5, "queue_backend": "iptables-nft", "leaf_qdisc": "bfifo",
              "kernel_features": features.report(), "pending_change": None, "limited_hosts": None,
              "learned_addresses": {"kernel_v4": 0, "kernel_v6": 0, "classifier": 0}, "traffic": [],
              "blocklist": None, "recent_blocked": []}
    (line,) = [line for line in render_status(status).splitlines() if line.startswith("kernel ")]
    assert line == "kernel      native queue no   leaf qdisc bfifo   strict tcp tracking yes"


def test_syn_proxy_makes_conntrack_strict_or_refuses_with_a_reason(tmp_path: Path) -> None:
    plan = compile_plan(load_policy(str(OFFICE_POLICY)))
    assert plan.policy.security is not None and plan.policy.security.syn_proxy_ports
    sysctl = tmp_path / "nf_conntrack_tcp_loose"
    sysctl.write_text("1\n")
    require_strict_tcp_tracking(plan, sysctl)
    assert sysctl.read_text() == "0"
    with pytest.raises(StrictTrackingError, match="nf_conntrack_tcp_loose=0 and it cannot be set"):
        require_strict_tcp_tracking(plan, tmp_path / "no-such-dir" / "nf_conntrack_tcp_loose")
