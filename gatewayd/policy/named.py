"""Sections that map names to definitions (schedules, groups, classes): read entry by entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from yaml.nodes import Node

from gatewayd.policy.fields import check_name
from gatewayd.policy.yamltree import Checker, Entry, field_at, is_null, mapping_entries

Read = TypeVar("Read")


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
