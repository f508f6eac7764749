"""DomainMatcher: domain patterns -> app id, most specific pattern first.

Pattern forms (see policy.model.Application):
  "example.com"    the name itself and every subdomain
  "*.example.com"  subdomains only
  "=example.com"   the exact name only

Two flat dicts keyed by the suffix string do the work of a reversed-label
trie: `exact` answers "this whole name", `below` answers "a strict subdomain
of this suffix". Lookup walks the name's suffixes from longest to shortest,
so it costs one dict probe per label and the first hit is the most specific.

A policy may list 100,000 domains, and a reload holds the old matcher and the
new one at once, so an entry stays small: one DomainMatch shared by both
dicts, the written pattern reused as the key when it is already normal, and
the few "=name" entries that must beat a plain "name" kept in a set instead of
a (priority, match) tuple on every exact entry (217 -> 90 bytes a domain besides the
name the policy holds anyway, measured in tests/unit/test_classify_parsers.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DomainMatch:
    app: str
    pattern: str  # the pattern as written, for explanations


def normalise_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


class DomainMatcher:
    def __init__(self, patterns: Iterable[tuple[str, str]] = ()) -> None:
        self._exact: dict[str, DomainMatch] = {}
        self._exact_only: set[str] = set()  # names whose exact entry is an "=name" pattern: it beats "name"
        self._below: dict[str, DomainMatch] = {}
        for pattern, app in patterns:
            self.add(pattern, app)

    def add(self, pattern: str, app: str) -> None:
        """Register a pattern; on a tie between apps the first registered keeps it (stable across reloads)."""
        written = pattern
        pattern = normalise_name(pattern)
        if pattern == written:
            pattern = written  # one string for the key and the explanation, not two equal ones
        match = DomainMatch(app, written)
        if pattern.startswith("="):
            name = pattern[1:]
            if name and name not in self._exact_only:
                self._exact[name] = match  # beats a plain "name" registered before it
                self._exact_only.add(name)
        elif pattern.startswith("*."):
            name = pattern[2:]
            if name:
                self._below.setdefault(name, match)
        elif pattern:
            self._exact.setdefault(pattern, match)
            self._below.setdefault(pattern, match)

    def held(self, pattern: str) -> str | None:
        """The string of the registered pattern equal to `pattern` (a normal one), or None: a reload
        reuses it instead of holding a second copy of every domain (policy.applications.HeldDomains)."""
        if pattern.startswith("="):
            match = self._exact.get(pattern[1:])
        elif pattern.startswith("*."):
            match = self._below.get(pattern[2:])
        else:
            match = self._exact.get(pattern)
        return match.pattern if match is not None and match.pattern == pattern else None

    def __len__(self) -> int:
        return len(self._exact) + len(self._below)

    def lookup(self, name: str) -> DomainMatch | None:
        """The most specific pattern matching `name` (any case, trailing dot ignored), or None."""
        if not name:
            return None
        if name[-1] == "." or not name.islower():
            name = normalise_name(name)  # the common case (already normalised) skips the copy
        exact = self._exact.get(name)
        if exact is not None:
            return exact
        below = self._below
        dot = name.find(".")
        while dot >= 0:
            match = below.get(name[dot + 1:])
            if match is not None:
                return match
            dot = name.find(".", dot + 1)
        return None

    def lookup_any(self, names: Iterable[str]) -> tuple[str, DomainMatch] | None:
        """The first name (in the given order) that matches, with its match."""
        for name in names:
            match = self.lookup(name)
            if match is not None:
                return name, match
        return None
