"""Metrics the daemon itself owns: classifier decisions and latency, policy reloads, fail mode."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from gatewayd.metrics.gc_pauses import GcPauses
from gatewayd.metrics.hot_histogram import HotHistogram

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
HA_STATES = ("master", "backup", "fault", "unknown")  # apply/ha_state.py's states and its UNKNOWN
METHODS = ("dns-learned", "tls-sni", "http-host", "address", "signature", "port", "give-up", "dns")


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("gatewayd_classifier_decisions", "Flows the classifier decided, by method.",
                                 ["method"], registry=registry)
        # labels() takes a lock and builds its key on every call: the verdict path keeps the children.
        self._decisions_by_method: dict[str, Any] = {method: self.decisions.labels(method) for method in METHODS}
        self.latency = HotHistogram("gatewayd_classifier_latency_seconds",
                                    "Time from reading a queued packet to its verdict.", LATENCY_BUCKETS, registry)
        # Only with `gatewayd run --measure-queue-wait` (kernel receive timestamps on): empty otherwise.
        self.queue_wait = HotHistogram("gatewayd_classifier_queue_wait_seconds",
                                       "Time from the kernel receiving a queued packet to the daemon reading it "
                                       "(only with `gatewayd run --measure-queue-wait`).", LATENCY_BUCKETS, registry)
        self.errors = Counter("gatewayd_classifier_errors", "Queued packets whose handling failed (accepted anyway).",
                              registry=registry)
        self.generation = Gauge("gatewayd_policy_generation", "Policy generation: +1 on every successful apply.",
                                registry=registry)
        self.reload_time = Gauge("gatewayd_policy_last_reload_timestamp_seconds",
                                 "When the last reload was attempted.", registry=registry)
        self.reload_success = Gauge("gatewayd_policy_last_reload_success",
                                    "Whether the last reload applied (1) or was refused (0).", registry=registry)
        self.reloads = Counter("gatewayd_policy_reloads", "Reload attempts by result.", ["result"], registry=registry)
        self.fail_mode = Gauge("gatewayd_fail_mode", "The fail mode in force (1 for the current one).", ["mode"],
                               registry=registry)
        self.degraded = Gauge("gatewayd_policy_degraded",
                              "1 while the daemon runs its last-known-good policy because the configured file "
                              "does not load.",
                              registry=registry)
        self.reverts = Counter("gatewayd_policy_reverts", "Changes reverted by commit-confirm "
                               "(a failed health check or no confirm in time).", registry=registry)
        self.queue_fail_open = Gauge("gatewayd_nfqueue_fail_open",
                                     "1 while the queue passes packets it cannot take (fail_mode open), "
                                     "0 while it drops them.", registry=registry)
        self.queue_unread = Counter("gatewayd_nfqueue_unread_packets",
                                    "Packets queued for the classifier that never reached it (socket buffer full, "
                                    "seen as gaps in packet ids): passed without a verdict under fail_mode open, "
                                    "dropped under closed.", registry=registry)
        self.gateway_announcements = Counter(
            "gatewayd_guard_gateway_announcements", "Gratuitous ARP frames the gateway sent for its own addresses "
            "after a LAN host claimed one (ARP spoofing), so the LAN's hosts unlearn the lie.", registry=registry)
        self.ha_state = Gauge("gatewayd_ha_state", "This node's VRRP state in the HA pair (1 for the current one; "
                              "absent without an ha section).", ["state"], registry=registry)
        self.ha_peer_state = Gauge("gatewayd_ha_peer_state", "The peer's VRRP state as it last told us over the "
                                   "sync link (1 for the current one; unknown after 3.5 s of silence).", ["state"],
                                   registry=registry)
        self.ha_policy_hash_match = Gauge("gatewayd_ha_policy_hash_match",
                                          "1 while the peer runs a policy file with the same content, 0 while it "
                                          "runs another or is not heard.", registry=registry)
        self.gc_pauses = GcPauses(registry)  # recording from Daemon.run's ready point (install)
        self.up_since = Gauge("gatewayd_start_time_seconds", "When the daemon started (Unix time).", registry=registry)

    def count_decision(self, method: str) -> None:
        child = self._decisions_by_method.get(method)
        if child is None:
            child = self._decisions_by_method[method] = self.decisions.labels(method)
        child.inc()

    def set_ha(self, state: str, peer_state: str, same_policy: bool | None) -> None:
        for candidate in HA_STATES:
            self.ha_state.labels(candidate).set(1 if candidate == state else 0)
            self.ha_peer_state.labels(candidate).set(1 if candidate == peer_state else 0)
        self.ha_policy_hash_match.set(1 if same_policy else 0)

    def set_fail_mode(self, mode: str) -> None:
        for candidate in ("open", "closed"):
            self.fail_mode.labels(candidate).set(1 if candidate == mode else 0)
