"""The real daemon between a lab office and a lab internet, with real traffic.

policies/office.yaml is the policy; the lab hosts (gatewayd/lab/office.py)
sit in its groups: a manager (sales + managers), a sales and a service host
(front desk), finance (back office) and a guest.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.explain.flow import Explainer, FlowQuery
from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value, promtool_problems
from gatewayd.lab.office import (
    OFFICE_HOSTS,
    OFFICE_POLICY,
    office_policy_with_work_hours,
)
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import GATEWAY, Lab
from gatewayd.lab.traffic import Outcome
from gatewayd.policy.fields import DAY_NAMES
from gatewayd.policy.loader import load_policy

pytestmark = pytest.mark.integration

SITE = {key: site for key, site in DEFAULT_SITES.items()}
# A blocked TCP flow gets a reset: on its SYN (address known from DNS) or on its first payload.
BLOCKED = {Outcome.RESET, Outcome.REFUSED}


@pytest.fixture(scope="module")
def office() -> Iterator[tuple[Lab, GatewayDaemon]]:
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        try:
            yield lab, daemon
        finally:
            daemon.stop()


@pytest.fixture
def fresh_office(tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    """A lab of its own and a writable copy of the office policy, for tests that break things."""
    policy = tmp_path / "office.yaml"
    policy.write_text(OFFICE_POLICY.read_text())
    with Lab(hosts=OFFICE_HOSTS) as lab:
        yield lab, policy


def conntrack_marks(lab: Lab, destination: str) -> list[int]:
    out = lab.run(GATEWAY, ["conntrack", "-L", "-d", destination, "-o", "extended"], check=False).stdout
    return [int(m) for m in re.findall(r"mark=(\d+)", out)]


# --- blocking and exceptions -------------------------------------------------------------

def test_allowed_app_passes_and_blocked_app_gets_a_reset(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = office
    assert traffic.https_get(lab, "sales", SITE["dingtalk"].hostname).ok
    # IM is for the front desk only: finance is refused with a TCP reset.
    blocked = traffic.https_get(lab, "finance", SITE["wechat"].hostname, ip_version=4)
    assert not blocked.ok and blocked.error in BLOCKED
    assert traffic.https_get(lab, "sales", SITE["wechat"].hostname, ip_version=4).ok


def test_blocking_works_over_ipv6_too(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, _ = office
    allowed = traffic.https_get(lab, "service", SITE["wechat"].hostname, ip_version=6)
    assert allowed.ok and allowed.remote_ip == SITE["wechat"].ipv6
    blocked = traffic.https_get(lab, "finance", SITE["wechat"].hostname, ip_version=6)
    assert blocked.error in BLOCKED


def test_group_exception_lets_managers_use_p2p(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    peer = SITE["bittorrent"].ipv4
    before = metric_value(daemon.metrics(), "gatewayd_blocked_packets_total", protocol="tcp")
    assert traffic.bittorrent_handshake(lab, "sales", peer).outcome in BLOCKED
    assert traffic.bittorrent_handshake(lab, "manager", peer).outcome == Outcome.ANSWERED
    after = metric_value(daemon.metrics(), "gatewayd_blocked_packets_total", protocol="tcp")
    assert after > before


def test_blocked_udp_is_dropped_and_counted(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    before = metric_value(daemon.metrics(), "gatewayd_blocked_packets_total", protocol="udp")
    # A BitTorrent DHT query from a non-manager: p2p is blocked for it, so no echo comes back.
    dht_query = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    result = traffic.udp_send(lab, "sales", SITE["news"].ipv4, 7, payload=dht_query, count=3,
                              expect_reply=True, timeout=1.0)
    assert result.replies == 0
    assert metric_value(daemon.metrics(), "gatewayd_blocked_packets_total", protocol="udp") > before
    ok = traffic.udp_send(lab, "sales", SITE["news"].ipv4, 7, payload=b"hello", count=1,
                          expect_reply=True, timeout=2.0)
    assert ok.replies == 1


# --- the kernel decides what DNS taught it ---------------------------------------------

def test_dns_learned_address_is_decided_on_the_first_packet(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    answer = traffic.dns_query(lab, "finance", SITE["bilibili"].hostname, "A")
    assert SITE["bilibili"].ipv4 in answer.addresses
    daemon.wait_for_learned_writes()  # the answer goes first; the kernel holds the address moments later
    assert SITE["bilibili"].ipv4 in daemon.nft("list", "map", "inet", "gatewayd", "learned_v4")
    queued_before = metric_value(daemon.metrics(), "gatewayd_queued_packets_total")
    # A bare TCP handshake carries no payload: only the kernel's DNS-learned map can name it.
    result = traffic.tcp_connect(lab, "finance", SITE["bilibili"].ipv4, 80, timeout=3)
    assert result.connected
    queued_after = metric_value(daemon.metrics(), "gatewayd_queued_packets_total")
    assert queued_after == queued_before, "a flow to a DNS-learned address must not be queued"
    marks = conntrack_marks(lab, SITE["bilibili"].ipv4)
    assert marks and all(mark >> 20 > 1 for mark in marks), f"flow not decided in the kernel: {marks}"
    flows = metric_value(daemon.metrics(), "gatewayd_flows_total", app="bilibili", group="finance")
    assert flows >= 1


def test_cname_chain_is_followed(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    answer = traffic.dns_query(lab, "sales", SITE["youku"].hostname, "A")
    assert SITE["youku"].ipv4 in answer.addresses
    daemon.wait_for_learned_writes()
    learned = daemon.nft("list", "map", "inet", "gatewayd", "learned_v4")
    assert SITE["youku"].ipv4 in learned


def test_tls_sni_decides_a_flow_dns_never_taught(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    crm = SITE["crm"]
    before = metric_value(daemon.metrics(), "gatewayd_classifier_decisions_total", method="tls-sni")
    # --resolve: no DNS lookup, so only the ClientHello's SNI can name the app.
    result = lab.run("finance", ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                 "--resolve", f"{crm.hostname}:443:{crm.ipv4}", f"https://{crm.hostname}/"])
    assert result.stdout == "200"
    assert metric_value(daemon.metrics(), "gatewayd_classifier_decisions_total", method="tls-sni") == before + 1
    assert metric_value(daemon.metrics(), "gatewayd_flows_total", app="crm", group="finance") >= 1


# --- QoS classes -------------------------------------------------------------------------

def test_video_lands_in_the_bulk_class_on_the_lan_side(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    before = metric_value(daemon.metrics(), "gatewayd_class_bytes_total", interface="lan0", **{"class": "bulk"})
    size = 2_000_000
    result = traffic.http_get(lab, "sales", SITE["youku"].hostname, path=f"/bytes/{size}", timeout=20)
    assert result.ok and result.bytes_downloaded == size
    after = metric_value(daemon.metrics(), "gatewayd_class_bytes_total", interface="lan0", **{"class": "bulk"})
    assert after - before >= size
    stats = lab.run(GATEWAY, ["tc", "-s", "class", "show", "dev", "lan0"]).stdout
    assert "class htb 1:14" in stats


def test_business_app_lands_in_its_class(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    before = metric_value(daemon.metrics(), "gatewayd_class_bytes_total", interface="lan0", **{"class": "business"})
    result = traffic.http_get(lab, "finance", SITE["erp"].hostname, path="/bytes/500000", timeout=20)
    assert result.ok
    after = metric_value(daemon.metrics(), "gatewayd_class_bytes_total", interface="lan0", **{"class": "business"})
    assert after - before >= 500_000


# --- metrics ---------------------------------------------------------------------------

def test_metrics_report_the_traffic_just_sent(office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    exposition = daemon.metrics()
    flows_before = metric_value(exposition, "gatewayd_flows_total", app="dingtalk", group="service")
    bytes_before = metric_value(exposition, "gatewayd_traffic_bytes_total", app="dingtalk", group="service")
    for _ in range(3):
        assert traffic.https_get(lab, "service", SITE["dingtalk"].hostname, ip_version=4).ok
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_flows_total", app="dingtalk", group="service") == flows_before + 3
    assert metric_value(exposition, "gatewayd_traffic_bytes_total", app="dingtalk", group="service") > bytes_before
    assert metric_value(exposition, "gatewayd_rule_hits_total", rule="realtime-first") > 0
    assert metric_value(exposition, "gatewayd_classifier_decisions_total", method="dns") >= 3
    assert metric_value(exposition, "gatewayd_policy_generation") == 1
    assert metric_value(exposition, "gatewayd_fail_mode", mode="open") == 1
    assert metric_value(exposition, "gatewayd_classifier_latency_seconds_count") > 0
    assert 'gatewayd_scrape_collector_success{collector="nft_usage"} 1.0' in exposition
    # bounded labels: no address anywhere in the label values
    # No address in any label, but for the bounded top-talker gauge (metrics.top_talkers hosts)
    addressed = [line for line in exposition.splitlines() if re.search(r'="(192\.0\.2|203\.0\.113|2001:db8)', line)]
    assert addressed and all(line.startswith("gatewayd_top_talker_bytes{") for line in addressed), addressed


def test_promtool_accepts_a_live_scrape(office: tuple[Lab, GatewayDaemon]) -> None:
    """Strict consumers (promtool, OpenMetrics parsers) refuse a family whose HELP/TYPE block repeats."""
    lab, daemon = office
    assert traffic.https_get(lab, "service", SITE["dingtalk"].hostname, ip_version=4).ok  # families with samples
    exposition = daemon.metrics()
    assert 'gatewayd_scrape_collector_success{collector="tc_classes"} 1.0' in exposition
    help_lines = [line.split()[2] for line in exposition.splitlines() if line.startswith("# HELP ")]
    assert sorted(set(help_lines)) == sorted(help_lines)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run ./scripts/setup (Debian package prometheus)"
    assert promtool_problems(exposition, promtool) == []


def test_kernel_features_are_probed_once_and_reported(office: tuple[Lab, GatewayDaemon]) -> None:
    """What the daemon reports must be what it installed: the queue backend and leaf kind read back from the kernel."""
    lab, daemon = office
    native_queue = "table inet gatewayd_queue" in daemon.nft("list", "tables")
    qdiscs = lab.run(GATEWAY, ["tc", "qdisc", "show", "dev", "lan0"]).stdout
    leaf_kinds = {line.split()[1] for line in qdiscs.splitlines() if " parent 1:" in line}
    assert len(leaf_kinds) == 1, qdiscs  # every leaf has the one kind settled at start
    leaf_kind = leaf_kinds.pop()
    has_tcp_loose = lab.run(GATEWAY, ["sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"],
                            check=False).returncode == 0

    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="native_queue") == int(native_queue)
    assert metric_value(exposition, "gatewayd_kernel_feature", feature=f"leaf_qdisc_{leaf_kind}") == 1
    assert metric_value(exposition, "gatewayd_kernel_feature", feature="strict_tcp_tracking") == int(has_tcp_loose)
    assert 'gatewayd_scrape_collector_success{collector="kernel_features"} 1.0' in exposition

    status = json.loads(daemon.control("status", "--json").stdout)
    assert status["kernel_features"] == {"native_queue": native_queue,
                                         "queue_backend": "nft" if native_queue else "iptables-nft",
                                         "leaf_qdisc": leaf_kind, "strict_tcp_tracking": has_tcp_loose}
    kernel_line = [line for line in daemon.control("status").stdout.splitlines() if line.startswith("kernel ")]
    assert kernel_line and f"leaf qdisc {leaf_kind}" in kernel_line[0], kernel_line
    log_lines = [line for line in daemon.log_text().splitlines() if "event=kernel_features" in line]
    assert len(log_lines) == 1 and f"leaf_qdisc={leaf_kind}" in log_lines[0], log_lines


# --- schedules ---------------------------------------------------------------------------

def schedule_policy(window: tuple[dt.time, dt.time]) -> str:
    start, end = (t.strftime("%H:%M") for t in window)
    return office_policy_with_work_hours("daily", f"{start}-{end}")


def window_around(now: dt.datetime, minutes_from: int, minutes_to: int) -> tuple[dt.time, dt.time]:
    return ((now + dt.timedelta(minutes=minutes_from)).time(), (now + dt.timedelta(minutes=minutes_to)).time())


def test_schedule_is_enforced_by_the_kernel_clock(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    now = dt.datetime.now()
    policy.write_text(schedule_policy(window_around(now, 120, 180)))  # games allowed now
    daemon = GatewayDaemon(lab, policy).start()
    try:
        assert traffic.https_get(lab, "sales", SITE["steam"].hostname, ip_version=4).ok
        policy.write_text(schedule_policy(window_around(now, -60, 60)))  # work hours cover now
        daemon.reload()
        blocked = traffic.https_get(lab, "sales", SITE["steam"].hostname, ip_version=4)
        assert blocked.error in BLOCKED
    finally:
        daemon.stop()


def clock(when: dt.datetime) -> str:
    return when.strftime("%H:%M")


def test_a_range_past_midnight_ends_on_the_next_day_in_the_kernel(fresh_office: tuple[Lab, Path]) -> None:
    """Both halves of a night shift, at the kernel's real clock: games are blocked while the shift runs."""
    lab, policy = fresh_office
    now = dt.datetime.now()
    margin = dt.timedelta(minutes=15)
    if now.date() != (now - 2 * margin).date() or now.date() != (now + 2 * margin).date():
        pytest.skip("too close to midnight for shifts placed around the current time")
    today, yesterday = (DAY_NAMES[when.weekday()] for when in (now, now - dt.timedelta(days=1)))
    # Ends shortly after now and starts one minute later, so now is in its after-midnight half.
    after_midnight_now = f"{clock(now + margin + dt.timedelta(minutes=1))}-{clock(now + margin)}"
    # Started shortly before now and ends just before it next morning: now is in its evening half.
    evening_now = f"{clock(now - margin)}-{clock(now - margin - dt.timedelta(minutes=1))}"
    cases = [
        (today, after_midnight_now, False),  # today's early hours belong to yesterday's shift: none
        (yesterday, after_midnight_now, True),  # yesterday's shift runs on into today
        (today, evening_now, True),
    ]
    explainer_source = ipaddress.ip_address(OFFICE_HOSTS["sales"].ipv4)
    daemon: GatewayDaemon | None = None
    try:
        for days, hours, games_blocked in cases:
            policy.write_text(office_policy_with_work_hours(days, hours))
            if daemon is None:
                daemon = GatewayDaemon(lab, policy).start()
            else:
                daemon.reload()
            result = traffic.https_get(lab, "sales", SITE["steam"].hostname, ip_version=4)
            assert (result.error in BLOCKED) is games_blocked, (days, hours, result)
            said = Explainer(load_policy(str(policy))).explain(
                FlowQuery(explainer_source, SITE["steam"].hostname, 443, "tcp", dt.datetime.now()))
            assert (said.verdict.rule_name == "no-games-at-work") is games_blocked, (days, hours)
    finally:
        if daemon is not None:
            daemon.stop()


# --- failure modes -----------------------------------------------------------------------

def test_bad_policy_on_sighup_keeps_the_running_one(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    daemon = GatewayDaemon(lab, policy).start()
    try:
        policy.write_text(policy.read_text() + "\nrulez: []\n")  # an admin's typo
        log = daemon.reload(expect="event=reload_refused errors=")
        assert re.search(r"where=\S+office\.yaml:\d+:\d+", log)
        # The old policy still blocks and still classifies.
        assert traffic.https_get(lab, "finance", SITE["wechat"].hostname, ip_version=4).error in BLOCKED
        assert traffic.https_get(lab, "sales", SITE["dingtalk"].hostname, ip_version=4).ok
        exposition = daemon.metrics()
        assert metric_value(exposition, "gatewayd_policy_generation") == 1
        assert metric_value(exposition, "gatewayd_policy_last_reload_success") == 0
        # A good file afterwards applies.
        policy.write_text(OFFICE_POLICY.read_text())
        daemon.reload()
        assert metric_value(daemon.metrics(), "gatewayd_policy_generation") == 2
    finally:
        daemon.stop()


def test_killed_daemon_fails_open_and_kernel_rules_stay(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    daemon = GatewayDaemon(lab, policy).start()
    # Teach the kernel WeChat's address while the daemon is up.
    assert traffic.dns_query(lab, "finance", SITE["wechat"].hostname, "A").addresses
    daemon.kill()
    start = time.monotonic()
    # New, undecided flows still pass: the queue rule has bypass and nobody listens.
    assert traffic.https_get(lab, "sales", SITE["news"].hostname, ip_version=4).ok
    assert traffic.https_get(lab, "guest", SITE["dingtalk"].hostname, ip_version=4).ok
    assert time.monotonic() - start < 10
    # What the kernel already knows is still enforced without Python.
    assert traffic.https_get(lab, "finance", SITE["wechat"].hostname, ip_version=4).error in BLOCKED


def test_sigterm_removes_everything_it_installed(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    lab.run(GATEWAY, ["nft", "add", "table", "inet", "someone_else"])
    daemon = GatewayDaemon(lab, policy).start()
    assert "table inet gatewayd" in lab.run(GATEWAY, ["nft", "list", "tables"]).stdout
    assert daemon.stop() == 0
    tables = lab.run(GATEWAY, ["nft", "list", "tables"]).stdout
    assert "inet gatewayd" not in tables and "inet someone_else" in tables
    assert "GATEWAYD_QUEUE" not in lab.run(GATEWAY, ["iptables-nft", "-S"]).stdout
    assert "htb" not in lab.run(GATEWAY, ["tc", "qdisc", "show", "dev", "wan0"]).stdout
    assert traffic.https_get(lab, "sales", SITE["news"].hostname, ip_version=4).ok


def test_sigterm_leaves_the_nft_tables_as_they_were_before_start(fresh_office: tuple[Lab, Path]) -> None:
    """Including `ip filter`/`ip6 filter`, which iptables-nft creates for the queue rule."""
    lab, policy = fresh_office
    before = nft_tables(lab)
    daemon = GatewayDaemon(lab, policy).start()
    try:
        running = daemon.nft("list", "tables")
        assert "table inet gatewayd" in running
        if "backend=iptables-nft" in daemon.log_text():
            assert "table ip filter" in running and "table ip6 filter" in running
    finally:
        assert daemon.stop() == 0
    assert nft_tables(lab) == before


def test_sigterm_keeps_a_filter_table_someone_else_made(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    lab.run(GATEWAY, ["iptables-nft", "-w", "-A", "INPUT", "-s", "198.51.100.7", "-j", "DROP"])
    tables_before = nft_tables(lab)
    foreign_before = lab.run(GATEWAY, ["nft", "list", "table", "ip", "filter"]).stdout
    assert "198.51.100.7" in foreign_before and "FORWARD" not in foreign_before
    daemon = GatewayDaemon(lab, policy).start()
    try:
        if "backend=iptables-nft" not in daemon.log_text():
            pytest.skip("this kernel has native nft queue: gatewayd leaves iptables' tables alone")
        assert "jump GATEWAYD_QUEUE" in daemon.nft("list", "table", "ip", "filter")
    finally:
        assert daemon.stop() == 0
    # Its rule stays; the FORWARD and OUTPUT chains gatewayd's queue rule needed go; ip6 filter was all ours.
    assert lab.run(GATEWAY, ["nft", "list", "table", "ip", "filter"]).stdout == foreign_before
    assert nft_tables(lab) == tables_before


def nft_tables(lab: Lab) -> list[str]:
    return sorted(lab.run(GATEWAY, ["nft", "list", "tables"]).stdout.splitlines())


def test_answers_of_a_resolver_on_the_router_teach_the_kernel(fresh_office: tuple[Lab, Path]) -> None:
    """Offices often resolve through the router itself (dnsmasq): its answers leave via output."""
    lab, policy = fresh_office
    resolver = lab.popen(GATEWAY, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                   "--listen-address=192.0.2.1", "--bind-interfaces", "--port=53",
                                   "--server=203.0.113.53", "--cache-size=0", "--pid-file="],
                         log_name="router-dnsmasq.log")
    daemon = GatewayDaemon(lab, policy).start()
    try:
        deadline = time.monotonic() + 10
        answer = traffic.dns_query(lab, "finance", SITE["bilibili"].hostname, "A", server="192.0.2.1")
        while not answer.addresses and time.monotonic() < deadline:  # dnsmasq may still be starting
            time.sleep(0.2)
            answer = traffic.dns_query(lab, "finance", SITE["bilibili"].hostname, "A", server="192.0.2.1")
        assert SITE["bilibili"].ipv4 in answer.addresses
        daemon.wait_for_learned_writes()
        assert SITE["bilibili"].ipv4 in daemon.nft("list", "map", "inet", "gatewayd", "learned_v4")
    finally:
        daemon.stop()
        resolver.terminate()


def test_fail_closed_drops_undecided_flows_when_the_daemon_is_gone(fresh_office: tuple[Lab, Path]) -> None:
    lab, policy = fresh_office
    policy.write_text(policy.read_text().replace("fail_mode: open", "fail_mode: closed"))
    daemon = GatewayDaemon(lab, policy).start()
    assert metric_value(daemon.metrics(), "gatewayd_fail_mode", mode="closed") == 1
    assert traffic.https_get(lab, "sales", SITE["news"].hostname, ip_version=4).ok
    daemon.kill()
    result = traffic.https_get(lab, "sales", SITE["news"].hostname, ip_version=4, timeout=3)
    assert not result.ok and result.error == Outcome.TIMEOUT
