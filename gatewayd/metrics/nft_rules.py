"""Hits per policy rule and blocked packets, from the named counters of the gatewayd table."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.nft import Counter, NftKernel
from gatewayd.compile import kernel_names
from gatewayd.compile.plan import Plan
from gatewayd.compile.ruleset import TCP_ONLY_RULE_NAME
from gatewayd.metrics.base import PlanCollector, PlanSource
from gatewayd.metrics.classifier_memory import ClassifierSource, given_up_by_budget

BLOCKED_COUNTERS = {
    kernel_names.COUNTER_BLOCKED_TCP: "tcp",
    kernel_names.COUNTER_BLOCKED_UDP: "udp",
    kernel_names.COUNTER_BLOCKED_OTHER: "other",
}


def packets_of(counters: dict[str, Counter], name: str) -> int:
    counter = counters.get(name)
    return counter.packets if counter else 0


def rule_info(plan: Plan) -> GaugeMetricFamily:
    """1 per policy rule with what it does, so PromQL can pick the hits of blocking rules
    (`gatewayd_rule_hits_total * on (rule) group_left gatewayd_rule_info{action="block"}`)."""
    info = GaugeMetricFamily("gatewayd_rule_info", "A policy rule and its action (block or allow).",
                             labels=["rule", "action"])
    actions = {rule.name: rule.action for rule in plan.policy.rules}
    actions.update({"default": plan.policy.default_action, TCP_ONLY_RULE_NAME: "block"})
    for rule_name in plan.ruleset.rule_counters.values():
        info.add_metric([rule_name, actions[rule_name]], 1)
    return info


class RuleCollector(PlanCollector):
    _kernel: NftKernel | None = None
    name = "nft_rules"

    def __init__(self, plans: PlanSource, classifiers: ClassifierSource | None = None) -> None:
        super().__init__(plans)
        self._classifiers = classifiers  # flows the classifier's budgets gave up, beside the kernel's

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        self._kernel = self._kernel or NftKernel()
        counters = self._kernel.named_counters()
        # A decided flow runs the rules once per rules epoch (compile/decision_epoch.py), a blocked
        # one on every packet: block rules count packets, class rules count flows (and epochs).
        hits = CounterMetricFamily("gatewayd_rule_hits", "Original-direction packets that ran the policy rules and "
                                   "matched this one: every packet of a blocked flow, once per epoch for others.",
                                   labels=["rule"])
        hit_bytes = CounterMetricFamily("gatewayd_rule_hit_bytes", "Bytes of the packets gatewayd_rule_hits counts.",
                                        labels=["rule"])
        for counter_name, rule_name in plan.ruleset.rule_counters.items():
            counter = counters.get(counter_name)
            if counter:
                hits.add_metric([rule_name], counter.packets)
                hit_bytes.add_metric([rule_name], counter.bytes)
        yield rule_info(plan)
        blocked = CounterMetricFamily("gatewayd_blocked_packets",
                                      "Packets blocked by policy: TCP answered with a reset, the rest dropped.",
                                      labels=["protocol"])
        for counter_name, protocol in BLOCKED_COUNTERS.items():
            blocked.add_metric([protocol], packets_of(counters, counter_name))
        replies = CounterMetricFamily("gatewayd_blocked_reply_packets",
                                      "Reply-direction packets of blocked flows, dropped.")
        replies.add_metric([], packets_of(counters, kernel_names.COUNTER_BLOCKED_REPLIES))
        queued = CounterMetricFamily("gatewayd_queued_packets",
                                     "Packets the kernel handed to the classifier (first packets of undecided flows).")
        queued.add_metric([], packets_of(counters, kernel_names.COUNTER_QUEUED))
        gave_up = CounterMetricFamily("gatewayd_flows_gave_up", "Flows decided by port or as unknown for want of "
                                      "evidence: still undecided after max_packets (the kernel), or over a "
                                      "classifier buffer budget (reason).", labels=["reason"])
        gave_up.add_metric(["max_packets"], packets_of(counters, kernel_names.COUNTER_GAVE_UP))
        classifier = self._classifiers.current_classifier() if self._classifiers else None
        if classifier is not None:
            for reason, flows in given_up_by_budget(classifier.stats).items():
                gave_up.add_metric([reason], flows)
        dns_queued = CounterMetricFamily("gatewayd_dns_queued_packets", "DNS packets the kernel handed to the "
                                         "classifier for learning: lookups to dns.resolvers (query) and the answers "
                                         "of dns.resolvers and the router's own resolver (answer).", labels=["kind"])
        dns_queued.add_metric(["query"], packets_of(counters, kernel_names.COUNTER_DNS_QUERIES))
        dns_queued.add_metric(["answer"], packets_of(counters, kernel_names.COUNTER_DNS_SNOOPED))
        learned = GaugeMetricFamily("gatewayd_dns_learned_addresses",
                                    "Server addresses learned from DNS, held in kernel maps.", labels=["family"])
        for map_name, count in self._kernel.learned_count().items():
            learned.add_metric([map_name.rsplit("_", 1)[1]], count)
        over_rate = CounterMetricFamily("gatewayd_classifier_host_over_rate_packets",
                                        "First packets of undecided flows not queued because their LAN host was "
                                        "over classifier.host_queue_rate: they passed unclassified.")
        over_rate.add_metric([], packets_of(counters, kernel_names.COUNTER_HOST_QUEUE_RATE))
        yield from (hits, hit_bytes, blocked, replies, queued, over_rate, dns_queued, gave_up, learned)
