"""gatewayd_connections_refused_total: one series per capped group and protocol, from nft named counters."""

from __future__ import annotations

import textwrap

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.nft import Counter
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.connections import ConnectionCapCollector
from gatewayd.policy.loader import load_policy_text

POLICY = textwrap.dedent("""\
    version: 1
    interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
    classes: { default: { priority: 3 } }
    groups:
      staff: { members: [192.0.2.0/28] }
      guest: { members: [192.0.2.192/26], max_connections: 3 }
    """)


class FixedPlan:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def current_plan(self) -> Plan:
        return self.plan


class FixedCounters:
    def __init__(self, counters: dict[str, Counter]) -> None:
        self.counters = counters

    def named_counters(self) -> dict[str, Counter]:
        return self.counters


def test_refused_connections_are_reported_by_group_and_protocol() -> None:
    plan = compile_plan(load_policy_text(POLICY, "p.yaml"))
    collector = ConnectionCapCollector(FixedPlan(plan))
    collector._kernel = FixedCounters({  # type: ignore[assignment]
        "connections_refused_guest_tcp": Counter(packets=4, bytes=240),
        "connections_refused_guest_udp": Counter(packets=7, bytes=700),
    })
    registry = CollectorRegistry()
    registry.register(CollectorSet([collector]))
    exposition = generate_latest(registry).decode()
    name = "gatewayd_connections_refused_total"
    assert metric_value(exposition, name, group="guest", protocol="tcp") == 4
    assert metric_value(exposition, name, group="guest", protocol="udp") == 7
    assert f'{name}{{group="guest",protocol="other"}} 0.0' in exposition  # present before the first refusal
    assert metric_value(exposition, name, group="guest") == 11  # sum by group: the old series' meaning
    assert 'group="staff"' not in exposition  # no cap, no series
