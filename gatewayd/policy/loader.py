"""YAML policy file -> validated `Policy`, or a PolicyError listing every problem.

One pass collects all problems with their FILE:LINE:COL, so an admin fixes
the whole file at once; no input, however broken, gets a Python traceback.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TextIO

from yaml.nodes import MappingNode, Node, ScalarNode

from gatewayd.policy.bandwidth import check_qos_budgets
from gatewayd.policy.applications import MAX_APPLICATIONS, load_catalog, read_applications
from gatewayd.policy.errors import PolicyError, PolicyIssue
from gatewayd.policy.fields import check_interface_name, parse_listen, parse_rate
from gatewayd.policy.limits import MAX_APPLICATION_ADDRESSES, MAX_GROUP_MEMBERS
from gatewayd.policy.model import ClassifierSettings, Interfaces, Policy
from gatewayd.policy.rules import Names, check_reachability, read_decision, read_rules
from gatewayd.policy.sections import (
    check_guarantees_fit_link,
    link_of,
    read_classes,
    read_groups,
    read_schedules,
)
from gatewayd.policy.health import read_health
from gatewayd.policy.security import read_security
from gatewayd.policy.sourcefile import read_source
from gatewayd.policy.tcp_only import read_tcp_only
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    checked_mapping,
    compose,
    field_at,
    integer_of,
    is_empty,
    is_foreign_document,
    within_total,
    is_null,
    mapping_entries,
    text_list_of,
    text_of,
)

TOP_LEVEL_KEYS = (
    "version", "interfaces", "metrics", "classifier", "schedules",
    "groups", "applications", "classes", "default", "rules", "security", "health",
)
REQUIRED_TOP_LEVEL_KEYS = ("version", "interfaces", "classes")
INTERFACE_KEYS = ("lan", "wan", "upload", "download")
METRICS_KEYS = ("listen",)
CLASSIFIER_KEYS = ("fail_mode", "max_packets", "queue", "tcp_only")
DEFAULT_KEYS = ("action", "class")
FAIL_MODES = ("open", "closed")
SUPPORTED_VERSION = 1
DEFAULT_LISTEN = "127.0.0.1:9108"
DEFAULT_CLASS = "default"
MERGE_KEY = "<<"


def load_policy(path: str, catalog_path: str | None = None) -> Policy:
    """Loads and validates the policy at `path`, apps resolved against the catalog."""
    return load_policy_with_text(path, catalog_path)[0]


def load_policy_with_text(path: str, catalog_path: str | None = None) -> tuple[Policy, str]:
    """The policy and the exact text it was loaded from (what the last-known-good copy keeps)."""
    checker = Checker(str(path))
    text = read_source(path, checker, "policy")
    if text is None:
        raise PolicyError(checker.issues)
    return _load(text, checker, catalog_path), text


def load_policy_or_report(path: str, catalog_path: str | None = None, errors: TextIO = sys.stderr) -> Policy | None:
    """The policy, or None after printing every error as FILE:LINE:COL: message (for command-line tools)."""
    try:
        return load_policy(path, catalog_path)
    except PolicyError as exc:
        for issue in exc.issues:
            print(issue, file=errors)
        return None


def load_policy_text(text: str, source: str, catalog_path: str | None = None) -> Policy:
    """Like load_policy, for text already in memory; `source` names it in messages."""
    return _load(text, Checker(source), catalog_path)


def _load(text: str, checker: Checker, catalog_path: str | Path | None) -> Policy:
    catalog_issues: list[PolicyIssue] = []
    catalog = load_catalog(catalog_path, catalog_issues)
    policy: Policy | None = None
    try:
        policy = _build_policy(text, checker, catalog)
    except Exception as error:  # the promise is "no traceback, ever"; this is the last line of it
        checker.report_at(1, 1, f"internal error while checking the policy ({type(error).__name__}: {error})")
    issues = _in_file_order(catalog_issues) + _in_file_order(checker.issues)
    if issues or policy is None:
        raise PolicyError(issues)
    return policy


def _in_file_order(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    return sorted(issues, key=lambda issue: (issue.location.line, issue.location.column))


def _build_policy(text: str, checker: Checker, catalog: dict) -> Policy | None:
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
    return _assemble(known, checker, catalog)


def _section(known: dict[str, Entry], key: str) -> Node | None:
    return known[key].value if key in known else None


def _assemble(known: dict[str, Entry], checker: Checker, catalog: dict) -> Policy | None:
    if "version" in known:
        _check_version(known["version"].value, checker)
    interfaces = _read_interfaces(known["interfaces"], checker) if "interfaces" in known else None
    metrics_listen = _read_metrics(_section(known, "metrics"), checker)
    classifier = _read_classifier(_section(known, "classifier"), checker)
    schedules = read_schedules(known["schedules"].value, checker) if "schedules" in known else {}
    groups = read_groups(known["groups"].value, checker) if _within_totals(known, "groups", checker) else {}
    applications = dict(catalog)
    if _within_totals(known, "applications", checker):
        applications.update(read_applications(known["applications"].value, checker, builtin=False))
        _check_application_count(known["applications"].key, len(applications), checker)
    classifier = _with_tcp_only(classifier, _section(known, "classifier"), checker, applications)
    link = link_of(interfaces)
    classes = read_classes(known["classes"].value, checker, link) if "classes" in known else {}
    if "classes" in known:
        check_guarantees_fit_link(known["classes"].key, classes, checker, link)
    if link is not None:
        check_qos_budgets(groups, classes, checker, link.directions())  # type: ignore[arg-type]
    names = Names(
        groups=_declared(known, "groups", groups),
        schedules=_declared(known, "schedules", schedules),
        classes=_declared(known, "classes", classes),
        applications=applications,
    )
    classes_key = known["classes"].key if "classes" in known else None
    default_action, default_class = _read_default(known.get("default"), classes_key, checker, names)
    rules = read_rules(known["rules"].value, checker, names) if "rules" in known else []
    check_reachability(rules, applications, checker)
    security = read_security(known["security"], checker) if "security" in known else None
    health = read_health(known["health"], checker) if "health" in known else None
    if checker.issues or interfaces is None:
        return None
    return Policy(
        source=checker.source,
        interfaces=interfaces,
        schedules=schedules,
        groups=groups,
        applications=applications,
        classes=classes,
        rules=tuple(rules),
        default_action=default_action,  # type: ignore[arg-type]
        default_class=default_class,
        classifier=classifier,
        metrics_listen=metrics_listen,
        security=security,
        health=health,
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


def _declared(known: dict[str, Entry], key: str, parsed: dict) -> list[str]:
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


def _read_interfaces(entry: Entry, checker: Checker) -> Interfaces | None:
    known = checked_mapping(entry.value, checker, "'interfaces'", INTERFACE_KEYS, INTERFACE_KEYS, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    lan = _lan_names(known, checker)
    wan = None
    if "wan" in known:
        wan_text = text_of(known["wan"].value, checker, "'wan' of 'interfaces'")
        wan = field_at(checker, known["wan"].value, check_interface_name, wan_text) if wan_text else None
        if wan is not None and wan in lan:
            checker.report(known["wan"].value, f"interface '{wan}' cannot be both lan and wan")
    upload = _link_rate(known, "upload", checker)
    download = _link_rate(known, "download", checker)
    if len(checker.issues) > issues_before or wan is None or upload is None or download is None:
        return None
    return Interfaces(tuple(lan), wan, upload, download, checker.location(entry.key))


def _lan_names(known: dict[str, Entry], checker: Checker) -> list[str]:
    if "lan" not in known:
        return []
    names: list[str] = []
    items = text_list_of(known["lan"].value, checker, "'lan' of 'interfaces'")
    if is_empty(known["lan"].value):
        checker.report(known["lan"].value, "'lan' of 'interfaces' is empty (expected an interface name or a list)")
    for item, text in items:
        name = field_at(checker, item, check_interface_name, text)
        if name in names:
            checker.report(item, f"interface '{name}' is listed twice in 'lan'")
        elif name is not None:
            names.append(name)
    return names


def _link_rate(known: dict[str, Entry], key: str, checker: Checker) -> int | None:
    if key not in known:
        return None
    node = known[key].value
    text = text_of(node, checker, f"'{key}' of 'interfaces'")
    return field_at(checker, node, parse_rate, text) if text is not None else None


def _read_metrics(node: Node | None, checker: Checker) -> str:
    if node is None or is_null(node):
        return DEFAULT_LISTEN
    entries = mapping_entries(node, checker, "'metrics'")
    known = check_keys(entries or [], checker, "'metrics'", METRICS_KEYS)
    if "listen" not in known:
        return DEFAULT_LISTEN
    listen_node = known["listen"].value
    if not isinstance(listen_node, ScalarNode) or is_null(listen_node):
        checker.report(
            listen_node, 'metrics listen must be "HOST:PORT" (quote IPv6 addresses: "[::1]:9108")'
        )
        return DEFAULT_LISTEN
    return field_at(checker, listen_node, parse_listen, listen_node.value) or DEFAULT_LISTEN


def _read_classifier(node: Node | None, checker: Checker) -> ClassifierSettings:
    defaults = ClassifierSettings()
    if node is None or is_null(node):
        return defaults
    entries = mapping_entries(node, checker, "'classifier'")
    known = check_keys(entries or [], checker, "'classifier'", CLASSIFIER_KEYS)
    fail_mode = defaults.fail_mode
    if "fail_mode" in known:
        mode_node = known["fail_mode"].value
        mode = text_of(mode_node, checker, "'fail_mode' of 'classifier'")
        if mode is not None and mode not in FAIL_MODES:
            checker.report(mode_node, f"fail_mode '{mode}' is not valid (expected open or closed)")
        elif mode is not None:
            fail_mode = mode
    max_packets = defaults.max_packets
    if "max_packets" in known:
        max_packets = integer_of(known["max_packets"].value, checker, "'max_packets'", 1, 32) or max_packets
    queue_num = defaults.queue_num
    if "queue" in known:
        queue = integer_of(known["queue"].value, checker, "'queue'", 0, 65535)
        queue_num = queue if queue is not None else queue_num
    return ClassifierSettings(fail_mode, max_packets, queue_num)  # type: ignore[arg-type]


def _with_tcp_only(settings: ClassifierSettings, node: Node | None, checker: Checker,
                   applications: dict) -> ClassifierSettings:
    """tcp_only names apps, so it is read once the applications are known."""
    if node is None or not isinstance(node, MappingNode):
        return settings
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "tcp_only":
            return dataclasses.replace(settings, tcp_only=read_tcp_only(value_node, checker, applications))
    return settings


def _read_default(entry: Entry | None, classes_key: Node | None, checker: Checker, names: Names) -> tuple[str, str]:
    """The default decision; its class defaults to 'default', which must then exist."""
    if entry is None or is_null(entry.value):
        _require_default_class(classes_key, checker, names)
        return "allow", DEFAULT_CLASS
    known = checked_mapping(entry.value, checker, "'default'", DEFAULT_KEYS)
    if known is None:
        return "allow", DEFAULT_CLASS
    action, qos_class = read_decision(known, entry.key, checker, "'default'", names.classes)
    if "class" not in known:
        _require_default_class(entry.key, checker, names)
    return action or "allow", qos_class or DEFAULT_CLASS


def _require_default_class(anchor: Node | None, checker: Checker, names: Names) -> None:
    if anchor is None or DEFAULT_CLASS in names.classes:
        return
    checker.report(
        anchor,
        f"no class named '{DEFAULT_CLASS}' is defined, and flows no rule puts in a class need one "
        f"(define it, or set default.class to one of: {', '.join(names.classes) or 'no classes are defined'})",
    )
