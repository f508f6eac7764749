"""The `classes` section: QoS classes with priority, guaranteed rate and ceiling.

    classes:
      realtime: { priority: 0, guaranteed: 20%, limit: 100% }
      bulk: { priority: 6, limit: 50%, download: { limit: 30% } }
"""

from __future__ import annotations

from yaml.nodes import Node

from gatewayd.policy.bandwidth import (
    CLASS_DIRECTION_KEYS,
    rate_pair_schema,
    read_class_directions,
)
from gatewayd.policy.fields import format_rate, parse_bandwidth, percent_text
from gatewayd.policy.interfaces import Link
from gatewayd.policy.model import Bandwidth, QosClass
from gatewayd.policy.named import read_named
from gatewayd.policy.schema_parts import (
    BANDWIDTH_PATTERN,
    Schema,
    object_schema,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    text_of,
)

CLASS_KEYS = ("priority", "guaranteed", "limit", *CLASS_DIRECTION_KEYS)
MAX_CLASSES = 31  # the ct mark's 5-bit class field, less "not evaluated"
NO_GUARANTEE = Bandwidth(bits_per_second=0)
WHOLE_LINK = Bandwidth(share=1.0)
SHARE_TOLERANCE = 1e-9  # 33.3% + 33.3% + 33.4% must not fail on float rounding


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


def class_schema() -> Schema:
    bandwidth = 'A share of the link ("20%") or a rate ("5mbit").'
    return object_schema(
        "A QoS class, applied to both directions of the WAN link.",
        {
            "priority": {"type": "integer", "minimum": 0, "maximum": 7, "description": "0 = most urgent .. 7."},
            "guaranteed": string_schema(f"Always available to the class. {bandwidth} Default 0.",
                                        pattern=BANDWIDTH_PATTERN),
            "limit": string_schema(f"The most the class may use. {bandwidth} Default 100%.", pattern=BANDWIDTH_PATTERN),
            "upload": rate_pair_schema("Upload-only guaranteed/limit, overriding the two above."),
            "download": rate_pair_schema("Download-only guaranteed/limit, overriding the two above."),
        },
        ("priority",),
    )
