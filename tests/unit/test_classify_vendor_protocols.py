"""Chinese vendors' own protocols (Tencent games' TGCP, iQIYI's PPStream, Alibaba Cloud, Mi Push,
WeChat's mmtls, DingTalk's opening) and the Chinese portals' domains, on packets built from each format
(never cut from a capture)."""

from __future__ import annotations

import struct

import pytest
from scapy.all import IP, TCP, UDP, Raw

from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.signatures import SIGNATURES
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.app_packets import ppstream_datagram
from gatewayd.policy.applications import load_catalog
from gatewayd.policy.errors import PolicyIssue

CLIENT = "192.0.2.41"
SERVER = "198.51.100.77"

TGCP_HANDSHAKE_SYN, TGCP_HANDSHAKE_ACK, TGCP_AUTH_REQUEST = 0x1001, 0x1002, 0x2001


def tgcp(command: int, body: bytes, version: int = 11, base_version: int | None = None) -> bytes:
    """A TGCP header: magic 0x3366, version, base version, command, then the rest of the header and body."""
    base = version if base_version is None else base_version
    return struct.pack("!HHHH", 0x3366, version, base, command) + body


def alicloud_frame(body: bytes) -> bytes:
    return b"\xce\xfa\xbe\xba" + struct.pack("<I", len(body)) + body


def mi_push(body: bytes) -> bytes:
    return b"\xc2\xfe\x00\x05" + struct.pack("!I", len(body)) + b"\x00\x02\x00\x16" + body


def test_tencent_tgcp_handshake_and_authentication() -> None:
    match = SIGNATURES["tencent_tgcp"]
    assert match(tgcp(TGCP_HANDSHAKE_SYN, bytes(68)), True)
    assert match(tgcp(TGCP_HANDSHAKE_ACK, bytes(56)), False)
    assert match(tgcp(TGCP_AUTH_REQUEST, bytes(109)), True)


@pytest.mark.parametrize("payload", [
    tgcp(TGCP_HANDSHAKE_SYN, bytes(68), version=11, base_version=12),  # the two versions disagree
    tgcp(TGCP_HANDSHAKE_SYN, bytes(68), version=0),
    tgcp(0x7001, bytes(68)),  # not a command class
    tgcp(0x1101, bytes(68)),  # bits between class and number set
    tgcp(0x1000, bytes(68)),  # command number 0
    tgcp(TGCP_HANDSHAKE_SYN, bytes(4)),  # shorter than the header
    b"3f\x00\x0b\x00\x0b\x10\x01" + bytes(4),  # text-looking and short
])
def test_tencent_tgcp_rejects_what_the_header_excludes(payload: bytes) -> None:
    assert not SIGNATURES["tencent_tgcp"](payload, True)


def test_ppstream_names_itself_in_its_header() -> None:
    match = SIGNATURES["ppstream"]
    assert match(ppstream_datagram(), True) and match(ppstream_datagram(header_before_name=96, size=200), False)
    assert not match(ppstream_datagram(header_before_name=300, size=400), True)  # the name is not in the header
    assert not match(b"PPStream\x00" + bytes(8), True)  # too small for a peer message
    assert not match(bytes(40) + b"PPStreamer" + bytes(80), True)  # not the NUL-terminated field


def test_alicloud_frame_length_must_agree() -> None:
    match = SIGNATURES["alicloud"]
    assert match(alicloud_frame(bytes(48)), False)
    assert match(alicloud_frame(bytes(128))[:8], True)  # the header alone, its body in the next segment
    assert not match(alicloud_frame(bytes(48))[:-1], False)  # body shorter than declared
    assert not match(b"\xce\xfa\xbe\xba" + bytes(4), True)  # a header that announces nothing
    assert not match(b"\xce\xfa\xbe\xba" + struct.pack(">I", 48) + bytes(48), True)  # big-endian length


def test_xiaomi_push_frame_length_must_agree() -> None:
    match = SIGNATURES["xiaomi_push"]
    assert match(mi_push(bytes(90)), True)
    assert not match(mi_push(bytes(90))[:-3], True)
    assert not match(b"\xc2\xfe\x00\x04" + mi_push(bytes(90))[4:], True)  # another protocol version


def dingtalk_opening(body_size: int = 88) -> bytes:
    """DingTalk's opening as its dissector reads it: 0x10, a free byte, the 14 fixed bytes, then the rest."""
    header = bytes.fromhex("878001000100020002") + b"dk" + bytes.fromhex("030020")
    rest = bytes((index * 7) & 0xFF for index in range(body_size))
    return bytes((0x10, (len(header) + body_size) & 0xFF)) + header + rest


def test_dingtalk_opening_message() -> None:
    match = SIGNATURES["dingtalk"]
    assert match(dingtalk_opening(), True)
    assert match(dingtalk_opening(400), True)


@pytest.mark.parametrize("payload", [
    dingtalk_opening(60),  # 76 bytes: shorter than any opening the dissector accepts
    b"\x11" + dingtalk_opening()[1:],  # another first byte
    dingtalk_opening()[:12] + b"dK" + dingtalk_opening()[14:],  # the product tag differs
    dingtalk_opening()[:15] + b"\x21" + dingtalk_opening()[16:],  # the key field size differs
    b"\x10\x64" + bytes(102),  # MQTT-like CONNECT shape without DingTalk's header
])
def test_dingtalk_rejects_what_the_header_excludes(payload: bytes) -> None:
    assert not SIGNATURES["dingtalk"](payload, True)


def builtin_tables() -> ClassifierTables:
    issues: list[PolicyIssue] = []
    catalog = load_catalog(None, issues)
    assert not issues
    return ClassifierTables.build(catalog.values())


def mmtls_record(record_type: int, body: bytes, version: int = 0xF104) -> bytes:
    return struct.pack("!BHH", record_type, version, len(body)) + body


MMTLS_HANDSHAKE, MMTLS_APPLICATION_DATA, MMTLS_EARLY_DATA = 0x16, 0x17, 0x19


def test_wechat_mmtls_records() -> None:
    match = SIGNATURES["wechat_mmtls"]
    client_hello = mmtls_record(MMTLS_HANDSHAKE, bytes(180))
    assert match(client_hello, True)
    assert match(client_hello + mmtls_record(MMTLS_EARLY_DATA, bytes(300)), True)  # two records in one segment
    assert match(mmtls_record(MMTLS_APPLICATION_DATA, bytes(1400))[:900], False)  # the segment ends mid-record
    assert match(mmtls_record(MMTLS_HANDSHAKE, bytes(90), version=0xF103), False)


@pytest.mark.parametrize("payload", [
    mmtls_record(MMTLS_HANDSHAKE, bytes(180), version=0x0303),  # that is TLS 1.2
    mmtls_record(0x14, bytes(180)),  # not an mmtls record type
    mmtls_record(MMTLS_HANDSHAKE, b""),  # an empty record
    mmtls_record(MMTLS_HANDSHAKE, bytes(180)) + b"\x47\x45\x54 /",  # followed by something else
    b"\x16\xf1\x04",  # not even a header
])
def test_wechat_mmtls_rejects_what_the_record_format_excludes(payload: bytes) -> None:
    assert not SIGNATURES["wechat_mmtls"](payload, True)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(builtin_tables())


def tcp_first_data(classifier: Classifier, sport: int, dport: int, payload: bytes) -> Decision | None:
    syn = IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=dport, flags="S", seq=100)
    data = IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=dport, flags="PA", seq=101, ack=1) / Raw(payload)
    assert classifier.on_packet(bytes(syn), 1.0).decision is None
    return classifier.on_packet(bytes(data), 1.1).decision


def test_vendor_protocols_name_their_apps_on_any_port(classifier: Classifier) -> None:
    assert tcp_first_data(classifier, 40001, 65010, tgcp(TGCP_HANDSHAKE_SYN, bytes(68))) == \
        Decision("tencentgames", "signature", "tencent_tgcp")
    assert tcp_first_data(classifier, 40002, 8999, alicloud_frame(bytes(128))[:8]) == \
        Decision("alicloud", "signature", "alicloud")
    assert tcp_first_data(classifier, 40003, 5222, mi_push(bytes(90))) == \
        Decision("xiaomi", "signature", "xiaomi_push")
    assert tcp_first_data(classifier, 40004, 8080, mmtls_record(MMTLS_HANDSHAKE, bytes(180))) == \
        Decision("wechat", "signature", "wechat_mmtls")
    assert tcp_first_data(classifier, 40005, 443, dingtalk_opening()) == Decision("dingtalk", "signature", "dingtalk")
    datagram = IP(src=CLIENT, dst=SERVER) / UDP(sport=50412, dport=16600) / Raw(ppstream_datagram())
    assert classifier.on_packet(bytes(datagram), 2.0).decision == Decision("iqiyi", "signature", "ppstream")


@pytest.mark.parametrize(("host", "app"), [
    ("u1.img.mobile.sina.cn", "sina"), ("js.t.sinajs.cn", "sina"), ("news.sina.com.cn", "sina"),
    ("weibo.com", "sinaweibo"), ("wx1.sinaimg.cn", "sinaweibo"),  # Weibo keeps its own names
    ("g.alicdn.com", "alibaba"), ("amos.alicdn.com", "aliwangwang"),  # the longer name wins
    ("ecs.aliyun.com", "alicloud"), ("www.aliyundrive.com", "aliyundrive"), ("dns.alidns.com", "doh_dot"),
    ("api.xiaomi.com", "xiaomi"), ("www.taobao.com", "taobao"),
    ("pic.1kxun.com", "1kxun"), ("mangaweb.1kxun.mobi", "1kxun"),
])
def test_chinese_portals_domains(host: str, app: str) -> None:
    match = builtin_tables().domains.lookup(host)
    assert match is not None and match.app == app
