"""The control socket: status, apply with health checks and commit-confirm, confirm."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab
from gatewayd.lab.traffic import Outcome

pytestmark = pytest.mark.integration
BLOCKED = {Outcome.RESET, Outcome.REFUSED}
BILIBILI = DEFAULT_SITES["bilibili"].hostname
HEALTHY = "\nhealth:\n  dns: {server: 203.0.113.53, name: im.dingtalk.com}\n  probes: [\"203.0.113.10:443\"]\n"
# A new rule in front: finance may no longer watch video.
NO_VIDEO_FOR_FINANCE = ("rules:\n  - name: no-video-for-finance\n    groups: [finance]\n    categories: [video]\n"
                        "    action: block\n")


@pytest.fixture
def office(office_daemon: tuple[Lab, GatewayDaemon, Path]) -> tuple[Lab, GatewayDaemon, Path]:
    """The running office, with the directory beside its policy for new policies."""
    lab, daemon, policy = office_daemon
    return lab, daemon, policy.parent


def changed_policy(tmp_path: Path, extra: str = HEALTHY) -> Path:
    text = OFFICE_POLICY.read_text()
    assert "\nrules:\n" in text
    path = tmp_path / "changed.yaml"
    path.write_text(text.replace("\nrules:\n", "\n" + NO_VIDEO_FOR_FINANCE, 1) + extra)
    return path


def test_status_shows_generation_traffic_and_recent_blocked_flows(office: tuple[Lab, GatewayDaemon, Path]) -> None:
    lab, daemon, _ = office
    assert traffic.https_get(lab, "sales", DEFAULT_SITES["dingtalk"].hostname, ip_version=4).ok
    assert traffic.https_get(lab, "finance", DEFAULT_SITES["wechat"].hostname, ip_version=4).error in BLOCKED
    result = daemon.control("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["generation"] == 1 and status["fail_mode"] == "open" and not status["degraded"]
    assert any(row["app"] == "dingtalk" and row["action"] == "allow" and row["bytes"] > 0 for row in status["traffic"])
    blocked = [row for row in status["recent_blocked"] if row["app"] == "wechat"]
    assert blocked and blocked[0]["client"] == OFFICE_HOSTS["finance"].ipv4
    assert blocked[0]["rule"] == "im-front-desk-only" and blocked[0]["group"] == "finance"
    assert blocked[0]["evidence"] == f"DNS: {DEFAULT_SITES['wechat'].hostname}"
    assert status["learned_addresses"]["kernel_v4"] >= 2
    text = daemon.control("status")
    assert "im-front-desk-only" in text.stdout and "generation 1" in text.stdout
    daemon.reload()  # the kernel's memory of blocked flows survives a reload
    after = json.loads(daemon.control("status", "--json").stdout)
    assert after["generation"] == 2
    assert any(row["app"] == "wechat" and row["rule"] == "im-front-desk-only" for row in after["recent_blocked"])


def test_status_ages_of_blocked_flows_count_from_when_each_was_blocked(
        office: tuple[Lab, GatewayDaemon, Path]) -> None:
    lab, daemon, _ = office
    assert traffic.https_get(lab, "finance", DEFAULT_SITES["wechat"].hostname, ip_version=4).error in BLOCKED
    time.sleep(4)
    assert traffic.https_get(lab, "guest", BILIBILI, ip_version=4).error in BLOCKED

    def ages() -> dict[str, int]:
        result = daemon.control("status", "--json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)["recent_blocked"]
        assert [row["seconds_ago"] for row in rows] == sorted(row["seconds_ago"] for row in rows)  # newest first
        return {row["app"]: row["seconds_ago"] for row in rows if row["app"] in ("wechat", "bilibili")}

    first = ages()
    assert first["wechat"] >= first["bilibili"] + 3, first
    assert first["wechat"] <= 60
    daemon.reload()  # elements carried over a reload keep their age
    after_reload = ages()
    assert after_reload["wechat"] >= first["wechat"] and after_reload["wechat"] >= after_reload["bilibili"] + 3


def test_confirmed_change_is_kept(office: tuple[Lab, GatewayDaemon, Path]) -> None:
    lab, daemon, tmp_path = office
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).ok
    new_policy = changed_policy(tmp_path)
    result = daemon.control("apply", str(new_policy), "--confirm-within", "30", "--json")
    answer = json.loads(result.stdout)
    assert answer["ok"] and answer["state"] == "awaiting_confirm", answer
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).error in BLOCKED  # in force already
    assert daemon.control("confirm").returncode == 0
    status = json.loads(daemon.control("status", "--json").stdout)
    assert status["policy_file"] == str(new_policy) and status["pending_change"] is None
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).error in BLOCKED


def test_unconfirmed_change_reverts_by_itself(office: tuple[Lab, GatewayDaemon, Path]) -> None:
    lab, daemon, tmp_path = office
    answer = json.loads(daemon.control("apply", str(changed_policy(tmp_path)), "--confirm-within", "2",
                                       "--json").stdout)
    assert answer["ok"] and answer["state"] == "awaiting_confirm"
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).error in BLOCKED
    daemon.wait_for_log("event=change_reverted", timeout=10)
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).ok
    assert metric_value(daemon.metrics(), "gatewayd_policy_reverts_total") == 1
    assert daemon.control("confirm").returncode == 1  # nothing left to confirm


def test_failing_health_check_reverts_at_once(office: tuple[Lab, GatewayDaemon, Path]) -> None:
    lab, daemon, tmp_path = office
    broken_probe = "\nhealth:\n  probes: [\"203.0.113.99:443\"]\n"  # nothing listens there
    started = time.monotonic()
    result = daemon.control("apply", str(changed_policy(tmp_path, broken_probe)), "--confirm-within", "60", "--json")
    answer = json.loads(result.stdout)
    assert not answer["ok"] and answer["state"] == "reverted" and "203.0.113.99:443" in answer["reason"]
    assert time.monotonic() - started < 15
    assert traffic.https_get(lab, "finance", BILIBILI, ip_version=4).ok


def test_broken_policy_is_refused_and_nothing_changes(office: tuple[Lab, GatewayDaemon, Path]) -> None:
    _, daemon, tmp_path = office
    broken = tmp_path / "broken.yaml"
    broken.write_text(OFFICE_POLICY.read_text().replace("  upload: 20mbit", "  upload: fast"))
    result = daemon.control("apply", str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{broken}:24:11:" in result.stderr
    assert json.loads(daemon.control("status", "--json").stdout)["generation"] == 1
