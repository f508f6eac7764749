"""The `link_pins` section: traffic that goes out over a chosen line, not the weighted balance.

    link_pins:
      - name: erp-on-fibre
        apps: [erp]                    # DNS-learned and catalog addresses: decided on the first packet
        links: [fibre, cheap]          # the first of these that is up; none up -> the balance
      - name: video-on-cheap
        categories: [video]
        links: cheap
      - name: telecom-networks
        destinations: isp/telecom.txt  # a file of networks, one a line, beside the policy
        links: telecom

First matching pin wins. Criteria (groups, apps, categories, destinations) must
all match; a pin needs at least one. A pin applies to a connection's first
packet; the connection then stays on its link.
"""

from __future__ import annotations

import re
from pathlib import Path

from yaml.nodes import MappingNode, Node, SequenceNode

from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.fields import FieldError, parse_network
from gatewayd.policy.model import CATEGORIES, IPNetwork, LinkPin, Location
from gatewayd.policy.rules import Names, listed_names, referenced_names
from gatewayd.policy.schema_parts import (
    Schema,
    names_schema,
    object_schema,
    string_schema,
)
from gatewayd.policy.sourcefile import read_source
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    is_null,
    mapping_entries,
    text_list_of,
    text_of,
)

PIN_KEYS = ("name", "links", "groups", "apps", "categories", "destinations")
CRITERIA = ("groups", "apps", "categories", "destinations")


def read_link_pins(node: Node, checker: Checker, names: Names, links: list[str]) -> list[LinkPin]:
    if is_null(node):
        return []
    items = node.value if isinstance(node, (SequenceNode, MappingNode)) else None  # what holds a list
    if items is None:
        checker.report(node, "'link_pins' must be a list of pins")
        return []
    pins: list[LinkPin] = []
    seen: dict[str, Node] = {}
    for number, item in enumerate(items, start=1):
        pin = _read_pin(item, number, checker, names, links, seen)
        if pin is not None:
            pins.append(pin)
    return pins


def _read_pin(item: Node, number: int, checker: Checker, names: Names, links: list[str],
              seen: dict[str, Node]) -> LinkPin | None:
    entries = mapping_entries(item, checker, f"link pin #{number}")
    if entries is None:
        return None
    issues_before = len(checker.issues)
    known = check_keys(entries, checker, f"link pin #{number}", PIN_KEYS, ("name", "links"), mapping=item)
    name = text_of(known["name"].value, checker, f"'name' of link pin #{number}") if "name" in known else None
    if name is not None and name in seen:
        checker.report(known["name"].value,
                       f"link pin name '{name}' is already used by the pin at line {seen[name].start_mark.line + 1}")
    elif name is not None:
        seen[name] = known["name"].value
    what = f"link pin '{name}'" if name else f"link pin #{number}"
    pinned = referenced_names(known, "links", checker, what, links, "link", "links")
    if "links" in known and not pinned and len(checker.issues) == issues_before:
        checker.report(known["links"].value, f"{what} names no link (expected a link name, or an ordered list)")
    groups = referenced_names(known, "groups", checker, what, names.groups, "group", "groups")
    apps = listed_names(known, "apps", checker, what, names.applications,
                        lambda app: f"application '{app}' is not defined "
                                    "(neither in the built-in catalog nor under 'applications')")
    categories = listed_names(known, "categories", checker, what, CATEGORIES,
                              lambda c: f"category '{c}' is not known (expected one of: {', '.join(CATEGORIES)})")
    destinations = _destinations(known, checker, what)
    if not any(key in known for key in CRITERIA):
        checker.report(item, f"{what} matches everything (give groups, apps, categories or destinations; "
                             "to prefer a line for all traffic, use the links' weights)")
    if name is None or len(checker.issues) > issues_before:
        return None
    return LinkPin(name, tuple(dict.fromkeys(pinned)), tuple(groups), tuple(apps), tuple(categories),
                   tuple(destinations), checker.location(item))


def _destinations(known: dict[str, Entry], checker: Checker, what: str) -> list[IPNetwork]:
    """Networks written inline, or files of networks (relative to the policy file) the admin keeps."""
    if "destinations" not in known:
        return []
    networks: list[IPNetwork] = []
    for item, text in text_list_of(known["destinations"].value, checker, f"'destinations' of {what}"):
        try:
            networks.append(parse_network(text))
            continue
        except FieldError:
            pass
        if "/" in text and not re.search(r"[A-Za-z_]", text):
            checker.report(item, f"'{text}' is neither a network nor a file of networks")
            continue
        networks.extend(read_network_file(_beside(checker.source, text), checker, item))
    return networks


def _beside(policy_source: str, file_text: str) -> Path:
    path = Path(file_text)
    return path if path.is_absolute() else Path(policy_source).resolve().parent / path


def read_network_file(path: Path, checker: Checker, reference: Node) -> list[IPNetwork]:
    """One network (CIDR) or address per line, '#' starts a comment, as ISPs publish their lists.

    Problems are reported in the file's own FILE:LINE:COL; a missing file at the policy's reference.
    """
    file_checker = Checker(str(path))
    text = read_source(path, file_checker, "network list")
    networks: list[IPNetwork] = []
    if text is None:
        for issue in file_checker.issues:
            checker.report(reference, f"{issue.message} ({path})")
        return []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = [(m.group(0), m.start() + 1) for m in re.finditer(r"\S+", raw.split("#", 1)[0])]
        if not words:
            continue
        if len(words) != 1:
            file_checker.report_at(number, words[1][1], "expected one network per line")
            continue
        try:
            networks.append(parse_network(words[0][0]))
        except FieldError as error:
            file_checker.issues.append(PolicyIssue(Location(str(path), number, words[0][1]), str(error)))
    checker.issues.extend(file_checker.issues)
    return networks


def link_pin_schema() -> Schema:
    return {
        "type": "array",
        "description": "Traffic pinned to a line; first match wins; the rest is balanced by the links' weights.",
        "items": object_schema("One pin: criteria (all must match) and the ordered links.", {
            "name": string_schema("Unique name."),
            "links": names_schema("A link, or links in order of preference (the first up one is used)."),
            "groups": names_schema("Source groups."),
            "apps": names_schema("Apps (DNS-learned or catalog addresses: known on the first packet)."),
            "categories": names_schema("App categories."),
            "destinations": {"description": "Networks, or files of networks beside the policy (one a line).",
                             "anyOf": [string_schema(""), {"type": "array", "items": string_schema("")}]},
        }, ("name", "links")),
    }
