"""Every live flow's verdict equals what `gatewayd explain` says for it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator

import pytest

from gatewayd.compile.plan import compile_plan
from gatewayd.explain.flow import Explainer, FlowQuery
from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.kernel_view import decode_mark, flow_mark, learned_app
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab
from gatewayd.lab.traffic import Outcome
from gatewayd.policy.loader import load_policy

pytestmark = pytest.mark.integration

# (host, site, port): every group and every kind of verdict of office.yaml.
FLOWS = [(host, site, 443) for host in OFFICE_HOSTS
         for site in ("dingtalk", "erp", "wechat", "youku", "bilibili", "steam", "news")]
FLOWS += [(host, "bittorrent", 6881) for host in ("manager", "sales", "guest")]


@pytest.fixture(scope="module")
def office() -> Iterator[Lab]:
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        try:
            yield lab
        finally:
            daemon.stop()


def test_live_verdicts_equal_explain(office: Lab) -> None:
    lab = office
    policy = load_policy(str(OFFICE_POLICY))
    explainer, plan = Explainer(policy), compile_plan(policy)
    mismatches = []
    for host, site_key, port in FLOWS:
        site = DEFAULT_SITES[site_key]
        when = dt.datetime.now()
        if port == 6881:
            passed = traffic.bittorrent_handshake(lab, host, site.ipv4).outcome == Outcome.ANSWERED
        else:
            passed = traffic.https_get(lab, host, site.hostname, ip_version=4, timeout=5).ok
        expected = explainer.explain(FlowQuery(ipaddress.ip_address(OFFICE_HOSTS[host].ipv4),
                                               site.hostname if port == 443 else site.ipv4, port, "tcp", when))
        mark = flow_mark(lab, OFFICE_HOSTS[host].ipv4, site.ipv4, port)
        if mark is not None:
            kernel = decode_mark(plan, mark)
            live = (kernel.app, "block" if kernel.blocked or not passed else "allow",
                    None if kernel.blocked or not passed else kernel.qos_class)
        else:  # refused on its SYN: no conntrack entry stays; the app came from DNS
            live = (learned_app(lab, plan, site.ipv4), "allow" if passed else "block", None)
        said = (expected.app.app, expected.verdict.action, expected.verdict.qos_class)
        if live != said:
            mismatches.append(f"{host} -> {site.hostname}:{port}: live {live}, explain {said}")
    assert not mismatches, "\n".join(mismatches)
