"""One ReportData as titled sections (a table and, where it helps, a bar chart): what the text and
HTML renderings both show, so the two always say the same."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.report.usage import ReportData, change_text, human_bytes, share_text


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as a person reads it
    before: float | None = None  # the same figure in the period before, drawn beside it


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    headers: list[str]
    rows: list[list[str]]
    bars: list[Bar] = field(default_factory=list)  # empty: no chart
    empty: str = "nothing in this period"


def headline(data: ReportData) -> list[str]:
    return [
        (f"Traffic {human_bytes(data.total_bytes)} ({change_text(data.total_bytes, data.previous_total_bytes)} "
        f"on the {data.previous.label_length} before: {human_bytes(data.previous_total_bytes)})"),
        (f"Blocked {data.blocked_packets:.0f} packets of blocked flows "
        f"({change_text(data.blocked_packets, data.previous_blocked_packets)} on the period before: "
        f"{data.previous_blocked_packets:.0f})"),
    ]


def sections(data: ReportData) -> list[Section]:
    result = [departments(data)]
    result.extend(department_apps(data))
    result.extend([talkers(data), blocked(data)])
    if data.blocked_by_rule:
        result.append(blocking_rules(data))
    result.append(classes(data))
    return result


def departments(data: ReportData) -> Section:
    rows = [[d.name, human_bytes(d.bytes), share_text(d.bytes, data.total_bytes), human_bytes(d.previous_bytes),
             change_text(d.bytes, d.previous_bytes), f"{d.blocked_packets:.0f}",
             ", ".join(f"{app} {human_bytes(sent)}" for app, sent in d.top_apps[:3])]
            for d in data.departments]
    return Section("Traffic by department", f"{data.period.label} compared with the {data.previous.label_length} "
                   "before (bars: this period, light bars: the period before)",
                   ["department", "traffic", "share", "before", "change", "blocked", "top apps"], rows,
                   [Bar(d.name, d.bytes, human_bytes(d.bytes), d.previous_bytes) for d in data.departments])


def department_apps(data: ReportData) -> list[Section]:
    return [Section(f"Top apps: {d.name}", f"{human_bytes(d.bytes)} in all", ["app", "traffic", "share"],
                    [[app, human_bytes(sent), share_text(sent, d.bytes)] for app, sent in d.top_apps],
                    [Bar(app, sent, human_bytes(sent)) for app, sent in d.top_apps], empty="no traffic")
            for d in data.departments]


def talkers(data: ReportData) -> Section:
    return Section("Top talkers", "the hosts that moved the most bytes (gatewayd names its busiest hosts only)",
                   ["host", "department", "total", "upload", "download"],
                   [[t.host, t.group, human_bytes(t.total), human_bytes(t.upload), human_bytes(t.download)]
                    for t in data.talkers],
                   [Bar(f"{t.host} ({t.group})", t.total, human_bytes(t.total)) for t in data.talkers])


def blocked(data: ReportData) -> Section:
    return Section("Blocked attempts", "packets of flows the policy blocked, by department and app",
                   ["department", "app", "packets"],
                   [[group, app, f"{packets:.0f}"] for group, app, packets in data.blocked_by_app],
                   [Bar(f"{group}: {app}", packets, f"{packets:.0f}") for group, app, packets in data.blocked_by_app],
                   empty="nothing was blocked")


def blocking_rules(data: ReportData) -> Section:
    return Section("Rules that blocked", "packets each blocking rule of the policy stopped", ["rule", "packets"],
                   [[rule, f"{packets:.0f}"] for rule, packets in data.blocked_by_rule],
                   [Bar(rule, packets, f"{packets:.0f}") for rule, packets in data.blocked_by_rule])


def classes(data: ReportData) -> Section:
    used = [c for c in data.classes if c.bytes > 0 or c.drops > 0]
    return Section("QoS classes", "bytes each class sent per link direction, and the packets it dropped",
                   ["interface", "direction", "class", "traffic", "dropped packets"],
                   [[c.interface, c.direction, c.qos_class, human_bytes(c.bytes), f"{c.drops:.0f}"] for c in used],
                   [Bar(f"{c.direction}: {c.qos_class}", c.bytes, human_bytes(c.bytes)) for c in used],
                   empty="no shaped traffic")
