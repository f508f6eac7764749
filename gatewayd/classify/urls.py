"""URL rules for plain HTTP: "HOST/PATH-PREFIX" patterns and path keywords -> app.

Checked before the Host's own app, so an admin can carve e.g. a download
path out of a site the catalog files elsewhere. Rules are few (written by
hand), so a linear scan in catalog order is both simplest and fast enough;
the first rule that matches wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from gatewayd.classify.domains import DomainMatcher
from gatewayd.policy.model import Application


class UrlRules:
    def __init__(self) -> None:
        # (host matcher or None for any host, path prefix, app id, the rule as written)
        self._prefixes: list[tuple[DomainMatcher | None, str, str, str]] = []
        self._keywords: list[tuple[str, str]] = []  # (lowercased keyword, app id)

    @staticmethod
    def build(apps: Iterable[Application]) -> UrlRules:
        rules = UrlRules()
        for app in apps:
            for rule in app.urls:
                host, _, path = rule.partition("/")
                matcher = None if host == "*" else DomainMatcher([(host, app.id)])
                rules._prefixes.append((matcher, "/" + path, app.id, rule))
            for keyword in app.url_keywords:
                rules._keywords.append((keyword.lower(), app.id))
        return rules

    def __bool__(self) -> bool:
        return bool(self._prefixes or self._keywords)

    def lookup(self, host: str | None, path: str) -> tuple[str, str] | None:
        """(app, rule or keyword) for a request, or None. `path` is the request target."""
        if "://" in path:  # absolute-form target (via a proxy): keep only the path part
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        for matcher, prefix, app, rule in self._prefixes:
            if path.startswith(prefix) and (matcher is None or (host is not None and matcher.lookup(host))):
                return app, rule
        if self._keywords:
            lowered = path.lower()
            for keyword, app in self._keywords:
                if keyword in lowered:
                    return app, keyword
        return None
