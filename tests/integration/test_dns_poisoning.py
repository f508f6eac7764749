"""Nobody on the LAN can poison what the gateway learns from DNS (issue 12, item 1).

The real daemon runs policies/office.yaml, which names the lab's resolver
(203.0.113.53) in `dns.resolvers`. The attacks:
  * a guest asks a resolver of its own (a rogue server on the lab internet,
    203.0.113.66, which answers whatever it likes with the right ids) that
    "erp.example.com is the Youku server": Youku must stay blocked for guests;
  * the reverse, "web.wechat.com is the CRM server": CRM and ERP must stay
    allowed for finance;
  * an off-path forgery of the named resolver's answer, sent from the WAN side
    with the resolver's own source address and the client's port, but the wrong
    transaction id (the real answer is held back so the query still waits). It
    comes from the WAN, so the LAN guard's anti-spoofing, which would drop a
    forged source on the LAN, does not hide it from the classifier.
Afterwards the legitimate resolver's answers still teach.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.kernel_view import learned_app
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES, DNS_SERVER_V4
from gatewayd.lab.topology import INTERNET, Lab
from gatewayd.lab.traffic import Outcome
from gatewayd.policy.loader import load_policy

pytestmark = pytest.mark.integration

SITE = dict(DEFAULT_SITES)
ROGUE_RESOLVER = "203.0.113.66"  # not in dns.resolvers
BLOCKED = {Outcome.RESET, Outcome.REFUSED}
LIES = {SITE["erp"].hostname: SITE["youku"].ipv4, SITE["wechat"].hostname: SITE["crm"].ipv4}

# A resolver that answers every A query with LIES (the right id and question: a real server of
# the attacker's, not a forger). Bounded: it stops by itself after two minutes.
ROGUE_SERVER = r"""
import socket, sys, time
from scapy.all import DNS, DNSRR
lies = dict(arg.split("=") for arg in sys.argv[2:])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
sock.settimeout(0.5)
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        data, peer = sock.recvfrom(4096)
    except socket.timeout:
        continue
    query = DNS(data)
    name = query.qd.qname.decode().rstrip(".")
    reply = DNS(id=query.id, qr=1, aa=1, rd=query.rd, ra=1, qd=query.qd,
                an=DNSRR(rrname=name, type="A", ttl=3600, rdata=lies[name]) if name in lies else None)
    sock.sendto(bytes(reply), peer)
"""

# The client side of the off-path attempt: one query from a known port, answer not awaited.
SEND_QUERY = r"""
import socket, sys
from scapy.all import DNS, DNSQR
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[2])))
sock.sendto(bytes(DNS(id=int(sys.argv[3]), rd=1, qd=DNSQR(qname=sys.argv[4]))), (sys.argv[1], 53))
"""

# The forger on the WAN side: the named resolver's address and the client's port, the wrong id.
FORGE_ANSWER = r"""
import sys
from scapy.all import DNS, DNSQR, DNSRR, IP, UDP, send
resolver, client, port, txid, name, address = sys.argv[1:7]
for guess in range(3):  # a few guesses, none of them the query's id
    send(IP(src=resolver, dst=client) / UDP(sport=53, dport=int(port))
         / DNS(id=(int(txid) + 1 + guess) & 0xFFFF, qr=1, aa=1, qd=DNSQR(qname=name),
               an=DNSRR(rrname=name, type="A", ttl=3600, rdata=address)), verbose=False)
"""


@pytest.fixture(scope="module")
def office() -> Iterator[tuple[Lab, GatewayDaemon, Plan]]:
    with Lab(hosts=OFFICE_HOSTS) as lab:
        lab.run(INTERNET, ["ip", "addr", "add", f"{ROGUE_RESOLVER}/32", "dev", "lo"])
        rogue = lab.popen(INTERNET, [sys.executable, "-c", ROGUE_SERVER, ROGUE_RESOLVER,
                                     *(f"{name}={address}" for name, address in LIES.items())],
                          log_name="rogue_dns.log")
        wait_until_ready(lab.workdir / "rogue_dns.log")
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        try:
            yield lab, daemon, compile_plan(load_policy(str(OFFICE_POLICY)))
        finally:
            daemon.stop()
            rogue.kill()


def wait_until_ready(log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and "ready" in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"the rogue resolver did not start: {log.read_text() if log.exists() else 'no log'}")


def https_without_lookup(lab: Lab, host: str, name: str, address: str) -> bool:
    """A TLS request for `name` to `address` (curl --resolve: no DNS lookup that could repair anything)."""
    result = lab.run(host, ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                            "--resolve", f"{name}:443:{address}", f"https://{name}/"], timeout=10, check=False)
    return result.stdout == "200"


def answers(daemon: GatewayDaemon, result: str) -> float:
    return metric_value(daemon.metrics(), "gatewayd_dns_answers_total", result=result)


def test_a_guests_own_resolver_cannot_turn_youku_into_erp(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    youku = SITE["youku"]
    lie = traffic.dns_query(lab, "guest", SITE["erp"].hostname, server=ROGUE_RESOLVER)
    assert lie.addresses == [youku.ipv4], lie  # the lie did reach the guest, through the gateway
    daemon.wait_for_learned_writes()  # had it taught anything, the kernel would hold it now
    assert learned_app(lab, plan, youku.ipv4) != "erp"
    # Youku's app goes straight to its server: had the lie been learned, the kernel would
    # call the first packet ERP and let it through; the SNI says Youku, blocked for guests.
    assert not https_without_lookup(lab, "guest", youku.hostname, youku.ipv4)
    # And a guest who looks Youku up properly is blocked as before.
    assert traffic.https_get(lab, "guest", youku.hostname, ip_version=4, timeout=5).error in BLOCKED
    assert answers(daemon, "not_a_resolver") >= 1


def test_a_lie_about_wechat_cannot_block_crm_and_erp_for_finance(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    crm = SITE["crm"]
    lie = traffic.dns_query(lab, "finance", SITE["wechat"].hostname, server=ROGUE_RESOLVER)
    assert lie.addresses == [crm.ipv4], lie
    daemon.wait_for_learned_writes()
    assert learned_app(lab, plan, crm.ipv4) != "wechat"
    assert traffic.https_get(lab, "finance", crm.hostname, ip_version=4, timeout=5).ok
    assert traffic.https_get(lab, "finance", SITE["erp"].hostname, ip_version=4, timeout=5).ok
    daemon.wait_for_learned_writes()
    assert learned_app(lab, plan, crm.ipv4) == "crm"  # the named resolver's answer taught it


def test_an_off_path_answer_with_the_wrong_id_teaches_nothing(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    guest, port, txid = OFFICE_HOSTS["guest"].ipv4, 47000, 0x5151
    victim = SITE["erp"].hostname
    # Hold the real answer back at the resolver, so the query still waits when the forgery comes.
    lab.run(INTERNET, ["nft", "-f", "-"], input=(
        "table inet hold_answer {\n chain input {\n  type filter hook input priority 0;\n"
        f"  ip saddr {guest} udp sport {port} udp dport 53 drop\n }}\n}}\n"))
    try:
        before = answers(daemon, "mismatch")
        lab.exec_python("guest", SEND_QUERY, [DNS_SERVER_V4, str(port), str(txid), victim])
        lab.exec_python(INTERNET, FORGE_ANSWER, [DNS_SERVER_V4, guest, str(port), str(txid), victim,
                                                 SITE["youku"].ipv4], timeout=20)
        daemon.wait_for_learned_writes()
        assert learned_app(lab, plan, SITE["youku"].ipv4) != "erp"
        assert not https_without_lookup(lab, "guest", SITE["youku"].hostname, SITE["youku"].ipv4)
        assert answers(daemon, "mismatch") >= before + 3  # seen, and refused for its id
    finally:
        lab.run(INTERNET, ["nft", "delete", "table", "inet", "hold_answer"], check=False)


def test_the_named_resolver_still_teaches(office: tuple[Lab, GatewayDaemon, Plan]) -> None:
    lab, daemon, plan = office
    before = answers(daemon, "learned")
    answer = traffic.dns_query(lab, "sales", SITE["bilibili"].hostname)
    assert SITE["bilibili"].ipv4 in answer.addresses
    daemon.wait_for_learned_writes()
    assert learned_app(lab, plan, SITE["bilibili"].ipv4) == "bilibili"
    assert answers(daemon, "learned") >= before + 1
    queued = daemon.metrics()
    assert metric_value(queued, "gatewayd_dns_queued_packets_total", kind="query") >= 1
    assert metric_value(queued, "gatewayd_dns_queued_packets_total", kind="answer") >= 1
