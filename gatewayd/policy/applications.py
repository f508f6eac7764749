"""Applications: the built-in catalog file and the policy's own, read by the same code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from yaml.nodes import Node

from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.fields import (
    NAME_PATTERN,
    PORT_PATTERN,
    SIGNATURE_PATTERN,
    check_name,
    check_signature,
    check_url_keyword,
    parse_app_address,
    parse_domain,
    parse_port_match,
    parse_url_rule,
)
from gatewayd.policy.limits import (
    MAX_ADDRESS_PORT_PAIRS_PER_APP,
    MAX_ADDRESSES_PER_APP,
    MAX_DOMAINS_PER_APP,
    MAX_PORTS_PER_APP,
    limit_message,
)
from gatewayd.policy.model import CATEGORIES, Application, IPNetwork, NetworkOnPorts
from gatewayd.policy.schema_parts import (
    Schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.sourcefile import read_source
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    checked_mapping,
    compose,
    field_at,
    is_foreign_document,
    is_null,
    mapping_entries,
    parsed_list,
    text_of,
)

APPLICATION_KEYS = ("name", "category", "parent", "domains", "addresses", "ports", "signatures", "urls",
                    "url_keywords")
CATALOG_KEYS = ("applications",)
MAX_APPLICATIONS = 510  # the ct mark's 9-bit app id, less "undecided" and "unknown"


def default_catalog_path() -> Path:
    """The catalog in the source tree, else the one an install put under sys.prefix."""
    in_tree = Path(__file__).resolve().parents[2] / "policies" / "catalog.yaml"
    if in_tree.exists():
        return in_tree
    return Path(sys.prefix) / "share" / "gatewayd" / "catalog.yaml"


def load_catalog(path: str | Path | None, issues_into: list[PolicyIssue]) -> dict[str, Application]:
    """The catalog's apps; its problems go to `issues_into` with the catalog's own FILE:LINE:COL."""
    source = str(path if path is not None else default_catalog_path())
    checker = Checker(source)
    text = read_source(source, checker, "catalog")
    applications: dict[str, Application] = {}
    if text is not None:
        root = compose(text, checker)
        applications = _catalog_from_root(root, text, checker)
    issues_into.extend(checker.issues)
    return applications


def _catalog_from_root(root: Node | None, text: str, checker: Checker) -> dict[str, Application]:
    if root is None:
        if not checker.issues:
            checker.report_at(1, 1, "catalog is empty (expected a mapping with key 'applications')")
        return {}
    if is_foreign_document(root, checker, "a catalog", CATALOG_KEYS):
        return {}
    known = checked_mapping(root, checker, "the catalog", CATALOG_KEYS, required=CATALOG_KEYS, mapping=root)
    if known is None:
        return {}
    if "applications" not in known:
        return {}
    return read_applications(known["applications"].value, checker, builtin=True)


class HeldDomains(Protocol):
    """The domain patterns the running policy holds (classify.domains.DomainMatcher has them)."""

    def held(self, pattern: str) -> str | None:
        """The running policy's own string equal to `pattern` (a parsed one), or None."""


def read_applications(node: Node, checker: Checker, builtin: bool,
                      known: dict[str, Application] | None = None,
                      held_domains: HeldDomains | None = None) -> dict[str, Application]:
    """The apps under `node`; their parents must be among them or in `known` (the catalog).

    A domain the running policy also lists is kept as the running policy's string (`held_domains`):
    on the reload of a 100,000-domain blocklist, the new policy then holds no second copy of it,
    and no new strings are scattered among the memory the reload frees."""
    if is_null(node):
        return {}
    entries = mapping_entries(node, checker, "'applications'")
    applications: dict[str, Application] = {}
    parent_nodes: dict[str, Node] = {}
    for entry in entries or []:
        if field_at(checker, entry.key, lambda text: check_name(text, "application id"), entry.name) is None:
            continue
        application = _read_application(entry.name, entry.key, entry.value, checker, builtin, parent_nodes,
                                         _domain_parser(held_domains))
        if application is not None:
            applications[entry.name] = application
    _check_parents(applications, {**(known or {}), **applications}, parent_nodes, checker)
    return applications


def _check_parents(read: dict[str, Application], everything: dict[str, Application],
                   parent_nodes: dict[str, Node], checker: Checker) -> None:
    """A parent must be an application, and following parents must never come back to the app."""
    for app_id, application in read.items():
        parent = application.parent
        if parent is None:
            continue
        node = parent_nodes[app_id]
        if parent not in everything:
            checker.report(node, f"parent '{parent}' of application '{app_id}' is not an application"
                           + checker.suggest(parent, sorted(everything)))
            continue
        seen = {app_id}
        while parent is not None and parent in everything and parent not in seen:
            seen.add(parent)
            parent = everything[parent].parent
        if parent == app_id:
            checker.report(node, f"application '{app_id}' is its own ancestor (its parents loop back to it)")


def _domain_parser(held_domains: HeldDomains | None) -> Callable[[str], str]:
    if held_domains is None:
        return parse_domain

    def parse_held_domain(text: str) -> str:
        parsed = parse_domain(text)
        return held_domains.held(parsed) or parsed

    return parse_held_domain


def _read_application(
    app_id: str, key: Node, node: Node, checker: Checker, builtin: bool, parent_nodes: dict[str, Node],
    parse_app_domain: Callable[[str], str] = parse_domain,
) -> Application | None:
    what = f"application '{app_id}'"
    entries = mapping_entries(node, checker, what)
    if entries is None:
        return None
    known = check_keys(entries, checker, what, APPLICATION_KEYS, required=("name", "category"), owner=key)
    name = text_of(known["name"].value, checker, f"'name' of {what}") if "name" in known else None
    category = _read_category(known, checker, what)
    parent = _read_parent(known, checker, what)
    if parent is not None:
        parent_nodes[app_id] = known["parent"].value
    domains = parsed_list(known, "domains", checker, what, parse_app_domain, MAX_DOMAINS_PER_APP)
    addresses = parsed_list(known, "addresses", checker, what, parse_app_address, MAX_ADDRESSES_PER_APP)
    networks: list[IPNetwork] = [entry for entry in addresses if not isinstance(entry, NetworkOnPorts)]
    networks_on_ports = [entry for entry in addresses if isinstance(entry, NetworkOnPorts)]
    ports = parsed_list(known, "ports", checker, what, parse_port_match, MAX_PORTS_PER_APP)
    signatures = parsed_list(known, "signatures", checker, what, check_signature)
    urls = parsed_list(known, "urls", checker, what, parse_url_rule)
    url_keywords = parsed_list(known, "url_keywords", checker, what, check_url_keyword)
    all_keys_known = len(known) == len(entries)  # a misspelt key already explains a missing field
    evidence_keys = ("domains", "addresses", "ports", "signatures", "urls", "url_keywords")
    # A voice-video sub-app needs no evidence of its own: the calls of its parent are named after it.
    named_by_parent_calls = parent is not None and category == "voice-video"
    if all_keys_known and not named_by_parent_calls and not any(field in known for field in evidence_keys):
        checker.report(key, f"{what} has no domains, addresses, ports, signatures or urls, so nothing can identify it")
        return None
    # The kernel's map gets one element per address and port together.
    pairs = (len(networks) * len(ports) if ports else 0) + sum(len(entry.ports) for entry in networks_on_ports)
    if pairs > MAX_ADDRESS_PORT_PAIRS_PER_APP:
        checker.report(key, limit_message(what, pairs, "address and port pairs", MAX_ADDRESS_PORT_PAIRS_PER_APP))
        return None
    if name is None or category is None:
        return None
    location = checker.location(key)
    return Application(
        id=app_id,
        name=name,
        category=category,
        domains=tuple(domains),
        networks=tuple(networks),
        ports=tuple(ports),
        signatures=tuple(signatures),
        builtin=builtin,
        urls=tuple(urls),
        url_keywords=tuple(url_keywords),
        location=location,
        parent=parent,
        networks_on_ports=tuple(networks_on_ports),
    )


def _read_parent(known: dict[str, Entry], checker: Checker, what: str) -> str | None:
    if "parent" not in known:
        return None
    node = known["parent"].value
    text = text_of(node, checker, f"'parent' of {what}")
    return None if text is None else field_at(checker, node, lambda value: check_name(value, f"{what}: parent"), text)


def _read_category(known: dict[str, Entry], checker: Checker, what: str) -> str | None:
    if "category" not in known:
        return None
    node = known["category"].value
    category = text_of(node, checker, f"'category' of {what}")
    if category is None:
        return None
    if category not in CATEGORIES:
        checker.report(
            node,
            f"category '{category}' is not known (expected one of: {', '.join(CATEGORIES)})"
            + checker.suggest(category, CATEGORIES),
        )
        return None
    return category


def application_schema() -> Schema:
    properties = {
        "name": string_schema("Display name."),
        "category": {"enum": list(CATEGORIES), "description": "The app's category."},
        "parent": string_schema("The id of the app this one is part of (instagram: facebook); "
                                "rules on the parent match it too.", pattern=NAME_PATTERN),
        "domains": one_or_list(
            string_schema('"example.com" (and subdomains), "*.example.com" (subdomains only) '
                          'or "=example.com" (exact).'),
            "Server names that identify the app.",
        ),
        "addresses": one_or_list(
            string_schema('IPv4/IPv6 network or address, optionally followed by the only ports it names the app on '
                          '("8.8.8.8 tcp/443 udp/443").'),
            "Server addresses."),
        "ports": one_or_list(
            string_schema('"tcp/443" or "udp/5000-5010".', pattern=PORT_PATTERN), "Server ports."
        ),
        "signatures": one_or_list(
            string_schema("A payload signature known to the classifier.", pattern=SIGNATURE_PATTERN),
            "Payload signatures.",
        ),
        "urls": one_or_list(
            string_schema('"HOST/PATH-PREFIX", HOST a domain pattern or * (any host).'),
            "Plain-HTTP URL rules; a matching request belongs to this app whatever its Host.",
        ),
        "url_keywords": one_or_list(
            string_schema("A word searched in the request path."),
            "Plain-HTTP URL keywords; a request whose path contains one belongs to this app.",
        ),
    }
    assert tuple(properties) == APPLICATION_KEYS
    return object_schema("An application and the evidence that identifies it.", properties, ("name", "category"))
