"""The app hierarchy: a rule on a parent covers its sub-apps; the most specific id is what is reported."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from pathlib import Path

import pytest

from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile.plan import compile_plan
from gatewayd.explain.flow import Explainer, FlowQuery, as_json, render
from gatewayd.policy.app_tree import ancestors, with_descendants
from gatewayd.policy.errors import PolicyError
from gatewayd.policy.loader import load_policy_text

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_catalog_apps import decide, tls_flow
from test_plan import kernel_rules_for_app

HEAD = ("version: 1\ninterfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}\n"
        "classes: {default: {priority: 3}, realtime: {priority: 0}}\n")
BLOCK_FACEBOOK = HEAD + "rules:\n  - name: no-facebook\n    apps: [facebook]\n    action: block\n"
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0)


def test_catalog_parents_name_nDPI_sub_apps() -> None:
    policy = load_policy_text(BLOCK_FACEBOOK, "p.yaml")
    apps = policy.applications
    assert ancestors("instagram", apps) == ("facebook",)
    assert ancestors("googleservices", apps) == ("google",)
    assert ancestors("whatsappfiles", apps) == ("whatsapp",) and ancestors("whatsappcall", apps) == ("whatsapp",)
    assert ancestors("skype_teamscall", apps) == ("teams",) and ancestors("ms_onedrive", apps) == ("microsoft365",)
    assert ancestors("facebook", apps) == ()
    assert {"facebook", "instagram", "facebookmessenger"} <= with_descendants({"facebook"}, apps)
    assert "whatsapp" not in with_descendants({"whatsappcall"}, apps)  # a child does not cover its parent


def test_rule_and_explain_on_a_parent_match_the_child() -> None:
    policy = load_policy_text(BLOCK_FACEBOOK, "p.yaml")
    explainer = Explainer(policy)
    query = FlowQuery(ipaddress.ip_address("192.0.2.30"), "i.instagram.com", 443, "tcp", MONDAY_10)
    explanation = explainer.explain(query)
    assert explanation.app.app == "instagram" and explanation.part_of == ("facebook",)
    assert explanation.verdict.rule_name == "no-facebook" and explanation.verdict.action == "block"
    assert "app      instagram (social, part of facebook) by domain" in render(explanation)
    assert as_json(explanation)["part_of"] == ["facebook"]
    other = explainer.explain(FlowQuery(ipaddress.ip_address("192.0.2.30"), "www.youtube.com", 443, "tcp", MONDAY_10))
    assert other.verdict.rule_name == "default"


def test_kernel_rule_on_a_parent_carries_the_children_numbers() -> None:
    plan = compile_plan(load_policy_text(BLOCK_FACEBOOK, "p.yaml"))
    numbers = plan.numbering.apps.numbers

    def runs_no_facebook(app: str) -> bool:
        return any("no-facebook" in rule.comment for rule in kernel_rules_for_app(plan, numbers[app]))
    for app in ("facebook", "instagram", "facebookmessenger"):
        assert runs_no_facebook(app), app
    assert not runs_no_facebook("whatsapp")


def test_a_rule_on_a_child_below_its_parents_rule_is_reported_unreachable() -> None:
    text = BLOCK_FACEBOOK + "  - name: instagram-fast\n    apps: [instagram]\n    class: realtime\n"
    with pytest.raises(PolicyError) as error:
        load_policy_text(text, "p.yaml")
    assert "rule 'instagram-fast' can never match: rule 'no-facebook'" in str(error.value)
    above = HEAD + ("rules:\n  - name: instagram-fast\n    apps: [instagram]\n    class: realtime\n"
                    "  - name: no-facebook\n    apps: [facebook]\n    action: block\n")
    load_policy_text(above, "p.yaml")  # the child's rule first is fine


@pytest.mark.parametrize("name,app", [
    ("i.instagram.com", "instagram"), ("www.facebook.com", "facebook"), ("mtalk.google.com", "googleservices"),
    ("alt3-mtalk.google.com", "googleservices"), ("update.googleapis.com", "googleservices"),
    ("android.clients.google.com", "playstore"), ("youtubei.googleapis.com", "youtube"),
    ("www.google.com", "google"), ("onedrive.live.com", "ms_onedrive"), ("www.messenger.com", "facebookmessenger"),
])
def test_classifier_reports_the_most_specific_id(name: str, app: str) -> None:
    classifier = Classifier(ClassifierTables.build(load_policy_text(HEAD, "p.yaml").applications.values()))
    decision = decide(classifier, tls_flow(name, 40100))
    assert (decision.app, decision.method, decision.evidence) == (app, "tls-sni", name)


def test_a_call_sub_app_needs_no_evidence_of_its_own_but_other_sub_apps_do() -> None:
    calls = HEAD + ("applications:\n  chatcall:\n    name: Chat calls\n    category: voice-video\n"
                    "    parent: telegram\nrules: []\n")
    policy = load_policy_text(calls, "p.yaml")
    tables = ClassifierTables.build(policy.applications.values())
    # The policy's call app replaces nothing, so telegram now has two call sub-apps: no guess.
    assert "telegram" not in tables.call_apps and tables.call_apps["whatsapp"] == "whatsappcall"
    files = calls.replace("voice-video", "cloud-storage")
    with pytest.raises(PolicyError, match="application 'chatcall' has no domains"):
        load_policy_text(files, "p.yaml")
