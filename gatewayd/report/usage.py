"""What a report says, computed from Prometheus' stored counters over a period.

Counter increases are computed here from the raw samples instead of PromQL's
increase(): a series gatewayd creates during the period (a department's first
video flow) starts at the bytes of its first packets already, and increase()
would count that series as zero. Here such a series counts from zero, a reset
(daemon restart) counts from zero again, and nothing is extrapolated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayd.report.periods import Period
from gatewayd.report.prometheus_api import (
    MAX_POINTS,
    PrometheusClient,
    ReportError,
    Series,
)

MIN_STEP_SECONDS = 1.0
TOP_APPS = 5  # per department
TOP_TALKERS = 10


def counter_increase(series: Series, start: float) -> float:
    """How much a counter grew from `start` on; a series first seen after `start` counts from zero."""
    if not series.points:
        return 0.0
    first_time, first_value = series.points[0]
    grown = first_value if first_time > start + 1e-6 else 0.0
    previous = first_value
    for _, value in series.points[1:]:
        grown += value - previous if value >= previous else value  # a reset starts from zero again
        previous = value
    return grown


def step_for(period: Period) -> float:
    return max(MIN_STEP_SECONDS, period.seconds / MAX_POINTS)


Key = tuple[str, ...]


def increases(client: PrometheusClient, query: str, period: Period, by: tuple[str, ...],
              keep: Callable[[dict[str, str]], bool] = lambda labels: True) -> dict[Key, float]:
    """Counter increases over `period`, summed by the labels `by` (all gatewayd instances together)."""
    start, end = period.start.timestamp(), period.end.timestamp()
    totals: dict[Key, float] = defaultdict(float)
    for series in client.query_range(query, start, end, step_for(period)):
        if keep(series.labels):
            totals[tuple(series.labels.get(label, "") for label in by)] += counter_increase(series, start)
    return dict(totals)


@dataclass(frozen=True)
class Department:
    name: str
    bytes: float
    previous_bytes: float
    top_apps: list[tuple[str, float]]  # (app, bytes), most first
    blocked_packets: float


@dataclass(frozen=True)
class Talker:
    host: str
    group: str
    upload: float
    download: float

    @property
    def total(self) -> float:
        return self.upload + self.download


@dataclass(frozen=True)
class ClassUsage:
    interface: str
    direction: str
    qos_class: str
    bytes: float
    drops: float


@dataclass(frozen=True)
class ReportData:
    period: Period
    previous: Period
    departments: list[Department]
    talkers: list[Talker]
    blocked_by_app: list[tuple[str, str, float]]  # (group, app, packets)
    blocked_by_rule: list[tuple[str, float]]  # (rule, packets)
    classes: list[ClassUsage]
    total_bytes: float = 0.0
    previous_total_bytes: float = 0.0
    blocked_packets: float = 0.0
    previous_blocked_packets: float = 0.0
    groups_seen: list[str] = field(default_factory=list)


def gather(client: PrometheusClient, period: Period, group: str | None = None) -> ReportData:
    previous = period.before()
    by_app = increases(client, 'gatewayd_traffic_bytes_total{action="allow"}', period, ("group", "app"))
    before_by_app = increases(client, 'gatewayd_traffic_bytes_total{action="allow"}', previous, ("group", "app"))
    blocked = increases(client, 'gatewayd_traffic_packets_total{action="block"}', period, ("group", "app"))
    before_blocked = increases(client, 'gatewayd_traffic_packets_total{action="block"}', previous, ("group", "app"))
    groups_seen = sorted({g for g, _ in by_app} | {g for g, _ in blocked})
    if not groups_seen:
        raise ReportError(f"Prometheus at {client.url} has no gatewayd traffic for {period.label} "
                          f"({period.describe()}): is it scraping gatewayd, and does its retention reach back?")
    if group is not None and group not in groups_seen:
        raise ReportError(f"no traffic of a group '{group}' in {period.label} "
                          f"(groups with traffic: {', '.join(groups_seen)})")

    def wanted(labels: dict[str, str]) -> bool:
        return group is None or labels.get("group") == group

    departments = [department(name, by_app, before_by_app, blocked)
                   for name in groups_seen if group is None or name == group]
    departments.sort(key=lambda d: -d.bytes)
    talkers = top_talkers(increases(client, "gatewayd_top_talker_bytes", period, ("host", "group", "direction"),
                                    wanted))
    rule_blocks = blocking_rules(client, period)
    class_labels = ("interface", "direction", "class")
    class_bytes = increases(client, 'gatewayd_class_bytes_total{class!="total"}', period, class_labels)
    class_drops = increases(client, 'gatewayd_class_drops_total{class!="total"}', period, class_labels)
    classes = [ClassUsage(interface, direction, name, sent, class_drops.get((interface, direction, name), 0.0))
               for (interface, direction, name), sent in sorted(class_bytes.items())]
    return ReportData(
        period=period, previous=previous, departments=departments, talkers=talkers,
        blocked_by_app=sorted(((g, a, n) for (g, a), n in blocked.items() if n > 0 and (group is None or g == group)),
                              key=lambda item: -item[2]),
        blocked_by_rule=rule_blocks if group is None else [],  # a rule's hits are not split by group
        classes=classes,
        total_bytes=sum(d.bytes for d in departments),
        previous_total_bytes=sum(d.previous_bytes for d in departments),
        blocked_packets=sum(n for (g, _), n in blocked.items() if group is None or g == group),
        previous_blocked_packets=sum(n for (g, _), n in before_blocked.items() if group is None or g == group),
        groups_seen=groups_seen,
    )


def department(name: str, by_app: dict[Key, float], before_by_app: dict[Key, float],
               blocked: dict[Key, float]) -> Department:
    apps = sorted(((app, sent) for (group, app), sent in by_app.items() if group == name and sent > 0),
                  key=lambda item: -item[1])
    return Department(name, sum(sent for _, sent in apps),
                      sum(sent for (group, _), sent in before_by_app.items() if group == name),
                      apps[:TOP_APPS], sum(n for (group, _), n in blocked.items() if group == name))


def top_talkers(by_direction: dict[Key, float]) -> list[Talker]:
    hosts: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"upload": 0.0, "download": 0.0})
    for (host, group, direction), sent in by_direction.items():
        hosts[(host, group)][direction] = hosts[(host, group)].get(direction, 0.0) + sent
    talkers = [Talker(host, group, sent["upload"], sent["download"]) for (host, group), sent in hosts.items()]
    return sorted((t for t in talkers if t.total > 0), key=lambda t: (-t.total, t.host))[:TOP_TALKERS]


def blocking_rules(client: PrometheusClient, period: Period) -> list[tuple[str, float]]:
    """Hits of the rules whose action is block (gatewayd_rule_info), most first."""
    start, end = period.start.timestamp(), period.end.timestamp()
    blocking = {s.labels.get("rule", "") for s in client.query_range(
        'gatewayd_rule_info{action="block"}', start, end, step_for(period))}
    hits = increases(client, "gatewayd_rule_hits_total", period, ("rule",),
                     lambda labels: labels.get("rule") in blocking)
    return sorted(((rule, n) for (rule,), n in hits.items() if n > 0), key=lambda item: -item[1])


def change_text(now: float, before: float) -> str:
    """"+12%", "-3%", "new" (nothing before), "same"."""
    if before <= 0:
        return "new" if now > 0 else "same"
    change = (now - before) / before * 100
    return "same" if abs(change) < 0.5 else f"{change:+.0f}%"


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def share_text(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole > 0 else "-"
