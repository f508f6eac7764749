"""The `schedules` section: named days and hours that rules refer to.

    schedules:
      work-hours: { days: mon-fri, hours: "09:00-18:00" }
"""

from __future__ import annotations

from yaml.nodes import Node

from gatewayd.policy.fields import (
    DAY_NAMES,
    DAY_SETS,
    HOURS_PATTERN,
    parse_days,
    parse_hour_range,
)
from gatewayd.policy.model import Schedule
from gatewayd.policy.named import read_named
from gatewayd.policy.schema_parts import (
    Schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    is_empty,
    parsed_list,
    text_list_of,
)

SCHEDULE_KEYS = ("days", "hours")
DAY_RANGE_PATTERN = "^({0})-({0})$".format("|".join(DAY_NAMES))


def read_schedules(node: Node, checker: Checker) -> dict[str, Schedule]:
    return read_named(node, checker, "schedules", "schedule", lambda entry: _read_schedule(entry, checker))


def _read_schedule(entry: Entry, checker: Checker) -> Schedule | None:
    what = f"schedule '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, SCHEDULE_KEYS, required=("days",), owner=entry.key)
    if known is None:
        return None
    if "days" not in known:
        return None
    issues_before = len(checker.issues)
    days: set[int] = set()
    day_texts = text_list_of(known["days"].value, checker, f"'days' of {what}")
    if is_empty(known["days"].value):
        checker.report(known["days"].value, f"'days' of {what} is empty (expected e.g. mon-fri)")
    for item, text in day_texts:
        days |= field_at(checker, item, parse_days, text) or set()
    hours = parsed_list(known, "hours", checker, what, parse_hour_range)
    if len(checker.issues) > issues_before:
        return None
    return Schedule(entry.name, frozenset(days), tuple(hours), checker.location(entry.key))


def schedule_schema() -> Schema:
    day = {
        "anyOf": [
            {"enum": [*DAY_NAMES, *DAY_SETS]},
            {"type": "string", "pattern": DAY_RANGE_PATTERN},
        ],
        "description": "mon..sun, a range such as mon-fri, weekdays, weekend or daily.",
    }
    hours = string_schema('Local time range "HH:MM-HH:MM"; 24:00 may end a range. A range past midnight '
                          "(22:00-06:00) starts on the schedule's days and ends the next day.", pattern=HOURS_PATTERN)
    return object_schema(
        "When a rule applies.",
        {
            "days": one_or_list(day, "Days of the week."),
            "hours": one_or_list(hours, "Time ranges within those days; omit for all day."),
        },
        ("days",),
    )
