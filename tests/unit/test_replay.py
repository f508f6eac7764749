"""replay: a capture's flows through the real classifier and the rules; --against shows the diff."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Raw, wrpcap
from scapy.layers.tls.all import TLS, ServerName, TLS_Ext_ServerName, TLSClientHello

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "policies" / "office.yaml"
NO_VIDEO_FOR_FINANCE = ("rules:\n  - name: no-video-for-finance\n    groups: [finance]\n    categories: [video]\n"
                        "    action: block\n")
BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + b"\x11" * 20 + b"-LB0001-labclient000"


def tls_flow(client: str, server: str, sport: int, name: str) -> list:
    hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=name.encode())])])])
    return [IP(src=client, dst=server) / TCP(sport=sport, dport=443, flags="S", seq=1000),
            IP(src=server, dst=client) / TCP(sport=443, dport=sport, flags="SA", seq=5000, ack=1001),
            IP(src=client, dst=server) / TCP(sport=sport, dport=443, flags="A", seq=1001, ack=5001),
            IP(src=client, dst=server) / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=5001)
            / Raw(bytes(hello))]


def bt_flow(client: str, server: str, sport: int) -> list:
    return [IP(src=client, dst=server) / TCP(sport=sport, dport=6881, flags="S", seq=1),
            IP(src=server, dst=client) / TCP(sport=6881, dport=sport, flags="SA", seq=9, ack=2),
            IP(src=client, dst=server) / TCP(sport=sport, dport=6881, flags="PA", seq=2, ack=10) / Raw(BT_HANDSHAKE)]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    packets = (tls_flow("192.0.2.130", "203.0.113.30", 40001, "www.youku.com")       # finance, video
               + tls_flow("192.0.2.20", "203.0.113.30", 40002, "www.youku.com")      # sales, video
               + tls_flow("192.0.2.20", "203.0.113.10", 40003, "im.dingtalk.com")    # sales, dingtalk
               + tls_flow("192.0.2.130", "203.0.113.70", 40004, "web.wechat.com")    # finance, IM
               + bt_flow("192.0.2.20", "203.0.113.50", 40005)                        # sales, p2p
               + bt_flow("192.0.2.10", "203.0.113.50", 40006))                       # manager, p2p
    path = tmp_path_factory.mktemp("replay") / "office.pcap"
    wrpcap(str(path), packets)
    return path


def gatewayd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatewayd", *args], capture_output=True, text=True, timeout=120)


def test_replay_gives_each_flow_its_verdict(capture: Path) -> None:
    result = gatewayd("replay", str(OFFICE), "--pcap", str(capture), "--at", "mon 10:00", "--json")
    assert result.returncode == 0, result.stderr
    verdicts = {row["sport"]: (row["app"], row["rule"], row["action"], row["class"])
                for row in map(json.loads, result.stdout.splitlines())}
    assert verdicts == {
        40001: ("youku", "video-is-bulk", "allow", "bulk"),
        40002: ("youku", "video-is-bulk", "allow", "bulk"),
        40003: ("dingtalk", "realtime-first", "allow", "realtime"),
        40004: ("wechat", "im-front-desk-only", "block", None),
        40005: ("bittorrent", "no-p2p", "block", None),
        40006: ("bittorrent", "managers-p2p-bulk", "allow", "bulk"),
    }


def test_replay_against_an_old_policy_prints_only_the_changes(capture: Path, tmp_path: Path) -> None:
    new_policy = tmp_path / "new.yaml"
    new_policy.write_text(OFFICE.read_text().replace("\nrules:\n", "\n" + NO_VIDEO_FOR_FINANCE, 1))
    result = gatewayd("replay", str(new_policy), "--against", str(OFFICE), "--pcap", str(capture),
                      "--at", "mon 10:00", "--json")
    assert result.returncode == 0, result.stderr
    changed = [json.loads(line) for line in result.stdout.splitlines()]
    assert changed == [{
        "flow": {"proto": "tcp", "src": "192.0.2.130", "sport": 40001, "dst": "203.0.113.30", "dport": 443},
        "before": {"app": "youku", "rule": "video-is-bulk", "action": "allow", "class": "bulk"},
        "after": {"app": "youku", "rule": "no-video-for-finance", "action": "block", "class": None},
    }]
    assert "1 of 6 flows change verdict" in result.stderr
    text = gatewayd("replay", str(new_policy), "--against", str(OFFICE), "--pcap", str(capture), "--at", "mon 10:00")
    assert text.stdout.splitlines() == [
        "tcp 192.0.2.130:40001 -> 203.0.113.30:443: allow/bulk (app youku, rule video-is-bulk) => "
        "block (app youku, rule no-video-for-finance)",
        "1 of 6 flows change verdict",
    ]


def test_replay_of_a_missing_capture_is_a_clear_error(tmp_path: Path) -> None:
    result = gatewayd("replay", str(OFFICE), "--pcap", str(tmp_path / "none.pcap"))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "none.pcap" in result.stderr
