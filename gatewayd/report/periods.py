"""The period a report covers and the one just before it, to compare with."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from gatewayd.report.prometheus_api import ReportError

DURATION = re.compile(r"(\d+)([mhd])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Period:
    label: str  # "yesterday", "the last 7 days", ...
    start: dt.datetime  # local time, aware
    end: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def before(self) -> Period:
        """The period of the same length that ends where this one starts."""
        return Period(f"the {self.label_length} before", self.start - (self.end - self.start), self.start)

    @property
    def label_length(self) -> str:
        return human_duration(self.seconds)

    def describe(self) -> str:
        return f"{self.start:%a %Y-%m-%d %H:%M} to {self.end:%a %Y-%m-%d %H:%M}"


def human_duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds:g} seconds"


def period_of(since: str | None, week: bool, month: bool, now: dt.datetime | None = None) -> Period:
    """--since yesterday|today|DURATION (30m, 6h, 2d), --week (the last 7 days), --month (this month so far).

    Days start at local midnight; with none of the options the report covers yesterday.
    """
    now = (now or dt.datetime.now().astimezone()).replace(microsecond=0)
    midnight = now.replace(hour=0, minute=0, second=0)
    if sum(1 for chosen in (since is not None, week, month) if chosen) > 1:
        raise ReportError("choose one period: --since, --week or --month")
    if week:
        return Period("the last 7 days", now - dt.timedelta(days=7), now)
    if month:
        first = midnight.replace(day=1)
        return Period(f"{first:%B %Y} so far", first, now)
    if since is None or since == "yesterday":
        return Period("yesterday", midnight - dt.timedelta(days=1), midnight)
    if since == "today":
        return Period("today so far", midnight, now)
    match = DURATION.fullmatch(since)
    if not match or int(match.group(1)) == 0:
        raise ReportError(f"--since {since!r} is not a period (expected yesterday, today, or a duration "
                          "such as 30m, 6h, 2d)")
    length = dt.timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])
    return Period(f"the last {human_duration(length.total_seconds())}", now - length, now)
