"""Metrics of the HA state sync (daemon/ha_state_sync.py): entries and bytes over the sync link."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

SYNC_KINDS = ("learned", "blocked", "guard")  # daemon/ha_sync_wire.py KINDS
SYNC_DIRECTIONS = ("sent", "received", "refused")


class HaSyncMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.entries = Counter("gatewayd_ha_sync_entries", "State entries over the HA sync link, by kind: sent "
                               "(master), received and written (backup), refused (malformed, over the rate "
                               "limit, unknown app, or arriving on a master).", ["direction", "kind"],
                               registry=registry)
        self.bytes = Counter("gatewayd_ha_sync_bytes", "UDP payload bytes of the HA state sync, sent and received.",
                             ["direction"], registry=registry)
        for direction in SYNC_DIRECTIONS:
            for kind in SYNC_KINDS:
                self.entries.labels(direction, kind)
        for direction in ("sent", "received"):
            self.bytes.labels(direction)
