"""The LAN guard against real attack tools (scapy, hping3, nmap) in a namespace office.

Every attack is aimed only at lab addresses, bounded in packets and time. Each
test checks the effect the defence exists for (the gateway's neighbour table,
packets arriving at the internet side, the blocklist), so it fails without it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS
from gatewayd.lab.services import IPERF_PORTS, IPERF_SERVER_V4
from gatewayd.lab.topology import GATEWAY, GW_LAN_MAC, GW_LAN_V4, INTERNET, HostSpec, Lab
from gatewayd.lab.traffic import Outcome

pytestmark = pytest.mark.integration

ATTACKER = HostSpec("192.0.2.66", "2001:db8:1::66", "02:00:00:00:00:66")
FLOODER = HostSpec("192.0.2.67", "2001:db8:1::67", "02:00:00:00:00:67")
SCANNER = HostSpec("192.0.2.68", "2001:db8:1::68", "02:00:00:00:00:68")
SWEEPER = HostSpec("192.0.2.69", "2001:db8:1::69", "02:00:00:00:00:69")
# Holds 192.0.2.30, which the policy binds to 02:00:00:00:00:30.
IMPOSTOR = HostSpec("192.0.2.30", "2001:db8:1::30", "02:00:00:00:00:99")
HOSTS = {"sales": OFFICE_HOSTS["sales"], "manager": OFFICE_HOSTS["manager"],
         "attacker": ATTACKER, "flooder": FLOODER, "scanner": SCANNER, "sweeper": SWEEPER,
         "impostor": IMPOSTOR}
SPOOFED_SOURCE = "203.0.113.77"
FLOOD_RATE, FLOOD_BURST = 100, 100  # packets per second per source, for SYN, UDP and ICMP echo
SCAN_PORTS, SCAN_HOSTS, BLOCK_SECONDS = 20, 12, 6

POLICY = f"""
version: 1
interfaces: {{lan: lan0, wan: wan0, upload: 400mbit, download: 400mbit}}
classes:
  default: {{priority: 3, guaranteed: 50%}}
security:
  bindings:
    hosts:
      {OFFICE_HOSTS['sales'].ipv4}: {OFFICE_HOSTS['sales'].mac}
      {OFFICE_HOSTS['manager'].ipv4}: {OFFICE_HOSTS['manager'].mac}
      192.0.2.30: 02:00:00:00:00:30
    unbound: allow
  anti_spoofing: true
  flood:
    syn: {{rate: {FLOOD_RATE}/second, burst: {FLOOD_BURST}}}
    udp: {{rate: {FLOOD_RATE}/second, burst: {FLOOD_BURST}}}
    icmp_echo: {{rate: {FLOOD_RATE}/second, burst: {FLOOD_BURST}}}
  port_scan:
    ports: {SCAN_PORTS}
    hosts: {SCAN_HOSTS}
    window: 10s
    block_for: {BLOCK_SECONDS}s
    allow: [{OFFICE_HOSTS['manager'].ipv4}]
"""

# Counts, on the internet side, what each attack got through the gateway.
PROBE_TABLE = f"""
table inet guard_probe {{
  counter seen_syn {{ }}
  counter seen_udp {{ }}
  counter seen_icmp {{ }}
  counter seen_spoofed {{ }}
  counter seen_impostor {{ }}
  chain seen {{
    type filter hook prerouting priority -400; policy accept;
    ip saddr {FLOODER.ipv4} tcp flags & (syn | ack) == syn counter name seen_syn
    ip saddr {FLOODER.ipv4} udp dport 9 counter name seen_udp
    ip saddr {FLOODER.ipv4} icmp type echo-request counter name seen_icmp
    ip saddr {SPOOFED_SOURCE} counter name seen_spoofed
    ip saddr {IMPOSTOR.ipv4} counter name seen_impostor
  }}
}}
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayDaemon]]:
    policy = tmp_path_factory.mktemp("guard") / "guard.yaml"
    policy.write_text(POLICY)
    with Lab(hosts=HOSTS) as lab:
        lab.run(INTERNET, ["nft", "-f", "-"], input=PROBE_TABLE)
        daemon = GatewayDaemon(lab, policy).start()
        try:
            yield lab, daemon
        finally:
            daemon.stop()


def probe_count(lab: Lab, name: str) -> int:
    out = lab.run(INTERNET, ["nft", "list", "counter", "inet", "guard_probe", f"seen_{name}"]).stdout
    match = re.search(r"packets (\d+)", out)
    assert match, out
    return int(match.group(1))


def dropped(daemon: GatewayDaemon, reason: str) -> float:
    return metric_value(daemon.metrics(), "gatewayd_guard_dropped_packets_total", reason=reason)


def neighbour_mac(lab: Lab, address: str) -> str:
    out = lab.run(GATEWAY, ["ip", "neigh", "show", address, "dev", "lan0"]).stdout
    match = re.search(r"lladdr (\S+)", out)
    return match.group(1) if match else ""


def host_neighbour_mac(lab: Lab, host: str, address: str) -> str:
    out = lab.run(host, ["ip", "neigh", "show", address, "dev", "eth0"]).stdout
    match = re.search(r"lladdr (\S+)", out)
    return match.group(1) if match else ""


# --- ARP spoofing and IP-MAC binding ---------------------------------------------------

ARP_SPOOF = r"""
import sys
from scapy.all import ARP, Ether, sendp
me, victim_ip, gw_ip, gw_mac = sys.argv[1:5]
claims = [Ether(src=me, dst=gw_mac) / ARP(op=2, hwsrc=me, psrc=victim_ip, hwdst=gw_mac, pdst=gw_ip),
          Ether(src=me, dst="ff:ff:ff:ff:ff:ff")
          / ARP(op=2, hwsrc=me, psrc=gw_ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=gw_ip)]
sendp(claims, iface="eth0", count=5, inter=0.05, verbose=False)
"""


def test_arp_spoof_of_a_bound_host_and_of_the_gateway_is_dropped(guarded: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = guarded
    sales = OFFICE_HOSTS["sales"]
    assert traffic.tcp_connect(lab, "sales", IPERF_SERVER_V4, IPERF_PORTS[3]).connected
    assert neighbour_mac(lab, sales.ipv4) == sales.mac
    before = dropped(daemon, "arp_spoof")
    announced = metric_value(daemon.metrics(), "gatewayd_guard_gateway_announcements_total")
    time.sleep(1.5)  # past the neighbour entry's locktime, so an unguarded kernel would take the lie
    lab.exec_python("attacker", ARP_SPOOF, [ATTACKER.mac, sales.ipv4, GW_LAN_V4, GW_LAN_MAC])
    time.sleep(0.3)
    assert neighbour_mac(lab, sales.ipv4) == sales.mac, "the gateway now sends the sales host's traffic elsewhere"
    assert dropped(daemon, "arp_spoof") - before >= 10  # 5 claims for the host, 5 for the gateway
    # The broadcast claim of the gateway's address also reached the LAN hosts through the switch;
    # the gateway answers it with gratuitous ARP, so the sales host's entry for it is the truth again.
    deadline = time.monotonic() + 3.0
    while host_neighbour_mac(lab, "sales", GW_LAN_V4) != GW_LAN_MAC and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_neighbour_mac(lab, "sales", GW_LAN_V4) == GW_LAN_MAC, "the sales host still believes the attacker"
    assert metric_value(daemon.metrics(), "gatewayd_guard_gateway_announcements_total") > announced
    # The legitimate host is unaffected: replies from the internet still reach it.
    assert traffic.tcp_connect(lab, "sales", IPERF_SERVER_V4, IPERF_PORTS[3]).connected


def test_a_bound_address_with_the_wrong_mac_cannot_send_through_the_gateway(guarded: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = guarded
    # A static neighbour entry, so the impostor gets past its own (dropped) ARP and sends IP.
    lab.run("impostor", ["ip", "neigh", "replace", GW_LAN_V4, "lladdr", GW_LAN_MAC, "dev", "eth0", "nud", "permanent"])
    before = dropped(daemon, "ip_mac_mismatch")
    result = traffic.tcp_connect(lab, "impostor", IPERF_SERVER_V4, IPERF_PORTS[3], timeout=2.0)
    assert not result.connected and result.outcome == Outcome.TIMEOUT
    assert probe_count(lab, "impostor") == 0
    assert dropped(daemon, "ip_mac_mismatch") > before


def test_a_spoofed_source_address_from_the_lan_is_dropped(guarded: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = guarded
    before = dropped(daemon, "spoofed_source")
    lab.run("attacker", ["timeout", "10", "hping3", "-S", "-p", "80", "-a", SPOOFED_SOURCE, "-c", "5",
                         "-i", "u100000", IPERF_SERVER_V4], check=False, timeout=15)
    assert probe_count(lab, "spoofed") == 0
    assert dropped(daemon, "spoofed_source") - before >= 5


# --- floods ----------------------------------------------------------------------------

FLOODS = {
    "syn": (["-S", "-p", "80"], "syn_flood"),
    "udp": (["--udp", "-p", "9"], "udp_flood"),
    "icmp": (["--icmp"], "icmp_flood"),
}
FLOOD_PACKETS = 60000
FLOOD_SECONDS = 6


@pytest.mark.parametrize("kind", list(FLOODS))
def test_a_flood_is_held_to_its_rate_and_a_normal_transfer_keeps_its_throughput(
        guarded: tuple[Lab, GatewayDaemon], kind: str) -> None:
    lab, daemon = guarded
    flags, reason = FLOODS[kind]
    # A paced transfer: the lab's own CPU (the attack tool shares it) must not be what is measured.
    rate = "200M"
    baseline = traffic.iperf3(lab, "sales", IPERF_SERVER_V4, seconds=3, bitrate=rate, port=IPERF_PORTS[1])
    passed_before, dropped_before = probe_count(lab, kind), dropped(daemon, reason)
    started = time.monotonic()
    flood = lab.popen("flooder", ["timeout", str(FLOOD_SECONDS), "hping3", *flags, "-c", str(FLOOD_PACKETS),
                                  "-i", "u10", IPERF_SERVER_V4])
    time.sleep(0.5)
    during = traffic.iperf3(lab, "sales", IPERF_SERVER_V4, seconds=3, bitrate=rate, port=IPERF_PORTS[1])
    flood.wait(FLOOD_SECONDS + 5)
    elapsed = time.monotonic() - started
    passed = probe_count(lab, kind) - passed_before
    held = dropped(daemon, reason) - dropped_before
    # Token bucket: the rate for the flood's duration plus one burst (and one rate-interval of slack).
    assert passed <= FLOOD_RATE * (elapsed + 1) + FLOOD_BURST, f"{passed} {kind} packets got through in {elapsed:.1f}s"
    assert held > 5 * (FLOOD_RATE * elapsed + FLOOD_BURST), f"the flood was too weak to test: {held} dropped"
    assert during >= 0.8 * baseline, f"{during / 1e6:.0f} Mbit/s during the flood, {baseline / 1e6:.0f} without"


# --- port scan -------------------------------------------------------------------------

def blocklist(lab: Lab) -> str:
    return lab.run(GATEWAY, [sys.executable, "-m", "gatewayd.cli.guard_blocklist"], check=False).stdout


def test_a_port_scanner_is_blocklisted_then_released_and_a_normal_host_is_not(
        guarded: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = guarded
    offset = daemon.log_size()
    started = time.monotonic()
    # 100 ports, one try each, at most 400 packets/s: a scan, bounded in count and time.
    lab.run("scanner", ["nmap", "-sS", "-Pn", "-n", "-p", "1-100", "--max-retries", "0", "--max-rate", "400",
                        "--host-timeout", "15s", IPERF_SERVER_V4], check=False, timeout=25)
    listed = blocklist(lab)
    assert SCANNER.ipv4 in listed, listed
    assert time.monotonic() - started < 10, "not blocklisted within the 10 s window"
    assert OFFICE_HOSTS["sales"].ipv4 not in listed
    # The manager is on the allow-list: the same scan leaves it free.
    lab.run("manager", ["nmap", "-sS", "-Pn", "-n", "-p", "1-40", "--max-retries", "0", "--max-rate", "400",
                        "--host-timeout", "15s", IPERF_SERVER_V4], check=False, timeout=25)
    assert OFFICE_HOSTS["manager"].ipv4 not in blocklist(lab)
    assert not traffic.tcp_connect(lab, "scanner", IPERF_SERVER_V4, IPERF_PORTS[3], timeout=1.0).connected
    assert traffic.tcp_connect(lab, "sales", IPERF_SERVER_V4, IPERF_PORTS[3]).connected
    log = daemon.wait_for_log(f"event=host_blocklisted address={SCANNER.ipv4}", offset, timeout=5)
    assert log.count(f"event=host_blocklisted address={SCANNER.ipv4} reason=port_scan") == 1
    metrics = daemon.metrics()
    assert metric_value(metrics, "gatewayd_guard_blocklisted_total", reason="port_scan") >= 1
    assert metric_value(metrics, "gatewayd_guard_dropped_packets_total", reason="blocklisted") >= 1
    time.sleep(BLOCK_SECONDS + 1.5)
    assert SCANNER.ipv4 not in blocklist(lab)
    assert traffic.tcp_connect(lab, "scanner", IPERF_SERVER_V4, IPERF_PORTS[3]).connected


SWEEP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for last in range(150, 150 + int(sys.argv[1])):
    s.sendto(b"anyone?", (f"203.0.113.{last}", 9))
"""


def test_a_host_sweep_is_blocklisted_and_logged_as_one(guarded: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = guarded
    offset = daemon.log_size()
    # One UDP packet to each of twice the allowed number of addresses (none of them need exist).
    lab.exec_python("sweeper", SWEEP, args=[str(2 * SCAN_HOSTS)], timeout=10)
    listed = blocklist(lab)
    assert SWEEPER.ipv4 in listed and "host_sweep" in listed, listed
    log = daemon.wait_for_log(f"event=host_blocklisted address={SWEEPER.ipv4}", offset, timeout=5)
    assert f"event=host_blocklisted address={SWEEPER.ipv4} reason=host_sweep" in log
