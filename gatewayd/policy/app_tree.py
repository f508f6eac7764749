"""The app hierarchy: a sub-app names its parent (instagram -> facebook, googleservices -> google).

A rule or `explain` on a parent matches its children; the classifier, metrics and
`classify` always report the most specific id. Parents are checked when the
applications are read (policy/applications.py), so the chains here are finite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class HasParent(Protocol):
    @property
    def parent(self) -> str | None: ...


def ancestors(app_id: str, applications: Mapping[str, HasParent]) -> tuple[str, ...]:
    """Parent, grandparent, ... of an app, nearest first (empty for a top-level or unknown app)."""
    chain: list[str] = []
    entry = applications.get(app_id)
    while entry is not None and entry.parent is not None and entry.parent not in chain and entry.parent != app_id:
        chain.append(entry.parent)
        entry = applications.get(entry.parent)
    return tuple(chain)


def children_index(applications: Mapping[str, HasParent]) -> dict[str, tuple[str, ...]]:
    """Parent id -> the ids of its direct children (built once per policy: see Policy.apps_of_rule)."""
    children: dict[str, list[str]] = {}
    for app_id, entry in applications.items():
        if entry.parent is not None and entry.parent != app_id:
            children.setdefault(entry.parent, []).append(app_id)
    return {parent: tuple(ids) for parent, ids in children.items()}


def with_descendants(app_ids: Iterable[str], applications: Mapping[str, HasParent],
                     children: Mapping[str, tuple[str, ...]] | None = None) -> frozenset[str]:
    """The apps named and every app below them.

    Walks down from the named apps through `children` (children_index), so its cost is
    the size of the answer, not of the catalog: a policy with 10,000 rules calls it per rule.
    """
    below = children if children is not None else children_index(applications)
    found = set(app_ids)
    stack = list(found)
    while stack:
        for child in below.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return frozenset(found)


def is_within(app_id: str, named: Iterable[str], applications: Mapping[str, HasParent]) -> bool:
    """Whether the app is one of `named` or below one of them."""
    wanted = set(named)
    return app_id in wanted or any(parent in wanted for parent in ancestors(app_id, applications))
