"""The policy's rules evaluated in Python, with the kernel's exact semantics.

The kernel evaluates the compiled `rules` chain (compile/ruleset.py); this
module answers the same question for one flow so that `explain`, `replay`
and `status` can say which rule decided a flow and why. Keep the two in step:
a rule matches when
  * the source is in one of its groups (or it names none) and in none of its
    except_groups — by address, or by MAC for MAC members;
  * the flow's app is in the rule's apps/categories (or it names none; an
    undecided flow matches only rules that name no app);
  * its schedule covers the time: the day of week AND the time of day, each
    read on the same local clock, as nft's `meta day` and `meta hour` do; a
    range past midnight belongs to the day it starts on (mon 22:00-06:00 is
    Monday 22:00 to Tuesday 06:00), as compile/schedule.py splits it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gatewayd.compile.addresses import group_networks
from gatewayd.policy.model import Group, IPAddress, Policy, Rule, Schedule


@dataclass(frozen=True)
class FlowFacts:
    """What the kernel knows of a flow when it runs the rules."""

    source: IPAddress
    app: str | None  # None = not decided yet
    when: dt.datetime  # local time of the packet
    source_mac: str | None = None


@dataclass(frozen=True)
class RuleVerdict:
    rule: Rule | None  # None = the policy's default
    action: str  # "allow" or "block"
    qos_class: str | None  # the class of an allowed flow
    also_matching: tuple[Rule, ...]  # rules below the deciding one that match too

    @property
    def rule_name(self) -> str:
        return self.rule.name if self.rule else "default"


def in_group(group: Group, address: IPAddress, mac: str | None) -> bool:
    if mac is not None and mac.lower() in group.macs:
        return True
    return any(address.version == net.version and address in net for net in group_networks(group))


def schedule_covers(schedule: Schedule, when: dt.datetime) -> bool:
    day = when.weekday()
    if not schedule.hours:
        return day in schedule.days
    minute = when.hour * 60 + when.minute
    day_before = (day - 1) % 7
    for hours in schedule.hours:
        if hours.start_minute < hours.end_minute:
            if day in schedule.days and hours.start_minute <= minute < hours.end_minute:
                return True
        # Past midnight: the evening on a schedule day, the early hours on the day after one.
        elif (day in schedule.days and minute >= hours.start_minute) or (
                day_before in schedule.days and minute < hours.end_minute):
            return True
    return False


class RuleEngine:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._apps_of_rule = {rule.name: self.policy.apps_of_rule(rule) for rule in policy.rules}

    def groups_of(self, address: IPAddress, mac: str | None = None) -> list[str]:
        """Every group the host is in, file order; the first is the one traffic is counted under."""
        return [name for name, group in self.policy.groups.items() if in_group(group, address, mac)]

    def rule_matches(self, rule: Rule, facts: FlowFacts) -> bool:
        groups = self.policy.groups
        if rule.groups and not any(in_group(groups[g], facts.source, facts.source_mac) for g in rule.groups):
            return False
        if any(in_group(groups[g], facts.source, facts.source_mac) for g in rule.except_groups):
            return False
        if (rule.apps or rule.categories) and (facts.app is None or facts.app not in self._apps_of_rule[rule.name]):
            return False
        if rule.schedule and not schedule_covers(self.policy.schedules[rule.schedule], facts.when):
            return False
        return True

    def evaluate(self, facts: FlowFacts) -> RuleVerdict:
        matching = [rule for rule in self.policy.rules if self.rule_matches(rule, facts)]
        if not matching:
            action = self.policy.default_action
            return RuleVerdict(None, action, self.policy.default_class if action == "allow" else None, ())
        first = matching[0]
        qos_class = (first.qos_class or self.policy.default_class) if first.action == "allow" else None
        return RuleVerdict(first, first.action, qos_class, tuple(matching[1:]))

