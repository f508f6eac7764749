"""The Grafana dashboard is provisionable: valid JSON, one data source input used by every query."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "gatewayd.json"


def test_every_panel_queries_the_input_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 14
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}" and target["expr"], panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_no_query_uses_the_kernels_rate_estimates() -> None:
    # Rates come from the byte counters, not from the kernel's ~8 s estimates (gatewayd_*_rate_bytes_per_second).
    assert "_rate_bytes_per_second" not in DASHBOARD.read_text()
