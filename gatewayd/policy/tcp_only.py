"""`classifier: { tcp_only: [...] }`: apps or categories whose QUIC (UDP) is blocked.

Browsers fall back to TLS over TCP when QUIC fails, and over TCP the SNI is
visible and the flow is decided on its first payload; blocking an app's QUIC
therefore keeps it classifiable (and shapeable) without blocking the app.
"""

from __future__ import annotations

from yaml.nodes import Node

from gatewayd.policy.model import CATEGORIES, Application
from gatewayd.policy.yamltree import Checker, is_null, text_list_of


def read_tcp_only(node: Node | None, checker: Checker, applications: dict[str, Application]) -> tuple[str, ...]:
    """App ids and category names, each checked against the catalog with FILE:LINE:COL on error."""
    if node is None or is_null(node):
        return ()
    names: list[str] = []
    for item, text in text_list_of(node, checker, "'tcp_only' of 'classifier'"):
        if text in applications or text in CATEGORIES:
            if text not in names:
                names.append(text)
            continue
        checker.report(item, f"'{text}' in tcp_only is neither an application nor a category"
                       + checker.suggest(text, list(applications) + list(CATEGORIES)))
    return tuple(names)


def tcp_only_apps(names: tuple[str, ...], applications: dict[str, Application]) -> frozenset[str]:
    """The app ids the names stand for, categories expanded."""
    return frozenset(app.id for app in applications.values() if app.id in names or app.category in names)
