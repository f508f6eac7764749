"""YAML policy file -> validated `Policy`, or a PolicyError listing every problem.

One pass collects all problems with their FILE:LINE:COL, so an admin fixes
the whole file at once; no input, however broken, gets a Python traceback.

Every section has the same shape: its own reader module in policy/ (e.g.
groups.py: `read_groups` and `group_schema`, the section's JSON Schema
fragment beside the code that reads it), its dataclass in model.py. This
module only checks the top level and puts the sections together.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from yaml.nodes import MappingNode, Node, ScalarNode

from gatewayd.policy.applications import (
    MAX_APPLICATIONS,
    HeldDomains,
    load_catalog,
    read_applications,
)
from gatewayd.policy.bandwidth import check_qos_budgets
from gatewayd.policy.classes import check_guarantees_fit_link, read_classes
from gatewayd.policy.classifier import read_classifier, with_tcp_only
from gatewayd.policy.dns import read_dns
from gatewayd.policy.errors import PolicyError, PolicyIssue
from gatewayd.policy.groups import read_groups
from gatewayd.policy.ha import read_ha
from gatewayd.policy.health import read_health
from gatewayd.policy.interfaces import link_of, links_in_interfaces, read_interfaces
from gatewayd.policy.limits import MAX_APPLICATION_ADDRESSES, MAX_GROUP_MEMBERS
from gatewayd.policy.link_pins import read_link_pins
from gatewayd.policy.links import read_links
from gatewayd.policy.metrics import read_metrics
from gatewayd.policy.model import (
    Application,
    DnsSettings,
    Interfaces,
    Policy,
    QosClass,
    Tunnel,
    WanLink,
)
from gatewayd.policy.rules import Names, check_reachability, read_default, read_rules
from gatewayd.policy.schedules import read_schedules
from gatewayd.policy.security import read_security
from gatewayd.policy.sourcefile import read_source
from gatewayd.policy.tunnels import read_tunnels
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    compose,
    integer_of,
    is_foreign_document,
    within_total,
)

TOP_LEVEL_KEYS = (
    "version", "interfaces", "metrics", "classifier", "schedules",
    "groups", "applications", "classes", "default", "rules", "security", "health", "dns",
    "links", "link_pins", "tunnels", "ha",
)
REQUIRED_TOP_LEVEL_KEYS = ("version", "interfaces", "classes")
SUPPORTED_VERSION = 1
MERGE_KEY = "<<"


def load_policy(path: str, catalog_path: str | None = None) -> Policy:
    """Loads and validates the policy at `path`, apps resolved against the catalog."""
    return load_policy_with_text(path, catalog_path)[0]


def load_policy_with_text(path: str, catalog_path: str | None = None,
                          held_domains: HeldDomains | None = None) -> tuple[Policy, str]:
    """The policy and the exact text it was loaded from (what the last-known-good copy keeps).

    `held_domains`: the running policy's domains, reused instead of copied (applications.read_applications)."""
    checker = Checker(str(path))
    text = read_source(path, checker, "policy")
    if text is None:
        raise PolicyError(checker.issues)
    return _load(text, checker, catalog_path, held_domains), text


def load_policy_or_report(path: str, catalog_path: str | None = None, errors: TextIO = sys.stderr) -> Policy | None:
    """The policy, or None after printing every error as FILE:LINE:COL: message (for command-line tools)."""
    try:
        return load_policy(path, catalog_path)
    except PolicyError as exc:
        for issue in exc.issues:
            print(issue, file=errors)
        return None


def load_policy_text(text: str, source: str, catalog_path: str | None = None,
                     held_domains: HeldDomains | None = None) -> Policy:
    """Like load_policy, for text already in memory; `source` names it in messages."""
    return _load(text, Checker(source), catalog_path, held_domains)


def _load(text: str, checker: Checker, catalog_path: str | Path | None,
          held_domains: HeldDomains | None = None) -> Policy:
    catalog_issues: list[PolicyIssue] = []
    catalog = load_catalog(catalog_path, catalog_issues)
    policy: Policy | None = None
    try:
        policy = _build_policy(text, checker, catalog, held_domains)
    except Exception as error:  # the promise is "no traceback, ever"; this is the last line of it
        checker.report_at(1, 1, f"internal error while checking the policy ({type(error).__name__}: {error})")
    issues = _in_file_order(catalog_issues) + _in_file_order(checker.issues)
    if issues or policy is None:
        raise PolicyError(issues)
    return replace(policy, content_sha256=hashlib.sha256(text.encode()).hexdigest())


def _in_file_order(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    return sorted(issues, key=lambda issue: (issue.location.line, issue.location.column))


def _build_policy(text: str, checker: Checker, catalog: dict[str, Application],
                  held_domains: HeldDomains | None) -> Policy | None:
    root = compose(text, checker)
    if root is None:
        if not checker.issues:
            checker.report_at(
                1, 1, f"policy is empty (expected a mapping with keys: {', '.join(REQUIRED_TOP_LEVEL_KEYS)}, ...)"
            )
        return None
    if is_foreign_document(root, checker, "a policy", TOP_LEVEL_KEYS):
        return None
    known = checked_mapping(root, checker, "the policy", TOP_LEVEL_KEYS, REQUIRED_TOP_LEVEL_KEYS, mapping=root)
    if known is None:
        return None
    return _assemble(known, checker, catalog, held_domains)


def _section(known: dict[str, Entry], key: str) -> Node | None:
    return known[key].value if key in known else None


def _assemble(known: dict[str, Entry], checker: Checker, catalog: dict[str, Application],
              held_domains: HeldDomains | None) -> Policy | None:
    if "version" in known:
        _check_version(known["version"].value, checker)
    interfaces = read_interfaces(known["interfaces"], checker, "links" in known) if "interfaces" in known else None
    links = tuple(read_links(known["links"], checker, interfaces.lan if interfaces else ()).values()) \
        if "links" in known else ()
    if "link_pins" in known and "links" not in known:
        checker.report(known["link_pins"].key, "'link_pins' needs a 'links' section to pin to")
    if interfaces is not None and links:
        interfaces = links_in_interfaces(interfaces, links)
    metrics = read_metrics(_section(known, "metrics"), checker)
    classifier = read_classifier(_section(known, "classifier"), checker)
    schedules = read_schedules(known["schedules"].value, checker) if "schedules" in known else {}
    groups = read_groups(known["groups"].value, checker) if _within_totals(known, "groups", checker) else {}
    applications = dict(catalog)
    if _within_totals(known, "applications", checker):
        applications.update(read_applications(known["applications"].value, checker, builtin=False, known=catalog,
                                              held_domains=held_domains))
        _check_application_count(known["applications"].key, len(applications), checker)
    classifier = with_tcp_only(classifier, _section(known, "classifier"), checker, applications)
    link = link_of(interfaces)
    classes = read_classes(known["classes"].value, checker, link) if "classes" in known else {}
    if "classes" in known:
        check_guarantees_fit_link(known["classes"].key, classes, checker, link)
    if link is not None:
        check_qos_budgets(groups, classes, checker, link.directions())
    names = Names(
        groups=_declared(known, "groups", groups),
        schedules=_declared(known, "schedules", schedules),
        classes=_declared(known, "classes", classes),
        applications=applications,
    )
    classes_key = known["classes"].key if "classes" in known else None
    default_action, default_class = read_default(known.get("default"), classes_key, checker, names)
    rules = read_rules(known["rules"].value, checker, names) if "rules" in known else []
    check_reachability(rules, applications, checker)
    security = read_security(known["security"], checker) if "security" in known else None
    health = read_health(known["health"], checker) if "health" in known else None
    dns = read_dns(known["dns"], checker) if "dns" in known else DnsSettings()
    link_pins = read_link_pins(known["link_pins"].value, checker, names,
                               _declared(known, "links", {link.name: link for link in links})) \
        if "link_pins" in known and "links" in known else []
    tunnels = _read_tunnels(known, checker, interfaces, links, classes)
    ha = read_ha(known["ha"], checker, interfaces) if "ha" in known else None
    if checker.issues or interfaces is None or ("links" in known and not links):
        return None
    return Policy(
        source=checker.source,
        interfaces=interfaces,
        schedules=schedules,
        groups=groups,
        applications=applications,
        classes=classes,
        rules=tuple(rules),
        default_action=default_action,
        default_class=default_class,
        classifier=classifier,
        metrics=metrics,
        security=security,
        health=health,
        dns=dns,
        links=links,
        link_pins=tuple(link_pins),
        tunnels=tunnels,
        ha=ha,
    )


def _within_totals(known: dict[str, Entry], section: str, checker: Checker) -> bool:
    """The section is there and its lists parse in bounded time: aliases can repeat a 10,000-entry
    list in every group or app, and each address costs tens of microseconds to parse and compile."""
    if section not in known:
        return False
    node = known[section].value
    if section == "groups":
        return within_total(node, "members", checker, "group members", MAX_GROUP_MEMBERS)
    return within_total(node, "addresses", checker, "application addresses", MAX_APPLICATION_ADDRESSES)


def _read_tunnels(known: dict[str, Entry], checker: Checker, interfaces: Interfaces | None,
                  links: tuple[WanLink, ...], classes: dict[str, QosClass]) -> tuple[Tunnel, ...]:
    if "tunnels" not in known or interfaces is None:
        return ()
    carriers = [link.name for link in links] or ["wan"]  # without 'links': the one WAN, Policy.wan_links()
    taken = {*interfaces.lan, *(link.interface for link in links), *([interfaces.wan] if not links else [])}
    return tuple(read_tunnels(known["tunnels"], checker, carriers, _declared(known, "classes", classes),
                              taken).values())


def _declared(known: dict[str, Entry], key: str, parsed: Mapping[str, object]) -> list[str]:
    """Every name a section declares, in file order, whether or not its body was valid."""
    node = known[key].value if key in known else None
    if not isinstance(node, MappingNode):
        return list(parsed)
    declared = [
        key.value for key, _ in node.value if isinstance(key, ScalarNode) and key.value != MERGE_KEY
    ]
    return list(dict.fromkeys([*declared, *parsed]))


def _check_version(node: Node, checker: Checker) -> None:
    version = integer_of(node, checker, "'version'", 0, 2**31)
    if version is not None and version != SUPPORTED_VERSION:
        checker.report(node, f"unsupported version {version} (expected {SUPPORTED_VERSION})")


def _check_application_count(key: Node, count: int, checker: Checker) -> None:
    if count > MAX_APPLICATIONS:
        checker.report(key, f"too many applications: {count} with the catalog (at most {MAX_APPLICATIONS})")
