"""Classifier features through the real kernel path: QUIC Initials via NFQUEUE, the tcp_only
policy option blocking an app's QUIC, and DNS over TCP teaching the kernel.

Each test has a lab of its own (policy copies with classifier.tcp_only added);
traffic stays inside the lab's namespaces, addresses are documentation ranges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from gatewayd.lab import quic_initial, traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value, running_gatewayd
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES, DNS_SERVER_V4
from gatewayd.lab.topology import Lab

pytestmark = pytest.mark.integration
SITE = dict(DEFAULT_SITES)

SEND_FROM_ONE_SOCKET = r"""
import socket, sys
address, port, payloads = sys.argv[1], int(sys.argv[2]), [bytes.fromhex(h) for h in sys.argv[3:]]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2.0)
echoed = 0
for payload in payloads:
    sock.sendto(payload, (address, port))
    try:
        echoed += sock.recv(4096) == payload
    except OSError:
        pass
print(echoed)
"""


@pytest.fixture(scope="module")
def tcp_only_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon]]:
    policy = tmp_path_factory.mktemp("policy") / "office.yaml"
    text = OFFICE_POLICY.read_text()
    text, replaced = re.subn(r"(?m)^classifier:\n", "classifier:\n  tcp_only: [video]\n", text, count=1)
    assert replaced == 1, "office.yaml has no classifier section to extend"
    policy.write_text(text)
    with Lab(hosts=OFFICE_HOSTS) as lab, running_gatewayd(lab, policy) as daemon:
        yield lab, daemon


def test_quic_of_a_tcp_only_app_is_dropped_and_counted(tcp_only_office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = tcp_only_office
    # "sales" may watch video (bulk class); only its QUIC is refused.
    initial = quic_initial.client_initials(SITE["bilibili"].hostname)[0]
    blocked = traffic.udp_send(lab, "sales", SITE["bilibili"].ipv4, 443, payload=initial, count=2,
                               expect_reply=True, timeout=2.0)
    assert blocked.sent == 2 and blocked.replies == 0, blocked
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_rule_hits_total", rule="tcp-only") >= 1
    assert metric_value(exposition, "gatewayd_classifier_decisions_total", method="quic-sni") >= 1
    # The same app over TCP still works: the browser's fallback path.
    assert traffic.https_get(lab, "sales", SITE["bilibili"].hostname).ok


def test_quic_of_other_apps_passes_and_is_classified(tcp_only_office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = tcp_only_office
    before = metric_value(daemon.metrics(), "gatewayd_flows_total", app="dingtalk", group="sales")
    datagrams = quic_initial.client_initials(SITE["dingtalk"].hostname, version=quic_initial.VERSION_2, split=True)
    # Both Initials from one socket: one flow, the hello completes with the second packet.
    proc = lab.run("sales", ["python3", "-c", SEND_FROM_ONE_SOCKET, SITE["dingtalk"].ipv4, "443",
                             *(d.hex() for d in datagrams)], timeout=10, check=False)
    assert proc.stdout.strip() == "2", proc.stdout + proc.stderr  # both echoed: QUIC of dingtalk passes
    after = metric_value(daemon.metrics(), "gatewayd_flows_total", app="dingtalk", group="sales")
    assert after >= before + 1


def test_google_quic_q050_initials_are_read_through_the_kernel_path(tcp_only_office: tuple[Lab, GatewayDaemon]) -> None:
    """Q050 protects its Initials with its own salt and carries a gQUIC CHLO: named by its SNI, not given up."""
    lab, daemon = tcp_only_office
    site = SITE["wechat"]  # used by no other test here: nothing taught the kernel its address
    assert site.ipv4 is not None
    exposition = daemon.metrics()
    named_before = metric_value(exposition, "gatewayd_classifier_decisions_total", method="quic-sni")
    flows_before = metric_value(exposition, "gatewayd_flows_total", app="wechat", group="sales")
    datagrams = quic_initial.client_initials(site.hostname, version=quic_initial.VERSION_Q050, split=True)
    proc = lab.run("sales", ["python3", "-c", SEND_FROM_ONE_SOCKET, site.ipv4, "443",
                             *(d.hex() for d in datagrams)], timeout=10, check=False)
    assert proc.stdout.strip() == "2", proc.stdout + proc.stderr  # IM is allowed for sales: both echoed
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_classifier_decisions_total", method="quic-sni") >= named_before + 1
    assert metric_value(exposition, "gatewayd_flows_total", app="wechat", group="sales") >= flows_before + 1


def test_dns_over_tcp_answer_teaches_the_kernel(tcp_only_office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = tcp_only_office
    first, site = SITE["news"], SITE["steam"]
    # One TCP connection, two queries: the first answer decides the DNS flow, so the
    # second answer reaches the classifier only through the reply-direction tcp sport 53 rule.
    proc = lab.run("finance", ["dig", f"@{DNS_SERVER_V4}", "+tcp", "+keepopen", "+time=2", "+tries=1", "+short",
                               first.hostname, "A", site.hostname, "A"], timeout=8, check=False)
    assert site.ipv4 in proc.stdout, proc.stdout + proc.stderr
    # Nobody in this lab looked the name up over UDP: only the TCP answer can have taught this.
    daemon.wait_for_learned_writes()
    assert site.ipv4 in daemon.nft("list", "map", "inet", "gatewayd", "learned_v4")
