"""Micro-benchmark: new TLS flows per second through Classifier.on_packet.

Each synthetic flow is SYN, SYN-ACK, ACK, ClientHello (with SNI), the packets
the kernel queues for a typical HTTPS connection. Packets are prebuilt so the
loop measures only the classifier.

    python3 bench/classify_micro.py [flows]
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ipaddress

from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.model import Application, PortMatch


def client_hello(server_name: str) -> bytes:
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    alpn_list = b"\x02h2\x08http/1.1"
    extensions = (struct.pack("!HH", 0, len(sni)) + sni
                  + struct.pack("!HHH", 16, len(alpn_list) + 2, len(alpn_list)) + alpn_list
                  + struct.pack("!HH", 0x002B, 3) + b"\x02\x03\x04")
    body = (b"\x03\x03" + bytes(32) + b"\x20" + bytes(32)
            + struct.pack("!H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def ipv4_tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"") -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    return ip + tcp + payload


def build_flows(count: int, hello: bytes) -> list[bytes]:
    packets: list[bytes] = []
    for index in range(count):
        client = ipaddress.IPv4Address(0x0A000000 + (index >> 14)).packed
        server = ipaddress.IPv4Address(0xCB007100 + index % 200).packed
        sport = 1024 + (index & 0x3FFF)
        packets.append(ipv4_tcp(client, server, sport, 443, 1000, 0, 0x02))
        packets.append(ipv4_tcp(server, client, 443, sport, 5000, 1001, 0x12))
        packets.append(ipv4_tcp(client, server, sport, 443, 1001, 5001, 0x10))
        packets.append(ipv4_tcp(client, server, sport, 443, 1001, 5001, 0x18, hello))
    return packets


def catalog() -> list[Application]:
    apps = [Application(id=f"app{n}", name=f"App {n}", category="web",
                        domains=(f"app{n}.example", f"*.cdn{n}.example"),
                        networks=(ipaddress.ip_network(f"198.{n % 250}.{n // 250}.0/24"),))
            for n in range(500)]
    apps.append(Application(id="dingtalk", name="DingTalk", category="im", domains=("dingtalk.com",)))
    apps.append(Application(id="bittorrent", name="BitTorrent", category="p2p", signatures=("bittorrent",)))
    apps.append(Application(id="ssh", name="SSH", category="remote", signatures=("ssh",),
                            ports=(PortMatch("tcp", 22, 22),)))
    return apps


def main() -> None:
    flow_count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    packets = build_flows(flow_count, client_hello("static.dingtalk.com"))
    best = 0.0
    for _round in range(3):
        classifier = Classifier(ClassifierTables.build(catalog()), max_flows=65536)
        decided = 0
        start = time.perf_counter()
        on_packet = classifier.on_packet
        now = 1000.0
        for index, packet in enumerate(packets):
            if on_packet(packet, now + index * 1e-6).decision is not None:
                decided += 1
        elapsed = time.perf_counter() - start
        assert decided == flow_count, (decided, flow_count, classifier.stats)
        best = max(best, flow_count / elapsed)
    print(f"{flow_count} TLS flows x 4 packets: best {best:,.0f} flows/s "
          f"({best * 4:,.0f} packets/s, {1e6 / (best * 4):.1f} us/packet)")


if __name__ == "__main__":
    main()
