"""The built-in catalog on crafted flows (apps nDPI has no capture of) and on nDPI's real captures.

Crafted flows are built with scapy as a client would send them; each test
checks app, method and evidence, so a missing domain, signature or method
fails here.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

import pytest
from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Raw

from gatewayd.classify import offline
from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab import quic_initial
from gatewayd.lab.captures import DEVELOPMENT_SET
from gatewayd.policy.app_tree import ancestors
from gatewayd.policy.applications import load_catalog
from gatewayd.policy.model import Application

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_pcaps import PCAPS, label_key, labels

CLIENT, SERVER, RESOLVER = "192.0.2.10", "203.0.113.80", "198.51.100.53"


def builtin_apps() -> list[Application]:
    issues: list = []
    apps = load_catalog(None, issues)
    assert not issues, issues
    return list(apps.values())


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(ClassifierTables.build(builtin_apps()), dns_flow_takes_queried_app=False)


def client_hello_record(name: str) -> bytes:
    hello = quic_initial.client_hello(name, alpn=("h2", "http/1.1"))
    return b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello


def tls_flow(name: str, sport: int, server: str = SERVER) -> list[bytes]:
    return [bytes(IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags="S", seq=1000)),
            bytes(IP(src=server, dst=CLIENT) / TCP(sport=443, dport=sport, flags="SA", seq=5000, ack=1001)),
            bytes(IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags="A", seq=1001, ack=5001)),
            bytes(IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=5001)
                  / Raw(client_hello_record(name)))]


def http_flow(host: str, path: str, sport: int, body: bytes = b"", extra: str = "") -> list[bytes]:
    request = f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode() + body
    return [bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=80, flags="S", seq=1)),
            bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=80, flags="PA", seq=2, ack=1) / Raw(request))]


def decide(classifier: Classifier, packets: list[bytes]) -> Decision:
    decisions = [d for d in (classifier.on_packet(p, 50.0 + i * 0.01).decision for i, p in enumerate(packets)) if d]
    assert len(decisions) == 1, decisions
    return decisions[0]


@pytest.mark.parametrize("name,app", [
    ("www.youku.com", "youku"), ("upos-sz-mirrorcos.bilivideo.com", "bilibili"), ("api.bilibili.com", "bilibili"),
    ("www.douyin.com", "douyin"), ("v26-web.douyinvod.com", "douyin"), ("work.weixin.qq.com", "wecom"),
    ("wangwang.taobao.com", "aliwangwang"), ("g.alicdn.com", "alibaba"), ("www.taobao.com", "taobao"),
    ("basic.10jqka.com.cn", "tonghuashun"), ("quote.eastmoney.com", "eastmoney"), ("www.pptv.com", "pplive"),
    ("www.xunlei.com", "thunder"), ("web.wechat.com", "wechat"), ("v.qq.com", "tencentvideo"),
    ("www.iqiyi.com", "iqiyi"), ("dns.google", "doh_dot"), ("www.futunn.com", "futu"),
    # public resolvers by their exact published names; the operator's other hosts stay what they were
    ("doh.ffmuc.net", "doh_dot"), ("dns10.quad9.net", "doh_dot"), ("odvr.nic.cz", "doh_dot"),
    ("www.nic.cz", None), ("ffmuc.net", None), ("x.doh.ffmuc.net", None),
    ("vpn-api.proton.me", "protonvpn"), ("mail.proton.me", None),
    ("media.fmct2-1.fna.whatsapp.net", "whatsappfiles"),
    ("katalk.kakao.com", "kakaotalk"), ("uts-front.line-apps.com", "line"), ("obs.line-scdn.net", "line"),
    ("dl-obs.official.line.naver.jp", "line"), ("www.naver.jp", None),
    ("blog.google", "google"), ("dns.google", "doh_dot"), ("ocsp.pki.goog", None), ("google.example.com", None),
    # Google's country search domains and its Network Error Logging collector; not a look-alike
    ("www.google.co.jp", "google"), ("www.google.com.au", "google"), ("b1.nel.goog", "google"),
    ("google.co.jp.example.net", None), ("www.google-analytics.example", None),
    ("dnses.alekberg.net", "doh_dot"), ("fi.doh.dns.snopyta.org", "doh_dot"), ("anycast.uncensoreddns.org", "doh_dot"),
    ("snopyta.org", None), ("www.uncensoreddns.org", None),
    ("kv601.prod.do.dsp.mp.microsoft.com", "windowsupdate"), ("wustat.windows.com", "windowsupdate"),
    ("v10.events.data.microsoft.com", "microsoft"),
    # named as nDPI names them (bench/catalog_vs_ndpi.py), the most specific id first
    ("mmsns.qpic.cn", "wechat"), ("puui.qpic.cn", "qq"), ("mat1.gtimg.com", "qq"), ("res.wx.qq.com", "wechat"),
    ("video.fmct2-3.fna.fbcdn.net", "fbookreelstory"), ("www.fbcdn.net", "facebook"),
    ("maps.googleapis.com", "googleservices"), ("maps.google.com", "googlemaps"), ("kids.youtube.com", "youtubekids"),
    ("officeapps.live.com", "microsoft365"), ("smtp.office365.com", "outlook"), ("login.live.com", "microsoft"),
    ("cs9.wac.phicdn.net", "windowsupdate"), ("eu.battle.net", "blizzard"), ("oss-cn-hangzhou.aliyuncs.com", "alibaba"),
    ("sheets.google.com", "google"),
])
def test_tls_sni_of_catalog_apps(classifier: Classifier, name: str, app: str | None) -> None:
    decision = decide(classifier, tls_flow(name, 40000))
    assert (decision.app, decision.method, decision.evidence) == (app or "unknown", "tls-sni", name)
    assert "alpn=h2,http/1.1" in decision.details


@pytest.mark.parametrize(("app", "parents"), [
    ("qqmusic", ("qq",)), ("sinaweibo", ("sina",)), ("aliwangwang", ("taobao", "alibaba")),
    ("starcraft", ("blizzard",)), ("worldofwarcraft", ("blizzard",)), ("googleworkspace", ("google",)),
    ("fbookreelstory", ("facebook",)), ("youtubekids", ("youtube",)), ("wechat", ()), ("dingtalk", ()),
])
def test_sub_apps_name_the_parent_ndpi_names_their_hosts(app: str, parents: tuple[str, ...]) -> None:
    catalog = {entry.id: entry for entry in builtin_apps()}
    assert ancestors(app, catalog) == parents


def test_google_meet_media_networks_name_a_call_on_its_ports_only() -> None:
    tables = ClassifierTables.build(builtin_apps())
    relay = ipaddress.ip_address("142.250.82.99").packed
    for proto, port in ((17, 3478), (17, 19302), (17, 19309)):
        match = tables.addresses.lookup(relay, proto, port)
        assert match is not None and match.app == "googlecall", (proto, port)
    assert tables.addresses.lookup(relay, 6, 443) is None  # the same network's web traffic is not a call
    assert tables.addresses.lookup(relay, 17, 19310) is None
    assert tables.addresses.lookup(ipaddress.ip_address("2001:4860:4864:5::9").packed, 17, 19305) is not None


def test_quic_douyin_then_tcp_only_marks_the_same_app(classifier: Classifier) -> None:
    datagrams = quic_initial.client_initials("www.douyin.com", split=True)
    packets = [bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=51000, dport=443) / d) for d in datagrams]
    decision = decide(classifier, packets)
    assert (decision.app, decision.method) == ("douyin", "quic-sni")


def test_dns_answer_with_cname_chain_teaches_bilibili(classifier: Classifier) -> None:
    query = IP(src=CLIENT, dst=RESOLVER) / UDP(sport=33333, dport=53) / DNS(id=7, qd=DNSQR(qname="www.bilibili.com"))
    classifier.on_packet(bytes(query), 9.9)  # an answer teaches only what a query on its flow asked
    answer = (IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=33333)
              / DNS(id=7, qr=1, qd=DNSQR(qname="www.bilibili.com"),
                    an=[DNSRR(rrname="www.bilibili.com", type="CNAME", rdata="a.w.bilicdn1.com", ttl=60),
                        DNSRR(rrname="a.w.bilicdn1.com", type="A", rdata=SERVER, ttl=120)]))
    outcome = classifier.on_packet(bytes(answer), 10.0)
    assert [(str(e.address), e.app, e.ttl, e.name) for e in outcome.learned] == [
        (SERVER, "bilibili", 120, "www.bilibili.com")]
    first = classifier.on_packet(tls_flow("ignored.example", 40001)[0], 11.0).decision
    assert first == Decision("bilibili", "dns-learned", "www.bilibili.com")


def teach_youku_address(classifier: Classifier, sport: int, query_id: int) -> None:
    """A query for www.youku.com at 9.9 and its answer (SERVER) at 10.0, from the resolver."""
    query = IP(src=CLIENT, dst=RESOLVER) / UDP(sport=sport, dport=53) / DNS(id=query_id,
                                                                          qd=DNSQR(qname="www.youku.com"))
    classifier.on_packet(bytes(query), 9.9)
    answer = (IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=sport)
              / DNS(id=query_id, qr=1, qd=DNSQR(qname="www.youku.com"),
                    an=DNSRR(rrname="www.youku.com", rdata=SERVER, ttl=300)))
    classifier.on_packet(bytes(answer), 10.0)


def test_ech_falls_back_to_what_dns_taught(classifier: Classifier) -> None:
    syn = tls_flow("unused", 40002)[0]
    assert classifier.on_packet(syn, 9.0).decision is None  # address not known yet: queued
    teach_youku_address(classifier, 33334, 8)  # the answer arrives while the flow is still open
    hello = quic_initial.client_hello("cloudflare-ech.com")
    ech = struct.pack("!HHB", 0xFE0D, 1, 0)  # an (outer) encrypted_client_hello extension
    body = hello[4:]
    extensions_length = struct.unpack_from("!H", body, 2 + 32 + 1 + 4 + 2)[0]
    at = 2 + 32 + 1 + 4 + 2
    body = body[:at] + struct.pack("!H", extensions_length + len(ech)) + body[at + 2:] + ech
    record = b"\x16\x03\x01" + struct.pack("!H", len(body) + 4) + b"\x01" + len(body).to_bytes(3, "big") + body
    packet = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=443, flags="PA", seq=1001) / Raw(record))
    decision = classifier.on_packet(packet, 11.0).decision
    assert decision is not None and decision.app == "youku"
    assert decision.method == "dns-learned" and "ech outer=cloudflare-ech.com" in decision.details


def test_thunder_http_post_and_two_way_binary(classifier: Classifier) -> None:
    body = b"\x36\x00\x00\x00" + bytes(range(40))
    decision = decide(classifier, http_flow("hub5p.sandai.net.example", "/", 40010, body,
                                            "Content-Type: application/octet-stream\r\n"))
    assert (decision.app, decision.method, decision.evidence) == ("thunder", "signature", "thunder")
    # Binary peer exchange: one direction alone is not enough.
    request = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=15000, dport=3076) / Raw(b"\x32\x00\x00\x00" + bytes(20)))
    reply = bytes(IP(src=SERVER, dst=CLIENT) / UDP(sport=3076, dport=15000) / Raw(b"\x32\x00\x00\x00" + bytes(12)))
    assert classifier.on_packet(request, 60.0).decision is None
    assert classifier.on_packet(reply, 60.1).decision == Decision("thunder", "signature", "thunder")


def test_pplive_udp_signature(classifier: Classifier) -> None:
    payload = b"\xe9\x03\x41\x01\x98\xab\x01\x02" + bytes(44)
    packet = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=5041, dport=5041) / Raw(payload))
    assert classifier.on_packet(packet, 1.0).decision == Decision("pplive", "signature", "pplive")


def test_http_url_rule_beats_host_and_keyword(classifier: Classifier) -> None:
    decision = decide(classifier, http_flow("d.pcs.baidu.com", "/rest/2.0/pcs/file?method=download", 40020))
    assert (decision.app, decision.method, decision.evidence) == (
        "baidunetdisk", "http-url", "*.baidu.com/rest/2.0/pcs/")
    decision = decide(classifier, http_flow("tracker.example.org", "/announce?info_hash=%12%34&peer_id=x", 40021))
    assert (decision.app, decision.method, decision.evidence) == ("bittorrent", "http-url", "info_hash=")
    decision = decide(classifier, http_flow("www.taobao.com", "/index.html", 40022))
    assert (decision.app, decision.method) == ("taobao", "http-host")
    # Windows Update from a cache server addressed by IP: only the path says what it is.
    decision = decide(classifier, http_flow("198.51.100.7", "/filestreamingservice/files/0f1e?P1=1&P2=404", 40023))
    assert (decision.app, decision.method) == ("windowsupdate", "http-url")
    decision = decide(classifier, http_flow("198.51.100.7", "/files/0f1e", 40024))
    assert decision.app == "unknown"


def test_unanswered_dns_query_still_names_its_app() -> None:
    classifier = Classifier(ClassifierTables.build(builtin_apps()), max_packets=2)
    query = bytes(IP(src=CLIENT, dst=RESOLVER) / UDP(sport=34000, dport=53)
                  / DNS(id=9, qd=DNSQR(qname="www.youku.com")))
    assert classifier.on_packet(query, 1.0).decision is None
    decision = classifier.on_packet(query, 2.0).decision  # retry, still no answer: give-up time
    assert decision == Decision("youku", "dns", "www.youku.com")


def test_signatures_do_not_run_on_dns_flows(classifier: Classifier) -> None:
    # A DNS answer whose id happens to look like Kad (0xe4 0x..): still DNS, not eDonkey.
    answer = bytes(IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=34001)
                   / DNS(id=0xE411, qr=1, qd=DNSQR(qname="x.example.org")))
    decision = classifier.on_packet(answer, 1.0).decision
    assert decision is not None and decision.method == "dns"


# --- nDPI's captures through the built-in catalog --------------------------------------------

needs_pcaps = pytest.mark.captures(DEVELOPMENT_SET)


@needs_pcaps
@pytest.mark.parametrize("capture,app,methods,minimum_share", [
    ("gnutella.pcap", "gnutella", {"signature", "port"}, 0.95),
    ("whatsapp.pcap", "whatsapp", {"signature", "address"}, 1.0),
    ("teamviewer.pcap", "teamviewer", {"signature"}, 1.0),
    ("rdp.pcap", "rdp", {"signature"}, 1.0),
    ("pptp.pcap", "pptp", {"signature"}, 1.0),
    ("ipsec_isakmp_esp.pcap", "ipsec", {"signature", "port"}, 1.0),
    ("telegram.pcap", "telegram", {"address"}, 1.0),
    ("dropbox.pcap", "dropbox", {"signature", "port", "dns", "tls-sni", "dns-learned"}, 1.0),
    ("stun_wa_call.pcapng", "whatsappcall", {"address", "signature"}, 1.0),  # relays by address, peers by call endpoint
    ("source_engine.pcap", "source_engine", {"signature"}, 1.0),
    ("openvpn.pcap", "openvpn", {"signature"}, 0.9),
    ("pop3.pcap", "pop3", {"signature", "port"}, 1.0),
    ("bt_search.pcap", "bittorrent", {"signature"}, 1.0),
])
def test_builtin_catalog_on_real_captures(capture: str, app: str, methods: set[str], minimum_share: float) -> None:
    # Through the offline replay (what `gatewayd classify` prints), flows matched without direction.
    reports = {("tcp" if r.proto == "tcp" else r.proto, frozenset({(r.src, r.sport), (r.dst, r.dport)})): r
               for r in offline.classify_capture(PCAPS / capture, builtin_apps())}
    rows = [row for row in labels(capture) if row["app"] == app]
    assert rows
    good = [row for row in rows if (r := reports.get(label_key(row))) is not None and r.app == app]
    assert len(good) >= minimum_share * len(rows), (len(good), len(rows))
    assert {reports[label_key(row)].method for row in good} <= methods
