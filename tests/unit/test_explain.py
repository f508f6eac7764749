"""explain: the Python rule engine gives the verdict the kernel's rules chain gives."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.cli.explain import parse_when
from gatewayd.explain.flow import Explainer, FlowQuery
from gatewayd.explain.rules import FlowFacts, RuleEngine, schedule_covers
from gatewayd.lab.office import office_policy_with_work_hours
from gatewayd.policy.loader import load_policy, load_policy_text
from gatewayd.policy.model import HourRange, Schedule

HERE = Path(__file__).parent
REPO = HERE.parents[1]
SMALL = HERE / "plan" / "small.yaml"
CATALOG = HERE / "plan" / "catalog.yaml"
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0)  # a Monday
SATURDAY_10 = dt.datetime(2026, 11, 28, 10, 0)


def small_engine() -> RuleEngine:
    return RuleEngine(load_policy_text(SMALL.read_text(), "small.yaml", str(CATALOG)))


def facts(source: str, app: str | None, when: dt.datetime = MONDAY_10, mac: str | None = None) -> FlowFacts:
    return FlowFacts(ipaddress.ip_address(source), app, when, mac)


def test_first_matching_rule_decides_and_later_matches_are_listed() -> None:
    verdict = small_engine().evaluate(facts("192.0.2.200", "youku"))
    assert verdict.rule_name == "video-at-work" and verdict.action == "block"
    assert [r.name for r in verdict.also_matching] == ["guests"]


def test_schedule_outside_its_days_does_not_match() -> None:
    verdict = small_engine().evaluate(facts("192.0.2.200", "youku", SATURDAY_10))
    assert verdict.rule_name == "guests" and verdict.qos_class == "bulk"


def test_except_groups_exempt_managers() -> None:
    engine = small_engine()
    assert engine.evaluate(facts("192.0.2.20", "bittorrent")).action == "block"
    manager = engine.evaluate(facts("192.0.2.10", "bittorrent"))
    assert manager.rule_name == "default" and manager.action == "allow" and manager.qos_class == "default"


def test_mac_members_put_any_address_in_the_group() -> None:
    engine = small_engine()
    outsider = "198.51.100.77"
    assert engine.evaluate(facts(outsider, "youku")).rule_name == "default"
    assert engine.evaluate(facts(outsider, "youku", mac="02:00:00:00:00:99")).rule_name == "video-at-work"


def test_undecided_flows_match_only_rules_without_apps() -> None:
    engine = small_engine()
    assert engine.evaluate(facts("192.0.2.20", None)).rule_name == "default"
    assert engine.evaluate(facts("192.0.2.200", None)).rule_name == "guests"


MONDAY = dt.datetime(2026, 11, 23)


@pytest.mark.parametrize(("offset", "expected"), [
    # Monday night shift 22:00-06:00 runs from Monday 22:00 to Tuesday 06:00.
    (dt.timedelta(hours=21, minutes=59), False),
    (dt.timedelta(hours=22), True),
    (dt.timedelta(hours=23, minutes=59), True),
    (dt.timedelta(days=1), True),  # Tuesday 00:00
    (dt.timedelta(days=1, hours=5, minutes=59), True),
    (dt.timedelta(days=1, hours=6), False),
    (dt.timedelta(days=1, hours=22), False),  # Tuesday is not a shift day
    # Monday's early hours belong to Sunday night, which has no shift.
    (dt.timedelta(0), False),
    (dt.timedelta(hours=5, minutes=59), False),
])
def test_range_past_midnight_ends_on_the_next_day(offset: dt.timedelta, expected: bool) -> None:
    night = Schedule("night", frozenset({0}), (HourRange(22 * 60, 6 * 60),))
    assert schedule_covers(night, MONDAY + offset) is expected


def test_range_ending_at_midnight_stays_on_its_day() -> None:
    late = Schedule("late", frozenset({0}), (HourRange(22 * 60, 0),))
    assert schedule_covers(late, MONDAY + dt.timedelta(hours=23, minutes=59))
    assert not schedule_covers(late, MONDAY + dt.timedelta(days=1))


def night_shift_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "night-shift.yaml"
    policy.write_text(office_policy_with_work_hours("mon", "22:00-03:30"))
    return policy


@pytest.mark.parametrize(("at", "games_blocked"), [
    ("mon 21:59", False), ("mon 22:00", True), ("tue 02:00", True), ("tue 03:29", True), ("tue 03:30", False),
    ("mon 02:00", False),  # the early hours of Monday belong to Sunday's night
])
def test_explain_at_puts_the_hours_after_midnight_on_the_next_day(tmp_path: Path, at: str,
                                                                   games_blocked: bool) -> None:
    command = [sys.executable, "-m", "gatewayd", "explain", str(night_shift_policy(tmp_path)), "--src", "192.0.2.20",
               "--dst", "store.steampowered.com", "--at", at, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)
    assert said["app"] == "steam"
    assert (said["rule"] == "no-games-at-work") is games_blocked
    assert (said["action"] == "block") is games_blocked


def test_explain_names_app_evidence_group_and_rule_location() -> None:
    policy = load_policy(str(REPO / "policies" / "office.yaml"))
    explanation = Explainer(policy).explain(FlowQuery(ipaddress.ip_address("192.0.2.200"), "www.youku.com", 443,
                                                      "tcp", MONDAY_10))
    assert explanation.app.app == "youku" and explanation.app.method == "domain"
    assert explanation.accounting_group == "guest"
    assert explanation.verdict.rule_name == "no-video-for-guests" and explanation.verdict.action == "block"
    assert explanation.verdict.rule is not None and explanation.verdict.rule.location is not None
    assert explanation.verdict.rule.location.file.endswith("office.yaml")


def test_parse_when_forms() -> None:
    now = dt.datetime(2026, 11, 25, 8, 0)  # a Wednesday
    assert parse_when("10:30", now) == dt.datetime(2026, 11, 25, 10, 30)
    assert parse_when("mon 09:00", now) == dt.datetime(2026, 11, 23, 9, 0)
    assert parse_when("2026-12-01 18:15", now) == dt.datetime(2026, 12, 1, 18, 15)
    with pytest.raises(ValueError):
        parse_when("tomorrow-ish", now)


def test_explain_command_json_and_bad_input() -> None:
    base = [sys.executable, "-m", "gatewayd", "explain", str(REPO / "policies" / "office.yaml")]
    ok = subprocess.run(base + ["--src", "192.0.2.130", "--dst", "web.wechat.com", "--at", "mon 10:00", "--json"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert (result["app"], result["rule"], result["action"], result["group"]) == (
        "wechat", "im-front-desk-only", "block", "finance")
    bad = subprocess.run(base + ["--src", "not-an-address", "--dst", "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "not-an-address" in bad.stderr
