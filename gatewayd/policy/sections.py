"""The named sections of a policy: schedules, groups and QoS classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from yaml.nodes import Node

from gatewayd.policy.bandwidth import (
    CLASS_DIRECTION_KEYS,
    GROUP_QOS_KEYS,
    read_class_directions,
    read_group_qos,
)
from gatewayd.policy.fields import (
    check_name,
    format_rate,
    parse_bandwidth,
    parse_days,
    parse_hour_range,
    parse_member,
    percent_text,
)
from gatewayd.policy.model import AddressRange, Bandwidth, Group, Interfaces, QosClass, Schedule
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    is_empty,
    is_null,
    mapping_entries,
    parsed_list,
    text_list_of,
    text_of,
)

SCHEDULE_KEYS = ("days", "hours")
GROUP_KEYS = ("description", "members", *GROUP_QOS_KEYS)
CLASS_KEYS = ("priority", "guaranteed", "limit", *CLASS_DIRECTION_KEYS)
MAX_GROUPS = 60  # the ct mark's 6-bit group field, less its reserved values
MAX_CLASSES = 31  # the ct mark's 5-bit class field, less "not evaluated"
NO_GUARANTEE = Bandwidth(bits_per_second=0)
WHOLE_LINK = Bandwidth(share=1.0)
Read = TypeVar("Read")
SHARE_TOLERANCE = 1e-9  # 33.3% + 33.3% + 33.4% must not fail on float rounding


def named_entries(node: Node, checker: Checker, section: str, kind: str) -> list[Entry]:
    """The entries of a name -> definition section whose names are valid."""
    if is_null(node):
        return []
    entries = mapping_entries(node, checker, f"'{section}'") or []
    valid: list[Entry] = []
    for entry in entries:
        if field_at(checker, entry.key, lambda text: check_name(text, f"{kind} name"), entry.name) is not None:
            valid.append(entry)
    return valid


def read_named(node: Node, checker: Checker, section: str, kind: str, read_one: Callable[[Entry], Read | None],
               at_most: int | None = None) -> dict[str, Read]:
    """A name -> definition section read entry by entry; `at_most` is what the connection mark has room for."""
    entries = named_entries(node, checker, section, kind)
    found: dict[str, Read] = {}
    for number, entry in enumerate(entries, start=1):
        if at_most is not None and number == at_most + 1:
            checker.report(entry.key, f"too many {section}: {len(entries)} "
                                      f"(at most {at_most}; the connection mark has room for no more)")
        value = read_one(entry)
        if value is not None:
            found[entry.name] = value
    return found


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


def read_groups(node: Node, checker: Checker) -> dict[str, Group]:
    return read_named(node, checker, "groups", "group", lambda entry: _read_group(entry, checker), MAX_GROUPS)


def _read_group(entry: Entry, checker: Checker) -> Group | None:
    what = f"group '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, GROUP_KEYS, required=("members",), owner=entry.key)
    if known is None:
        return None
    description = ""
    if "description" in known:
        description = text_of(known["description"].value, checker, f"'description' of {what}") or ""
    if "members" not in known:
        return None
    issues_before = len(checker.issues)
    members = text_list_of(known["members"].value, checker, f"'members' of {what}")
    if is_empty(known["members"].value):
        checker.report(
            known["members"].value, f"'members' of {what} is empty (expected addresses, networks, ranges or MACs)"
        )
    networks, ranges, macs = [], [], []
    for item, text in members:
        member = field_at(checker, item, parse_member, text)
        if isinstance(member, AddressRange):
            ranges.append(member)
        elif isinstance(member, str):
            macs.append(member)
        elif member is not None:
            networks.append(member)
    if len(checker.issues) > issues_before:
        return None
    group = Group(
        entry.name, tuple(networks), tuple(ranges), tuple(macs), description, checker.location(entry.key)
    )
    qos = read_group_qos(known, checker, what, group)
    if len(checker.issues) > issues_before:
        return None
    return replace(group, qos=qos)


@dataclass(frozen=True)
class Link:
    """The WAN link's rates, when the interfaces section parsed."""

    upload_bps: int
    download_bps: int

    def directions(self) -> tuple[tuple[str, int], ...]:
        return (("upload", self.upload_bps), ("download", self.download_bps))


def link_of(interfaces: Interfaces | None) -> Link | None:
    return Link(interfaces.upload_bps, interfaces.download_bps) if interfaces else None


def read_classes(node: Node, checker: Checker, link: Link | None) -> dict[str, QosClass]:
    return read_named(node, checker, "classes", "class", lambda entry: _read_class(entry, checker, link), MAX_CLASSES)


def _read_class(entry: Entry, checker: Checker, link: Link | None) -> QosClass | None:
    what = f"class '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, CLASS_KEYS, required=("priority",), owner=entry.key)
    if known is None:
        return None
    priority = None
    if "priority" in known:
        priority = integer_of(known["priority"].value, checker, f"'priority' of {what}", 0, 7)
    guaranteed = _bandwidth(known, "guaranteed", checker, what, NO_GUARANTEE)
    limit = _bandwidth(known, "limit", checker, what, WHOLE_LINK)
    if priority is None or guaranteed is None or limit is None:
        return None
    if "guaranteed" in known:
        _check_guarantee_within_limit(known["guaranteed"].value, what, guaranteed, limit, checker, link)
    overrides = read_class_directions(known, checker, what)
    return QosClass(entry.name, priority, guaranteed, limit, checker.location(entry.key),
                    upload=overrides.get("upload"), download=overrides.get("download"))


def _bandwidth(known: dict[str, Entry], key: str, checker: Checker, what: str, default: Bandwidth) -> Bandwidth | None:
    if key not in known:
        return default
    node = known[key].value
    text = text_of(node, checker, f"'{key}' of {what}")
    return field_at(checker, node, parse_bandwidth, text) if text is not None else None


def describe(bandwidth: Bandwidth) -> str:
    if bandwidth.share is not None:
        return percent_text(bandwidth.share)
    return format_rate(bandwidth.bits_per_second or 0)


def _check_guarantee_within_limit(
    node: Node, what: str, guaranteed: Bandwidth, limit: Bandwidth, checker: Checker, link: Link | None
) -> None:
    same_kind = (guaranteed.share is None) == (limit.share is None)
    if same_kind:
        if _amount(guaranteed) > _amount(limit) + SHARE_TOLERANCE:
            checker.report(
                node, f"guaranteed {describe(guaranteed)} of {what} is more than its limit {describe(limit)}"
            )
        return
    for direction, link_bps in link.directions() if link else ():
        if guaranteed.resolve(link_bps) > limit.resolve(link_bps):
            checker.report(
                node,
                f"guaranteed {describe(guaranteed)} of {what} is more than its limit {describe(limit)} "
                f"({format_rate(limit.resolve(link_bps))}) on the {direction} link ({format_rate(link_bps)})",
            )


def _amount(bandwidth: Bandwidth) -> float:
    return bandwidth.share if bandwidth.share is not None else float(bandwidth.bits_per_second or 0)


def check_guarantees_fit_link(
    classes_key: Node, classes: dict[str, QosClass], checker: Checker, link: Link | None
) -> None:
    """The classes' guarantees must fit in the link, or HTB cannot honour them."""
    guarantees = [qos_class.guaranteed for qos_class in classes.values()]
    if all(bandwidth.share is not None or bandwidth.bits_per_second == 0 for bandwidth in guarantees):
        total = sum(bandwidth.share or 0.0 for bandwidth in guarantees)
        if total > 1 + SHARE_TOLERANCE:
            checker.report(
                classes_key,
                f"guaranteed shares of all classes add up to {percent_text(total)} (more than 100% of the link)",
            )
        return
    for direction, link_bps in link.directions() if link else ():
        total_bps = sum(bandwidth.resolve(link_bps) for bandwidth in guarantees)
        if total_bps > link_bps:
            checker.report(
                classes_key,
                f"guaranteed rates of all classes add up to {format_rate(total_bps)} on the {direction} link, "
                f"more than its {format_rate(link_bps)}",
            )
