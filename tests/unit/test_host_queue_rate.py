"""classifier.host_queue_rate: one LAN host's flood cannot fill the classifier's one queue
(compile/ruleset.py, policy/classifier.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gatewayd.compile.kernel_names import COUNTER_HOST_QUEUE_RATE
from gatewayd.compile.plan import compile_plan
from gatewayd.policy.loader import load_policy
from gatewayd.policy.model import Policy

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "policies" / "office.yaml"


@pytest.fixture(scope="module")
def office() -> Policy:
    return load_policy(str(OFFICE))


def classify_rules(policy: Policy) -> list[str]:
    chain = next(c for c in compile_plan(policy).ruleset.table.chains if c.name == "classify")
    return [rule.statement for rule in chain.rules]


def test_the_default_is_a_rate_per_host_checked_before_any_packet_is_queued(office: Policy) -> None:
    assert office.classifier.host_queue_rate == 2000
    rules = classify_rules(office)
    limited = [i for i, r in enumerate(rules) if COUNTER_HOST_QUEUE_RATE in r]
    queued = [i for i, r in enumerate(rules) if "meta mark set meta mark |" in r]
    assert len(limited) == 4 and queued
    assert max(limited) < min(queued)  # over the rate, a packet returns before it can be marked for the queue
    text = "\n".join(rules[i] for i in limited)
    # The host is the flow's LAN client: the sender of its packets, the receiver of the replies.
    for key in ("ct direction original update @queue_rate_v4 { ip saddr",
                "ct direction reply update @queue_rate_v4 { ip daddr",
                "ct direction original update @queue_rate_v6 { ip6 saddr",
                "ct direction reply update @queue_rate_v6 { ip6 daddr"):
        assert key in text
    assert text.count("limit rate over 2000/second burst 2000 packets") == 4
    # Only packets that would be queued: undecided and within max_packets.
    assert all("ct packets <= 8" in rules[i] and rules[i].endswith("return") for i in limited)


def test_the_rate_follows_the_policy_and_zero_turns_it_off(office: Policy) -> None:
    faster = dataclasses.replace(office, classifier=dataclasses.replace(office.classifier, host_queue_rate=500))
    assert sum("limit rate over 500/second burst 500 packets" in r for r in classify_rules(faster)) == 4
    off = dataclasses.replace(office, classifier=dataclasses.replace(office.classifier, host_queue_rate=0))
    assert not any(COUNTER_HOST_QUEUE_RATE in r for r in classify_rules(off))
    table = compile_plan(off).ruleset.table
    assert not any(s.name.startswith("queue_rate_") for s in table.sets)
    assert COUNTER_HOST_QUEUE_RATE in table.counters  # the metric reads 0, it does not vanish


def test_the_policy_file_sets_it(tmp_path: Path) -> None:
    text = OFFICE.read_text().replace("classifier:\n", "classifier:\n  host_queue_rate: 750\n", 1)
    assert "host_queue_rate: 750" in text
    path = tmp_path / "office.yaml"
    path.write_text(text)
    assert load_policy(str(path)).classifier.host_queue_rate == 750
