"""Rules: reading them, resolving their references, and finding rules that can never match."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from yaml.nodes import Node, SequenceNode

from gatewayd.policy.app_tree import ancestors, is_within
from gatewayd.policy.fields import NAME_PATTERN, literal_of
from gatewayd.policy.limits import (
    MAX_REACHABILITY_COMPARISONS,
    MAX_RULES,
    limit_message,
)
from gatewayd.policy.model import ACTIONS, CATEGORIES, Action, Application, Rule
from gatewayd.policy.schema_parts import (
    Schema,
    names_schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    checked_mapping,
    is_null,
    kind_name,
    mapping_entries,
    text_list_of,
    text_of,
)

RULE_KEYS = ("name", "groups", "except_groups", "apps", "categories", "schedule", "action", "class")
DEFAULT_KEYS = ("action", "class")
DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class Names:
    """What a rule may refer to: every name the policy declares, even ones whose body had errors,
    so one broken group does not also flag every rule that names it."""

    groups: Collection[str]
    schedules: Collection[str]
    classes: Collection[str]
    applications: dict[str, Application]


def read_rules(node: Node, checker: Checker, names: Names) -> list[Rule]:
    if is_null(node):
        return []
    if not isinstance(node, SequenceNode):
        checker.report(node, f"'rules' must be a list (got {kind_name(node)})")
        return []
    if len(node.value) > MAX_RULES:
        checker.report(node, limit_message("the policy", len(node.value), "rules", MAX_RULES))
        return []
    rules: list[Rule] = []
    first_use: dict[str, Node] = {}
    for number, item in enumerate(node.value, start=1):
        rule = _read_rule(item, number, checker, names, first_use)
        if rule is not None:
            rules.append(rule)
    return rules


def _read_rule(item: Node, number: int, checker: Checker, names: Names, first_use: dict[str, Node]) -> Rule | None:
    entries = mapping_entries(item, checker, f"rule #{number}")
    if entries is None:
        return None
    issues_before = len(checker.issues)
    name = _rule_name(entries, item, number, checker, first_use)
    what = f"rule '{name}'" if name else f"rule #{number}"
    known = check_keys(entries, checker, what, RULE_KEYS)
    groups = _references(known, "groups", checker, what, names.groups, "group", "groups")
    except_groups = _references(known, "except_groups", checker, what, names.groups, "group", "groups")
    apps = _listed(known, "apps", checker, what, names.applications,
                   lambda name: f"application '{name}' is not defined "
                                "(neither in the built-in catalog nor under 'applications')")
    categories = _listed(known, "categories", checker, what, CATEGORIES,
                         lambda name: f"category '{name}' is not known (expected one of: {', '.join(CATEGORIES)})")
    schedule = _single_reference(known, "schedule", checker, what, names.schedules, "schedule", "schedules")
    action, qos_class = read_decision(known, item, checker, what, names.classes)
    if name is None or action is None or len(checker.issues) > issues_before:
        return None
    return Rule(
        name=name,
        action=action,
        qos_class=qos_class,
        groups=tuple(groups),
        except_groups=tuple(except_groups),
        apps=tuple(apps),
        categories=tuple(categories),
        schedule=schedule,
        location=checker.location(item),
    )


def _rule_name(
    entries: list[Entry], item: Node, number: int, checker: Checker, first_use: dict[str, Node]
) -> str | None:
    entry = next((entry for entry in entries if entry.name == "name"), None)
    if entry is None:
        checker.report(item, f"missing key 'name' in rule #{number}")
        return None
    name = text_of(entry.value, checker, f"'name' of rule #{number}")
    if name is None:
        return None
    if name in first_use:
        checker.report(
            entry.value, f"rule name '{name}' is already used by the rule at line {first_use[name].start_mark.line + 1}"
        )
    else:
        first_use[name] = entry.value
    return name


def _defined_list(kind_plural: str, defined: Collection[str]) -> str:
    return f"defined {kind_plural}: {', '.join(defined)}" if defined else f"no {kind_plural} are defined"


def _report_undefined(
    checker: Checker, node: Node, kind: str, kind_plural: str, name: str, defined: Collection[str]
) -> None:
    checker.report(node, _undefined(kind, kind_plural, name, defined) + checker.suggest(name, defined))


def _undefined(kind: str, kind_plural: str, name: str, defined: Collection[str]) -> str:
    return f"{kind} '{name}' is not defined ({_defined_list(kind_plural, defined)})"


def _references(
    known: dict[str, Entry], key: str, checker: Checker, what: str,
    defined: Collection[str], kind: str, kind_plural: str,
) -> list[str]:
    return _listed(known, key, checker, what, defined,
                   lambda name: _undefined(kind, kind_plural, name, defined))


def _listed(
    known: dict[str, Entry], key: str, checker: Checker, what: str,
    defined: Collection[str], unknown: Callable[[str], str],
) -> list[str]:
    """The names listed under `key` that `defined` holds; each other one is reported, with a suggestion."""
    if key not in known:
        return []
    found: list[str] = []
    for item, name in text_list_of(known[key].value, checker, f"'{key}' of {what}"):
        if name in defined:
            found.append(name)
        else:
            checker.report(item, unknown(name) + checker.suggest(name, defined))
    return found


def _single_reference(
    known: dict[str, Entry], key: str, checker: Checker, what: str,
    defined: Collection[str], kind: str, kind_plural: str,
) -> str | None:
    if key not in known:
        return None
    node = known[key].value
    name = text_of(node, checker, f"'{key}' of {what}")
    if name is None:
        return None
    if name not in defined:
        _report_undefined(checker, node, kind, kind_plural, name, defined)
        return None
    return name


def read_decision(
    known: dict[str, Entry], owner: Node, checker: Checker, what: str, classes: Collection[str]
) -> tuple[Action | None, str | None]:
    """(action, class) from `action` and `class`; `class` alone means allow into it."""
    action: Action | None = None
    if "action" in known:
        node = known["action"].value
        text = text_of(node, checker, f"'action' of {what}")
        action = literal_of(text, ACTIONS) if text is not None else None
        if text is not None and action is None:
            checker.report(
                node, f"action '{text}' is not valid (expected allow or block)" + checker.suggest(text, ACTIONS)
            )
    qos_class = _single_reference(known, "class", checker, what, classes, "class", "classes")
    if action == "block" and "class" in known:
        checker.report(
            known["class"].key, f"{what} blocks, so it cannot have a class (remove 'class' or use action: allow)"
        )
        return None, None
    if "action" not in known and "class" not in known:
        checker.report(owner, f"{what} needs 'action' (allow or block) or 'class'")
        return None, None
    if action is None and "action" not in known and qos_class is not None:
        action = "allow"
    return action, qos_class



def check_reachability(rules: list[Rule], applications: dict[str, Application], checker: Checker) -> None:
    """Flags a rule that an earlier, unconditional rule always decides first.

    Conservative on purpose: only an earlier rule with no schedule and no
    except_groups counts, and only when its sources and apps plainly cover the
    later rule's; anything subtler is left alone rather than risk a false alarm.
    Each rule is compared only with the earlier rules that could cover it (see
    _CoverIndex), and at most MAX_REACHABILITY_COMPARISONS times in all: past
    that the check stops rather than let a crafted policy make it quadratic.
    """
    index = _CoverIndex(applications)
    for later in rules:
        earlier = index.first_covering(later)
        if index.exhausted:
            return
        if earlier is not None:
            assert later.location is not None and earlier.location is not None
            checker.report_at(
                later.location.line,
                later.location.column,
                f"rule '{later.name}' can never match: rule '{earlier.name}' "
                f"({earlier.location.file}:{earlier.location.line}) above it matches every flow it would",
            )
        index.add(later)


class _CoverIndex:
    """The unconditional rules seen so far, found by what a later rule they cover must share with them.

    A rule with apps or categories covers a later rule only if it names the later rule's
    first app (or that app's category), or its first category; a rule with neither may
    cover anything. Of rules with the same groups, apps and categories only the first counts.
    """

    def __init__(self, applications: dict[str, Application]) -> None:
        self.applications = applications
        self.any_app: list[tuple[int, Rule]] = []
        self.by_app: dict[str, list[tuple[int, Rule]]] = {}
        self.by_category: dict[str, list[tuple[int, Rule]]] = {}
        self.seen: set[tuple[frozenset[str], frozenset[str], frozenset[str]]] = set()
        self.position = 0
        self.comparisons_left = MAX_REACHABILITY_COMPARISONS

    @property
    def exhausted(self) -> bool:
        return self.comparisons_left < 0

    def add(self, rule: Rule) -> None:
        self.position += 1
        if rule.schedule is not None or rule.except_groups:
            return
        signature = (frozenset(rule.groups), frozenset(rule.apps), frozenset(rule.categories))
        if signature in self.seen:
            return
        self.seen.add(signature)
        entry = (self.position, rule)
        if not (rule.apps or rule.categories):
            self.any_app.append(entry)
        for app_id in rule.apps:
            self.by_app.setdefault(app_id, []).append(entry)
        for category in rule.categories:
            self.by_category.setdefault(category, []).append(entry)

    def first_covering(self, later: Rule) -> Rule | None:
        pools = [self.any_app]
        if later.apps:
            first_app = later.apps[0]
            # a rule on a parent app covers its children (app_tree), so the parents' pools count too
            pools += [self.by_app.get(app_id, []) for app_id in (first_app, *ancestors(first_app, self.applications))]
            pools.append(self.by_category.get(self.applications[first_app].category, []))
        elif later.categories:
            pools.append(self.by_category.get(later.categories[0], []))
        best: tuple[int, Rule] | None = None
        for pool in pools:
            for position, earlier in pool:
                if best is not None and position >= best[0]:
                    break  # pools are in file order: nothing further in this one is earlier
                self.comparisons_left -= 1
                if self.comparisons_left < 0:
                    return None
                if _covers(earlier, later, self.applications):
                    best = (position, earlier)
                    break
        return best[1] if best is not None else None


def _covers(earlier: Rule, later: Rule, applications: dict[str, Application]) -> bool:
    if earlier.schedule is not None or earlier.except_groups:
        return False
    if earlier.groups and not (later.groups and set(later.groups) <= set(earlier.groups)):
        return False
    if not (earlier.apps or earlier.categories):
        return True
    if not (later.apps or later.categories):
        return False
    if not set(later.categories) <= set(earlier.categories):
        return False
    return all(
        is_within(app_id, earlier.apps, applications) or applications[app_id].category in earlier.categories
        for app_id in later.apps
    )


def read_default(entry: Entry | None, classes_key: Node | None, checker: Checker,
                 names: Names) -> tuple[Action, str]:
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


def decision_properties() -> Schema:
    return {
        "action": {"enum": list(ACTIONS), "description": "allow or block."},
        "class": string_schema("QoS class for allowed flows.", pattern=NAME_PATTERN),
    }


# `action: block` with a class makes no sense; `class` alone means allow.
BLOCK_HAS_NO_CLASS: Schema = {"not": {"required": ["action", "class"], "properties": {"action": {"const": "block"}}}}


def rule_schema() -> Schema:
    properties = {
        "name": string_schema("Unique name, shown in logs and metrics."),
        "groups": names_schema("Match clients in any of these groups (omit = anyone)."),
        "except_groups": names_schema("...but not clients in these groups."),
        "apps": names_schema("Match these app ids (built-in or the policy's own)."),
        "categories": one_or_list({"enum": list(CATEGORIES)}, "Match apps in these categories."),
        "schedule": string_schema("Only while this schedule is active.", pattern=NAME_PATTERN),
        **decision_properties(),
    }
    schema = object_schema("A rule; the first matching rule decides a flow.", properties, ("name",))
    schema["anyOf"] = [{"required": ["action"]}, {"required": ["class"]}]
    schema["allOf"] = [BLOCK_HAS_NO_CLASS]
    return schema


def default_schema() -> Schema:
    return (object_schema("What happens to flows no rule matches.", decision_properties())
            | {"allOf": [BLOCK_HAS_NO_CLASS]})


# For other sections that name groups and apps the way rules do (policy/link_pins.py).
referenced_names = _references
listed_names = _listed
