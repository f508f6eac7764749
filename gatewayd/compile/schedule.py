"""A policy schedule as nft time matches (`meta day`, `meta hour`), one alternative per rule fragment.

A range past midnight belongs to the day it starts on: `days: mon, hours: 22:00-03:30`
is Monday 22:00 to Tuesday 03:30. nft's `meta day` and `meta hour` are read from the
same packet time, so such a range is two fragments: the evening on the schedule's days
and the early hours on the day after each. explain/rules.py (schedule_covers) evaluates
the same thing in Python; keep the two in step.

Times are local: nft converts a `meta hour` string to UTC with the local timezone when
the rule is loaded, so the strings stay in the policy's local time here.
"""

from __future__ import annotations

from collections.abc import Iterable

from gatewayd.policy.fields import MINUTES_PER_DAY
from gatewayd.policy.model import Schedule

NFT_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def schedule_matches(schedule: Schedule) -> list[str]:
    """The alternatives (one nft rule each) that together mean: the schedule covers the packet's time."""
    every_day = len(schedule.days) == len(NFT_DAYS)
    if not schedule.hours:
        return [day_match(schedule.days)]
    matches = []
    for hours in schedule.hours:
        if hours.start_minute < hours.end_minute or every_day:
            # Every day: today's early hours belong to yesterday's range, which is on too, so nft's own
            # wrapping range ("22:00"-"05:59:59" matches both ends) says the same in one rule.
            matches.append(_joined(day_match(schedule.days), hour_match(hours.start_minute, hours.end_minute)))
            continue
        matches.append(_joined(day_match(schedule.days), hour_match(hours.start_minute, MINUTES_PER_DAY)))
        if hours.end_minute > 0:  # 22:00-00:00 ends at midnight: nothing of it falls on the next day
            next_days = frozenset((day + 1) % len(NFT_DAYS) for day in schedule.days)
            matches.append(_joined(day_match(next_days), hour_match(0, hours.end_minute)))
    return matches


def day_match(days: Iterable[int]) -> str:
    chosen = sorted(set(days))
    if len(chosen) == len(NFT_DAYS):
        return ""
    return "meta day { " + ", ".join(f'"{NFT_DAYS[day]}"' for day in chosen) + " }"


def hour_match(start_minute: int, end_minute: int) -> str:
    """`meta hour` from start up to, not including, end; nft ranges are inclusive, so end is its last second."""
    last_minute = (end_minute - 1) % MINUTES_PER_DAY
    return f'meta hour "{_clock(start_minute)}"-"{_clock(last_minute)}:59"'


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _joined(*parts: str) -> str:
    return " ".join(part for part in parts if part)



def schedule_boundaries(schedules: Iterable[Schedule]) -> frozenset[int]:
    """The minutes of the day at which one of `schedules` may start or end applying: where the
    daemon starts a new rules epoch (compile/decision_epoch.py). Midnight is one whenever a
    schedule leaves out a day. A superset is harmless: an extra epoch costs each open flow one
    more pass through the rules."""
    minutes: set[int] = set()
    for schedule in schedules:
        if len(set(schedule.days)) < len(NFT_DAYS):
            minutes.add(0)
        for hours in schedule.hours:
            minutes.add(hours.start_minute % MINUTES_PER_DAY)
            minutes.add(hours.end_minute % MINUTES_PER_DAY)
    return frozenset(minutes)


def seconds_to_next_boundary(boundaries: frozenset[int], seconds_into_day: float) -> float | None:
    """Seconds from local time `seconds_into_day` to the next boundary (a boundary now is the next
    day's); None without boundaries."""
    if not boundaries:
        return None
    seconds_per_day = MINUTES_PER_DAY * 60
    return min((minute * 60 - seconds_into_day) % seconds_per_day or seconds_per_day for minute in boundaries)
