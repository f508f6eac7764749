"""Apps' own protocols through the real daemon: QQ's OICQ and iQIYI's PPStream over UDP, calls over
STUN/TURN, a meeting client's own media to the server its TLS named, AnyDesk named by its server's certificate.

The payloads are built from each protocol's format (gatewayd/lab/app_packets.py).
office.yaml blocks IM outside the front desk (finance may not use QQ, sales may)
and puts voice-video in the realtime class; this lab's copy adds one rule first,
"calls of an unknown app are default class", so a call lands in realtime only
if the gateway named its app -- the generic STUN carrier alone does not.
Traffic stays in the lab's namespaces; addresses are documentation ranges.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab import app_packets, quic_initial, traffic
from gatewayd.lab.certificate_factory import made_certificate
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.kernel_view import KernelVerdict, decode_mark, flow_mark
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES, Site
from gatewayd.lab.topology import INTERNET, Lab
from gatewayd.policy.loader import load_policy

pytestmark = pytest.mark.integration

QQ_PORT, STUN_PORT = 8000, 3478
# A call relay the office's clients find through DNS: a name under zoom.us (the catalog's Zoom).
RELAY_V4 = "203.0.113.80"
RELAY = Site("zoom-relay", "turnrelay.zoom.us", RELAY_V4, "2001:db8:100::80")
UNNAMED_SERVER = str(DEFAULT_SITES["news"].ipv4)  # an address no app owns and nobody looked up here
# Another such address, for a flow no earlier test's call or QQ traffic went to.
UNTOUCHED_SERVER = str(DEFAULT_SITES["erp"].ipv4)
UNATTRIBUTED_CALLS_RULE = """\
  - name: unattributed-calls
    apps: [stun]
    class: default

"""


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon, Plan]]:
    policy_path = tmp_path_factory.mktemp("policy") / "office.yaml"
    text, added = re.subn(r"(?m)^rules:\n", "rules:\n" + UNATTRIBUTED_CALLS_RULE, OFFICE_POLICY.read_text(), count=1)
    assert added == 1, "office.yaml has no rules section to extend"
    policy_path.write_text(text)
    plan = compile_plan(load_policy(str(policy_path)))
    assert OFFICE_HOSTS["finance"].ipv4 and OFFICE_HOSTS["sales"].ipv4
    with Lab(hosts=OFFICE_HOSTS, sites=(*DEFAULT_SITES.values(), RELAY)) as lab:
        daemon = GatewayDaemon(lab, policy_path).start()
        try:
            yield lab, daemon, plan
        finally:
            daemon.stop()


def kernel_verdict(lab: Lab, plan: Plan, host: str, server: str, port: int) -> KernelVerdict:
    source = OFFICE_HOSTS[host].ipv4
    assert source is not None
    mark = flow_mark(lab, source, server, port, protocol="udp")
    assert mark is not None, f"no conntrack entry for {host} -> {server}:{port}"
    return decode_mark(plan, mark)


def realtime_upload_bytes(daemon: GatewayDaemon) -> float:
    return metric_value(daemon.metrics(), "gatewayd_class_bytes_total", interface="wan0", **{"class": "realtime"})


def test_qq_protocol_is_blocked_where_im_is_and_passes_where_it_is_allowed(
        office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    login = app_packets.oicq(app_packets.QQ_LOGIN, 1, bytes(range(48)))
    # The path and the echo work for finance: a datagram of the same size that is not QQ comes back.
    other = traffic.udp_send(lab, "finance", UNNAMED_SERVER, QQ_PORT, payload=bytes(len(login)),
                             count=2, expect_reply=True)
    assert other.replies == 2, other
    hits_before = metric_value(daemon.metrics(), "gatewayd_rule_hits_total", rule="im-front-desk-only")
    blocked = traffic.udp_send(lab, "finance", UNNAMED_SERVER, QQ_PORT, payload=login, count=3,
                               expect_reply=True, timeout=1.5)
    assert blocked.sent == 3 and blocked.replies == 0, blocked
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_rule_hits_total", rule="im-front-desk-only") > hits_before
    # The front desk may use IM: the same packets pass, named qq by the kernel's verdict.
    flows_before = metric_value(exposition, "gatewayd_flows_total", app="qq", group="sales")
    allowed = traffic.udp_send(lab, "sales", UNNAMED_SERVER, QQ_PORT, payload=login, count=3, expect_reply=True)
    assert allowed.replies == 3, allowed
    assert kernel_verdict(lab, plan, "sales", UNNAMED_SERVER, QQ_PORT).app == "qq"
    assert metric_value(daemon.metrics(), "gatewayd_flows_total", app="qq", group="sales") >= flows_before + 1


def test_call_to_a_relay_learned_from_dns_is_realtime(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    answer = traffic.dns_query(lab, "finance", RELAY.hostname)
    assert answer.status == "NOERROR" and RELAY_V4 in answer.answers, answer
    binding = app_packets.stun_message(app_packets.STUN_BINDING_REQUEST,
                                       [app_packets.ice_controlling(), (app_packets.STUN_USERNAME, b"abcd:efgh")])
    before = realtime_upload_bytes(daemon)
    call = traffic.udp_send(lab, "finance", RELAY_V4, STUN_PORT, payload=binding, count=5, expect_reply=True)
    assert call.replies == 5, call
    verdict = kernel_verdict(lab, plan, "finance", RELAY_V4, STUN_PORT)
    assert (verdict.app, verdict.qos_class, verdict.blocked) == ("zoom", "realtime", False)
    # tc's own counter of the realtime class on the WAN side carried the call's upload.
    assert realtime_upload_bytes(daemon) - before >= 5 * (28 + len(binding))


def test_stun_nobody_can_name_stays_out_of_realtime(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    """The control for the test above: plain STUN to an unnamed address is the generic carrier."""
    lab, daemon, plan = office
    binding = app_packets.stun_message(app_packets.STUN_BINDING_REQUEST, [app_packets.ice_controlling()],
                                       transaction_id=bytes(range(20, 32)))
    before = realtime_upload_bytes(daemon)
    # Paced like STUN's transactions: plain STUN is named only at max_packets, and a burst
    # would reach the kernel's own give-up (ct packets > max_packets) before that verdict.
    call = traffic.udp_send(lab, "finance", UNNAMED_SERVER, STUN_PORT, payload=binding, count=10, paced=True,
                            timeout=1.0)
    assert call.replies == 10, call
    verdict = kernel_verdict(lab, plan, "finance", UNNAMED_SERVER, STUN_PORT)
    assert (verdict.app, verdict.qos_class) == ("stun", "default")
    assert realtime_upload_bytes(daemon) - before < 10 * (28 + len(binding))


def test_media_to_the_server_the_client_named_takes_that_apps_name(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    """A meeting client's own UDP media (no STUN, no format anyone knows) to the server its TLS just named."""
    lab, _daemon, plan = office
    site = DEFAULT_SITES["dingtalk"]  # an office app with calls; nobody here looked its name up
    assert site.ipv4 is not None
    hello = quic_initial.client_hello(site.hostname, alpn=("h2",))
    record = b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello
    signalling = traffic.tcp_connect(lab, "sales", site.ipv4, 443, payload=record, expect_bytes=1, timeout=3.0)
    assert signalling.connected, signalling
    media = bytes((index * 29 + 3) & 0xFF for index in range(160))
    # Paced, as media is: the classifier names it at max_packets, before the kernel's own give-up.
    call = traffic.udp_send(lab, "sales", site.ipv4, QQ_PORT, payload=media, count=10, paced=True, timeout=1.0)
    assert call.replies == 10, call
    assert kernel_verdict(lab, plan, "sales", site.ipv4, QQ_PORT).app == "dingtalk"
    # The control: another client that never named that server sends the same datagrams.
    other = traffic.udp_send(lab, "finance", site.ipv4, QQ_PORT, payload=media, count=10, paced=True, timeout=1.0)
    assert other.replies == 10, other
    assert kernel_verdict(lab, plan, "finance", site.ipv4, QQ_PORT).app == "unknown"


@pytest.mark.parametrize(("realm", "app", "port"), [
    ("turn2.signal.org", "signalvoip", 7),
    ("turner.facebook", "facebookvoip", 443),  # under Meta's brand TLD: a Messenger call
])
def test_call_named_by_its_turn_realm_is_realtime(office: tuple[Lab, GatewayDaemon, Plan], realm: str, app: str,
                                                  port: int) -> None:
    """No address evidence at all: the TURN server's REALM names the call.

    Each case has a port of its own (not the control's 3478): a named call's endpoints name later STUN to them."""
    lab, daemon, plan = office
    allocate = app_packets.stun_message(app_packets.TURN_ALLOCATE_REQUEST,
                                        [app_packets.requested_transport_udp(), app_packets.realm(realm)])
    before = realtime_upload_bytes(daemon)
    call = traffic.udp_send(lab, "finance", UNNAMED_SERVER, port, payload=allocate, count=5, expect_reply=True)
    assert call.replies == 5, call
    verdict = kernel_verdict(lab, plan, "finance", UNNAMED_SERVER, port)
    assert (verdict.app, verdict.qos_class) == (app, "realtime")
    # The first packet waits in the queue for its verdict, so every one of them is in realtime.
    assert realtime_upload_bytes(daemon) - before >= 5 * (28 + len(allocate))


def test_iqiyi_peer_datagrams_are_video_in_the_bulk_class(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    """PPStream on a port and address that say nothing: the signature alone names iQIYI (video -> bulk)."""
    lab, _daemon, plan = office
    datagram = app_packets.ppstream_datagram()
    peer = traffic.udp_send(lab, "finance", UNTOUCHED_SERVER, QQ_PORT, payload=datagram, count=3, expect_reply=True)
    assert peer.replies == 3, peer
    verdict = kernel_verdict(lab, plan, "finance", UNTOUCHED_SERVER, QQ_PORT)
    assert (verdict.app, verdict.qos_class, verdict.blocked) == ("iqiyi", "bulk", False)


def test_teams_call_over_tcp_is_realtime(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    """ICE over TCP (RFC 6544): MS-ICE2 STUN in RFC 4571 framing names a Teams call on a TCP flow."""
    lab, daemon, plan = office
    binding = app_packets.stun_message(app_packets.STUN_BINDING_REQUEST,
                                       [(app_packets.STUN_USERNAME, b"abcd:efgh"), (0x8054, bytes(4)),
                                        (0x8070, b"\x00\x00\x00\x03")])  # MS-ICE2 attributes
    framed = len(binding).to_bytes(2, "big") + binding
    before = realtime_upload_bytes(daemon)
    # The lab's web server on tcp/80 reads the bytes and answers or closes: the verdict comes first.
    traffic.tcp_connect(lab, "finance", UNNAMED_SERVER, 80, payload=framed, expect_bytes=1, timeout=2.0)
    source = OFFICE_HOSTS["finance"].ipv4
    assert source is not None
    mark = flow_mark(lab, source, UNNAMED_SERVER, 80, protocol="tcp")
    assert mark is not None, "no conntrack entry for the call's TCP flow"
    verdict = decode_mark(plan, mark)
    assert (verdict.app, verdict.qos_class, verdict.blocked) == ("skype_teamscall", "realtime", False)
    # The queued segment itself waited for that verdict: tc's realtime class carried it upstream.
    assert realtime_upload_bytes(daemon) - before >= len(framed)


# A TLS 1.2 server for one test: answers each ClientHello with its certificate, for at most
# 60 s (bounded even if the test dies without stopping it; the lab kills it at cleanup too).
TLS_SERVER = r"""
import socket, ssl, sys, time
address, port, certificate, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
context.maximum_version = ssl.TLSVersion.TLSv1_2
context.set_ciphers("AES128-SHA:@SECLEVEL=0")  # the test's hello offers RSA key exchange only
server = socket.create_server((address, port))
server.settimeout(1.0)
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        continue
    connection.settimeout(2.0)
    try:
        context.wrap_socket(connection, server_side=True)
    except (OSError, ssl.SSLError):
        pass
    connection.close()
"""
ANYDESK_PORT = 6443  # neither AnyDesk's published ports nor any other app's: only the certificate can name it


def test_anydesk_is_named_by_its_servers_certificate(office: tuple[Lab, GatewayDaemon, Plan],
                                                     tmp_path: Path) -> None:
    lab, _daemon, plan = office
    made = made_certificate("philandro Software GmbH", "AnyNet Root CA", "AnyNet Relay")
    (tmp_path / "relay.pem").write_bytes(made.certificate_pem)
    (tmp_path / "relay.key").write_bytes(made.key_pem)
    server = lab.popen(INTERNET, [sys.executable, "-c", TLS_SERVER, UNNAMED_SERVER, str(ANYDESK_PORT),
                                  str(tmp_path / "relay.pem"), str(tmp_path / "relay.key")],
                       log_name="anydesk-relay.log")
    try:
        deadline = time.monotonic() + 10
        while "ready" not in (lab.workdir / "anydesk-relay.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        # AnyDesk's hello names no server: the classifier waits for the server's certificate.
        answer = traffic.tcp_connect(lab, "finance", UNNAMED_SERVER, ANYDESK_PORT,
                                     payload=app_packets.tls_client_hello_without_name(), expect_bytes=600,
                                     timeout=3.0)
        assert b"AnyNet Relay" in answer.received, answer
    finally:
        server.terminate()
        server.wait(timeout=5)
    source = OFFICE_HOSTS["finance"].ipv4
    assert source is not None
    mark = flow_mark(lab, source, UNNAMED_SERVER, ANYDESK_PORT, protocol="tcp")
    assert mark is not None, "no conntrack entry for the AnyDesk session"
    assert decode_mark(plan, mark).app == "anydesk"
