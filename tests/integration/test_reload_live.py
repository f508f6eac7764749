"""A reload under traffic: unchanged apps keep their connections, a newly blocked one is cut at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.long_flows import LongDownloads
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab

pytestmark = pytest.mark.integration

UNCHANGED = ["dingtalk", "erp", "crm", "news"]  # verdicts the new policy leaves alone
NEWLY_BLOCKED = "bilibili"  # video: allowed (bulk) for finance before, blocked after
NO_VIDEO_FOR_FINANCE = ("rules:\n  - name: no-video-for-finance\n    groups: [finance]\n    categories: [video]\n"
                        "    action: block\n")


def test_reload_resets_nothing_unchanged_and_cuts_the_newly_blocked_app_within_a_second(tmp_path: Path) -> None:
    policy = tmp_path / "office.yaml"
    policy.write_text(OFFICE_POLICY.read_text())
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, policy).start()
        try:
            sites = [DEFAULT_SITES[key] for key in (*UNCHANGED, NEWLY_BLOCKED)]
            flows = LongDownloads(lab, "finance", [(site.ipv4, site.hostname) for site in sites] * 2, seconds=6)
            time.sleep(2)  # every flow decided and flowing
            policy.write_text(OFFICE_POLICY.read_text().replace("\nrules:\n", "\n" + NO_VIDEO_FOR_FINANCE, 1))
            daemon.reload()
            applied_at = time.time()
            results = flows.results()
        finally:
            daemon.stop()
    unchanged = [r for r in results if r.host != DEFAULT_SITES[NEWLY_BLOCKED].hostname]
    blocked = [r for r in results if r.host == DEFAULT_SITES[NEWLY_BLOCKED].hostname]
    resets = [r for r in unchanged if r.outcome != "completed"]
    assert len(unchanged) == 8 and not resets, f"unchanged flows disturbed: {resets}"
    assert all(r.bytes > 1_000_000 for r in unchanged)
    for flow in blocked:
        assert flow.outcome in ("reset", "stalled"), flow
        assert flow.last_byte - applied_at < 1.0, f"still received {flow.last_byte - applied_at:.2f}s after the reload"
