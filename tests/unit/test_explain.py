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


@pytest.mark.parametrize(("minute", "expected"), [(21 * 60 + 59, False), (22 * 60, True), (23 * 60 + 59, True),
                                                   (0, True), (5 * 60 + 59, True), (6 * 60, False)])
def test_range_past_midnight_matches_both_ends_on_the_same_day(minute: int, expected: bool) -> None:
    night = Schedule("night", frozenset({0}), (HourRange(22 * 60, 6 * 60),))
    when = dt.datetime(2026, 11, 23) + dt.timedelta(minutes=minute)  # Monday
    assert schedule_covers(night, when) is expected
    assert schedule_covers(night, when + dt.timedelta(days=1)) is False  # Tuesday is not in the schedule


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
