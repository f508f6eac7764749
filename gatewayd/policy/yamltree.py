"""Reading YAML as a tree of marked nodes, so every complaint can name its line.

PyYAML's constructed objects forget where they came from and silently keep the
last of two duplicate keys; composing to nodes keeps the marks and lets us
see the duplicates. Values are read from the node's source text, not from
YAML 1.1's implicit typing, so `no` stays a name and 10:20:30:40:50:59 stays a
MAC instead of turning into a boolean or a base-60 integer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.fields import FieldError, suggestion
from gatewayd.policy.limits import MAX_NUMBER_DIGITS, MAX_SUGGESTIONS, limit_message
from gatewayd.policy.model import Location
from gatewayd.policy.yamlcompose import NodeLimitError, compose_counted

NULL_TAG = "tag:yaml.org,2002:null"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"
DECIMAL_INTEGER = re.compile(r"[-+]?[0-9]+")
PRECISE_REPARSE_MAX_CHARS = 1024 * 1024  # the pure-Python parser reads about 1 MB a second
MAX_SUGGESTED_WORD = 64  # names are at most 63 characters; a longer word is no typo of one


class Checker:
    """Collects the issues of one file; nothing stops at the first problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[PolicyIssue] = []
        self.suggestions_left = MAX_SUGGESTIONS

    def suggest(self, word: str, candidates: Iterable[str]) -> str:
        """fields.suggestion, until this file has had MAX_SUGGESTIONS of them (each compares with
        every candidate, so 100,000 misspellings must not each pay for it)."""
        if self.suggestions_left <= 0 or len(word) > MAX_SUGGESTED_WORD:
            return ""
        self.suggestions_left -= 1
        return suggestion(word, candidates)

    def location(self, node: Node) -> Location:
        return Location(self.source, node.start_mark.line + 1, node.start_mark.column + 1)

    def report(self, node: Node, message: str) -> None:
        self.issues.append(PolicyIssue(self.location(node), message))

    def report_at(self, line: int, column: int, message: str) -> None:
        self.issues.append(PolicyIssue(Location(self.source, line, column), message))


@dataclass(frozen=True)
class Entry:
    """One key of a mapping with its value; `key` is what errors point at."""

    name: str
    key: Node
    value: Node


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1) + 1


def compose(text: str, checker: Checker) -> Node | None:
    """The document's root node, or None (with an issue) when it is not YAML or composes past the node limit."""
    try:
        # libyaml parses a 100,000-domain blocklist several times faster. On a syntax error the
        # pure-Python parser runs again below, for its more precise messages, unless the file is
        # so big that it would take longer than the whole check may.
        return compose_counted(text, fast=True)
    except NodeLimitError as error:
        checker.report_at(error.line, error.column, error.message)
        return None
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        if len(text) > PRECISE_REPARSE_MAX_CHARS:
            _report_yaml_error(error, text, checker)
            return None
    try:
        return compose_counted(text, fast=False)
    except NodeLimitError as error:
        checker.report_at(error.line, error.column, error.message)
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        _report_yaml_error(error, text, checker)
    return None


def _report_yaml_error(error: Exception, text: str, checker: Checker) -> None:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        # PyYAML splits "expected X, but found Y" into context and problem.
        problem = ", ".join(part for part in (error.context, error.problem) if part) or "cannot parse"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        checker.report_at(line, column, f"invalid YAML: {problem}")
    elif isinstance(error, yaml.reader.ReaderError):
        line, column = line_and_column(text, error.position)
        code = error.character if isinstance(error.character, int) else ord(error.character)
        checker.report_at(line, column, f"invalid YAML: unacceptable character U+{code:04X}")
    elif isinstance(error, RecursionError):
        checker.report_at(1, 1, "invalid YAML: nested too deeply")
    else:
        checker.report_at(1, 1, f"invalid YAML: {error}")


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


def kind_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "nothing"
    return f"'{node.value}'"


def mapping_entries(node: Node, checker: Checker, what: str) -> list[Entry] | None:
    """The entries of a mapping in file order; None (reported) if `node` is not one."""
    if not isinstance(node, MappingNode):
        checker.report(node, f"{what} must be a mapping (got {kind_name(node)})")
        return None
    entries: list[Entry] = []
    seen: dict[str, Node] = {}
    merged: list[Entry] = []
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.tag == MERGE_TAG:
            merged.extend(_merge_sources(value, checker, what))
            continue
        if not isinstance(key, ScalarNode) or is_null(key) or key.value == "":
            checker.report(key, f"keys in {what} must be plain names (got {kind_name(key)})")
            continue
        if key.value in seen:
            first = seen[key.value].start_mark
            checker.report(key, f"duplicate key '{key.value}' in {what} (first at line {first.line + 1})")
            continue
        seen[key.value] = key
        entries.append(Entry(key.value, key, value))
    # Explicit keys override merged ones, as YAML's merge key defines.
    for entry in merged:
        if entry.name not in seen:
            seen[entry.name] = entry.key
            entries.append(entry)
    return entries


def _merge_sources(value: Node, checker: Checker, what: str) -> list[Entry]:
    sources = value.value if isinstance(value, SequenceNode) else [value]
    entries: list[Entry] = []
    for source in sources:
        if not isinstance(source, MappingNode):
            checker.report(source, f"'<<' in {what} must name a mapping (got {kind_name(source)})")
            continue
        for key, item in source.value:
            if isinstance(key, ScalarNode) and not is_null(key) and key.tag != MERGE_TAG:
                entries.append(Entry(key.value, key, item))
    return entries


def is_foreign_document(root: Node, checker: Checker, what: str, sections: tuple[str, ...]) -> bool:
    """True (reported) when `root` is plainly no `what`: a lone value, or a mapping without one of `sections`.

    Such a file may be anything a path can name (/etc/shadow, a key file), so it is
    refused in one message that quotes none of its content.
    """
    if isinstance(root, ScalarNode) and not is_null(root):
        checker.report(root, f"{what} must be a mapping (got a single value; is this {what} file?)")
        return True
    if isinstance(root, MappingNode) and root.value:
        names = {key.value for key, _ in root.value if isinstance(key, ScalarNode)}
        if not names & set(sections):
            checker.report(root, f"this is not {what} file: none of its top-level keys is one of "
                                 f"{', '.join(sections)}")
            return True
    return False


def within_total(section: Node, key: str, checker: Checker, what: str, at_most: int) -> bool:
    """False (reported at `section`) when the `key` lists of all of a section's entries hold more
    than `at_most` entries together, counted before any is parsed (aliases count each time)."""
    total = 0
    if isinstance(section, MappingNode):
        for _, body in section.value:
            for name, value in body.value if isinstance(body, MappingNode) else ():
                if isinstance(name, ScalarNode) and name.value == key and isinstance(value, SequenceNode):
                    total += len(value.value)
    if total > at_most:
        checker.report(section, limit_message("the policy", total, what, at_most))
        return False
    return True


def checked_mapping(
    node: Node,
    checker: Checker,
    what: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
    owner: Node | None = None,
    mapping: Node | None = None,
) -> dict[str, Entry] | None:
    """A mapping's known entries by name, unknown and missing keys reported; None when it is no mapping."""
    entries = mapping_entries(node, checker, what)
    if entries is None:
        return None
    return check_keys(entries, checker, what, allowed, required, owner, mapping)


def check_keys(
    entries: list[Entry],
    checker: Checker,
    what: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
    owner: Node | None = None,
    mapping: Node | None = None,
) -> dict[str, Entry]:
    """Reports unknown and missing keys; returns the known entries by name."""
    known: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in allowed:
            known[entry.name] = entry
        else:
            checker.report(
                entry.key,
                f"unknown key '{entry.name}' in {what} (expected one of: {', '.join(allowed)})"
                + checker.suggest(entry.name, allowed),
            )
    for name in required:
        if name not in known:
            anchor = owner if owner is not None else mapping
            if anchor is not None:
                checker.report(anchor, f"missing key '{name}' in {what}")
    return known


def text_of(node: Node, checker: Checker, what: str) -> str | None:
    """A scalar's source text; None (reported) for lists, mappings and empty values."""
    if isinstance(node, ScalarNode) and not is_null(node):
        return str(node.value)  # already a str: a ScalarNode holds its source text
    checker.report(node, f"{what} must be a single value (got {kind_name(node)})")
    return None


def integer_of(node: Node, checker: Checker, what: str, low: int, high: int) -> int | None:
    if not (isinstance(node, ScalarNode) and node.tag == INT_TAG and DECIMAL_INTEGER.fullmatch(node.value)):
        checker.report(node, f"{what} must be a whole number (got {kind_name(node)})")
        return None
    digits = node.value.lstrip("+-").lstrip("0")
    if len(digits) > MAX_NUMBER_DIGITS:  # int() of 4,300+ digits raises; no range of ours is that wide
        checker.report(node, f"{what} has {len(digits):,} digits, out of range (expected {low} to {high})")
        return None
    number = int(node.value)
    if not low <= number <= high:
        checker.report(node, f"{what} is {number}, out of range (expected {low} to {high})")
        return None
    return number


def is_empty(node: Node) -> bool:
    """Nothing written, or an empty list: a list the admin meant to fill."""
    return is_null(node) or (isinstance(node, SequenceNode) and not node.value)


def text_list_of(node: Node, checker: Checker, what: str, at_most: int | None = None) -> list[tuple[Node, str]]:
    """A list of scalars; a lone scalar counts as a list of one, as admins often write it.

    A list longer than `at_most` is reported (naming the limit) and read as empty.
    """
    return list(_texts_of(_list_items(node, checker, what, at_most), checker, what))


def _list_items(node: Node, checker: Checker, what: str, at_most: int | None) -> Sequence[Node]:
    """The items of a list (text_list_of's rules), or [] after reporting why there are none to read."""
    if is_null(node):
        return []
    if isinstance(node, MappingNode):
        checker.report(node, f"{what} must be a list (got a mapping)")
        return []
    items: Sequence[Node] = node.value if isinstance(node, SequenceNode) else [node]
    if at_most is not None and len(items) > at_most:
        checker.report(node, limit_message(what, len(items), "entries", at_most))
        return []
    return items


def _texts_of(items: Iterable[Node], checker: Checker, what: str) -> Iterator[tuple[Node, str]]:
    """Each scalar item with its text, the others reported; one at a time, so a 100,000-entry list
    read through `parsed_list` never holds 100,000 pairs as well as its nodes and parsed values."""
    for item in items:
        text = text_of(item, checker, f"each entry of {what}")
        if text is not None:
            yield item, text


Parsed = TypeVar("Parsed")


def field_at(checker: Checker, node: Node, parse: Callable[[str], Parsed], text: str) -> Parsed | None:
    """Runs a fields.py parser, turning its FieldError into an issue at `node`."""
    try:
        return parse(text)
    except FieldError as error:
        checker.report(node, str(error))
    except (ValueError, OverflowError) as error:  # a parser's range check missed; still name the position
        checker.report(node, f"value cannot be read ({type(error).__name__}: {error})")
    return None


def parsed_list(
    known: dict[str, Entry], key: str, checker: Checker, what: str, parse: Callable[[str], Parsed],
    at_most: int | None = None,
) -> list[Parsed]:
    """The list under `key` of a checked mapping, each item run through a fields.py parser ([] without `key`)."""
    if key not in known:
        return []
    parsed: list[Parsed] = []
    described = f"'{key}' of {what}"
    for item, text in _texts_of(_list_items(known[key].value, checker, described, at_most), checker, described):
        value = field_at(checker, item, parse, text)
        if value is not None:
            parsed.append(value)
    return parsed
