"""Explain one flow: its group, its app with the evidence, the rule that decides it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from gatewayd.classify.tables import ClassifierTables
from gatewayd.explain.rules import FlowFacts, RuleEngine, RuleVerdict
from gatewayd.policy.app_tree import ancestors
from gatewayd.policy.model import IPAddress, Policy

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}


@dataclass(frozen=True)
class FlowQuery:
    source: IPAddress
    destination: str  # an address or a host name
    port: int
    protocol: str  # "tcp" or "udp"
    when: dt.datetime
    source_mac: str | None = None


@dataclass(frozen=True)
class AppEvidence:
    app: str
    category: str
    method: str  # "domain", "address", "port" or "none"
    evidence: str


@dataclass(frozen=True)
class Explanation:
    query: FlowQuery
    groups: list[str]
    app: AppEvidence
    verdict: RuleVerdict
    part_of: tuple[str, ...] = ()  # the app's parents, nearest first: rules on them match it too

    @property
    def accounting_group(self) -> str:
        return self.groups[0] if self.groups else "(none)"


def identify_app(tables: ClassifierTables, destination: str, protocol: str, port: int) -> AppEvidence:
    """The app the classifier would name from what a flow shows: its server's name, address or port.

    A host name stands for what DNS, the TLS SNI or the HTTP Host would show.
    """
    proto = PROTOCOL_NUMBERS[protocol]
    try:
        address: IPAddress | None = ipaddress.ip_address(destination)
    except ValueError:
        address = None
    if address is None:
        match = tables.domains.lookup(destination)
        if match is not None:
            return AppEvidence(match.app, tables.categories.get(match.app, "unknown"), "domain",
                               f"{destination} matches the pattern {match.pattern!r}")
    else:
        found = tables.addresses.lookup(address.packed, proto, port)
        if found is not None:
            return AppEvidence(found.app, tables.categories.get(found.app, "unknown"), "address",
                               f"{address} is in the app's addresses")
    by_port = tables.ports.lookup(proto, port)
    if by_port is not None:
        return AppEvidence(by_port, tables.categories.get(by_port, "unknown"), "port",
                           f"{protocol}/{port} is the app's port (weakest evidence)")
    return AppEvidence("unknown", "unknown", "none", "no domain, address or port of the catalog matches")


class Explainer:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.tables = ClassifierTables.build(policy.applications.values())
        self.engine = RuleEngine(policy)

    def explain(self, query: FlowQuery) -> Explanation:
        evidence = identify_app(self.tables, query.destination, query.protocol, query.port)
        facts = FlowFacts(query.source, evidence.app, query.when, query.source_mac)
        return Explanation(query, self.engine.groups_of(query.source, query.source_mac), evidence,
                           self.engine.evaluate(facts), ancestors(evidence.app, self.policy.applications))


def render(explanation: Explanation) -> str:
    query, app, verdict = explanation.query, explanation.app, explanation.verdict
    other_groups = explanation.groups[1:]
    lines = [
        f"flow     {query.protocol} {query.source} -> {query.destination}:{query.port} "
        f"at {query.when:%a %Y-%m-%d %H:%M}",
        f"group    {explanation.accounting_group}"
        + (f" (also in: {', '.join(other_groups)})" if other_groups else ""),
        (f"app      {app.app} ({app.category}"
         + (f", part of {' < '.join(explanation.part_of)}" if explanation.part_of else "")
         + f") by {app.method}: {app.evidence}"),
    ]
    if verdict.rule is not None:
        where = f"{verdict.rule.location.file}:{verdict.rule.location.line}" if verdict.rule.location else "?"
        lines.append(f"rule     {verdict.rule.name}  ({where})")
    else:
        lines.append("rule     default (no rule matches)")
    lines.append(f"verdict  {verdict.action}" + (f", class {verdict.qos_class}" if verdict.qos_class else ""))
    for rule in verdict.also_matching:
        where = f"{rule.location.file}:{rule.location.line}" if rule.location else "?"
        lines.append(f"also     {rule.name}  ({where}) would match if the rules above it did not")
    return "\n".join(lines)


def as_json(explanation: Explanation) -> dict[str, object]:
    verdict = explanation.verdict
    rule = verdict.rule
    return {
        "source": str(explanation.query.source), "destination": explanation.query.destination,
        "port": explanation.query.port, "protocol": explanation.query.protocol,
        "time": explanation.query.when.isoformat(timespec="minutes"),
        "group": explanation.accounting_group, "groups": explanation.groups,
        "app": explanation.app.app, "part_of": list(explanation.part_of), "category": explanation.app.category,
        "method": explanation.app.method, "evidence": explanation.app.evidence,
        "rule": verdict.rule_name,
        "rule_location": f"{rule.location.file}:{rule.location.line}" if rule and rule.location else None,
        "action": verdict.action, "class": verdict.qos_class,
        "also_matching": [r.name for r in verdict.also_matching],
    }
