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


def with_descendants(app_ids: Iterable[str], applications: Mapping[str, HasParent]) -> frozenset[str]:
    """The apps named and every app below them."""
    named = set(app_ids)
    return frozenset(named | {app_id for app_id in applications
                              if any(parent in named for parent in ancestors(app_id, applications))})


def is_within(app_id: str, named: Iterable[str], applications: Mapping[str, HasParent]) -> bool:
    """Whether the app is one of `named` or below one of them."""
    wanted = set(named)
    return app_id in wanted or any(parent in wanted for parent in ancestors(app_id, applications))
