"""Reports end to end: a real Prometheus scrapes the real daemon during lab traffic.

The recording rules are loaded (evaluated every second), and the test checks that
the per-group per-app series and the top talkers match the traffic it sent, that
every Grafana dashboard query answers with data, that `gatewayd report` writes
numbers that match the daemon's counters, that headless Chromium renders the
report with no error and no empty chart (screenshot kept in artifacts/), and that
traffic from 1,000 addresses does not grow the series count past the policy's bound.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.prometheus_server import PrometheusServer, prometheus_binary
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import GATEWAY, Lab
from gatewayd.report.usage import human_bytes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
DASHBOARD = REPO / "grafana" / "gatewayd.json"
VIDEO_BYTES = 3_000_000  # service watches bilibili
ERP_BYTES = 1_000_000  # finance downloads from the ERP
TOLERANCE = 0.10
TOP_TALKERS = 20  # policies/office.yaml leaves metrics.top_talkers at its default
SPRAY_ADDRESSES = 1000


@pytest.fixture(scope="module")
def scraped_office() -> Iterator[tuple[Lab, GatewayDaemon, PrometheusServer, float]]:
    if prometheus_binary() is None:
        pytest.skip("needs Debian's prometheus package (scripts/setup installs it)")
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
        prometheus = PrometheusServer(lab)
        try:
            prometheus.start()
            started = time.time()
            prometheus.wait_for_scrapes(started - 2)  # scraping before the traffic: its series are born in view
            download(lab, "service", DEFAULT_SITES["bilibili"].hostname, VIDEO_BYTES)
            download(lab, "finance", DEFAULT_SITES["erp"].hostname, ERP_BYTES)
            blocked = traffic.https_get(lab, "finance", DEFAULT_SITES["wechat"].hostname, ip_version=4)
            assert not blocked.ok, "IM is for the front desk: finance must be blocked"
            prometheus.wait_for_scrapes(time.time())
            yield lab, daemon, prometheus, started
        finally:
            prometheus.stop()
            daemon.stop()


def download(lab: Lab, host: str, hostname: str, size: int) -> None:
    result = lab.run(host, ["curl", "-4", "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "20",
                            f"http://{hostname}/bytes/{size}"], timeout=30, check=False)
    assert result.stdout.strip() == str(size), f"{host} downloaded {result.stdout!r} from {hostname}"


def close_to(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= TOLERANCE * expected


def test_group_app_series_and_top_talkers_match_the_traffic(
        scraped_office: tuple[Lab, GatewayDaemon, PrometheusServer, float]) -> None:
    _, _, prometheus, _ = scraped_office
    video = prometheus.value('sum(gatewayd_traffic_bytes_total{group="service",app="bilibili",action="allow"})')
    erp = prometheus.value('sum(gatewayd_traffic_bytes_total{group="finance",app="erp",action="allow"})')
    assert close_to(video, VIDEO_BYTES) and close_to(erp, ERP_BYTES), (video, erp)
    # The recording rule has the department and app as its labels.
    recorded = prometheus.query('gatewayd:group_app_bytes:rate5m{group="service",app="bilibili"}')
    assert len(recorded) == 1 and float(recorded[0]["value"][1]) > 0
    blocked = prometheus.query("gatewayd:rule_blocked_packets:rate5m > 0")  # every blocking rule has a series
    assert [s["metric"]["rule"] for s in blocked] == ["im-front-desk-only"]
    # Top talkers: which host, in which group, how many bytes both ways.
    talkers = {(s["metric"]["host"], s["metric"]["group"]): float(s["value"][1])
               for s in prometheus.query("sum by (host, group) (gatewayd_top_talker_bytes)")}
    service, finance = OFFICE_HOSTS["service"].ipv4, OFFICE_HOSTS["finance"].ipv4
    assert close_to(talkers[(service, "service")], VIDEO_BYTES), talkers
    assert close_to(talkers[(finance, "finance")], ERP_BYTES), talkers
    busiest = prometheus.query("topk(1, sum by (host) (gatewayd_top_talker_bytes))")
    assert busiest[0]["metric"]["host"] == service


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def grafana_variables(expr: str) -> str:
    """What Grafana puts in place of the dashboard's variables: all departments, a 5-minute range."""
    return expr.replace("$group", ".*").replace("$__range", "5m").replace("$__rate_interval", "1m")


def test_every_dashboard_query_returns_data(scraped_office: tuple[Lab, GatewayDaemon, PrometheusServer, float]) -> None:
    _, _, prometheus, _ = scraped_office
    queries = dashboard_queries()
    assert len(queries) >= 15
    empty = []
    for title, expr in queries:
        if not prometheus.query_range(grafana_variables(expr), seconds=20):  # an error raises with its message
            empty.append(f"{title}: {expr}")
    assert empty == []


def test_report_numbers_match_the_daemons_counters(
        scraped_office: tuple[Lab, GatewayDaemon, PrometheusServer, float]) -> None:
    lab, daemon, prometheus, _ = scraped_office
    exposition = daemon.metrics()
    text = run_report(lab, prometheus, "--since", "15m", "--text").stdout
    for group in ("service", "finance"):
        counted = metric_value(exposition, "gatewayd_traffic_bytes_total", group=group, action="allow")
        row = re.search(rf"^  {group}\s+(\S+ \S+)\s", text, re.MULTILINE)
        assert row and row.group(1) == human_bytes(counted), f"{group}: {human_bytes(counted)}\n{text}"
    assert re.search(rf"^  {re.escape(OFFICE_HOSTS['service'].ipv4)}\s+service\s", text, re.MULTILINE), text
    assert re.search(r"^  finance\s+wechat\s+\d+", text, re.MULTILINE), text
    assert re.search(r"^  im-front-desk-only\s+\d+", text, re.MULTILINE), text

    page = lab.workdir / "report.html"
    run_report(lab, prometheus, "--since", "15m", "-o", str(page))
    html = page.read_text()
    video = metric_value(exposition, "gatewayd_traffic_bytes_total", group="service", app="bilibili", action="allow")
    assert f"<td>bilibili</td><td>{human_bytes(video)}</td>" in html
    rendered = render_in_chromium(page)
    assert rendered.charts >= 5 and rendered.empty_charts == [], rendered
    assert rendered.errors == [], rendered.errors


def run_report(lab: Lab, prometheus: PrometheusServer, *args: str) -> subprocess.CompletedProcess[str]:
    result = lab.run(GATEWAY, [sys.executable, "-m", "gatewayd", "report", "--prometheus", prometheus.url, *args],
                     timeout=60, check=False)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    return result


class Rendered:
    def __init__(self, charts: int, empty_charts: list[str], errors: list[str]) -> None:
        self.charts, self.empty_charts, self.errors = charts, empty_charts, errors

    def __repr__(self) -> str:
        return f"Rendered(charts={self.charts}, empty={self.empty_charts}, errors={self.errors})"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("needs Debian's chromium package (scripts/setup installs it)")
    return found


def render_in_chromium(page: Path) -> Rendered:
    """Headless Chromium: the screenshot goes to artifacts/, the DOM it built is checked for charts
    without bars, its console log for errors."""
    ARTIFACTS.mkdir(exist_ok=True)
    profile = page.parent / "chromium-profile"
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    screenshot = subprocess.run([*common, f"--screenshot={ARTIFACTS / 'report.png'}", "--window-size=1280,2400",
                                 page.as_uri()], capture_output=True, text=True, timeout=90, check=False)
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90,
                         check=False)
    assert screenshot.returncode == 0 and (ARTIFACTS / "report.png").stat().st_size > 10_000, screenshot.stderr
    assert dom.returncode == 0, dom.stderr
    charts = re.findall(r'<svg class="chart".*?</svg>', dom.stdout, re.DOTALL)
    empty = [re.search(r'aria-label="([^"]*)"', chart).group(1) for chart in charts  # type: ignore[union-attr]
             if 'class="bar"' not in chart]
    errors = [line for line in (screenshot.stderr + dom.stderr).splitlines()
              if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line]
    return Rendered(len(charts), empty, errors)


def test_a_thousand_addresses_do_not_grow_the_series_past_the_bound(
        scraped_office: tuple[Lab, GatewayDaemon, PrometheusServer, float]) -> None:
    lab, daemon, prometheus, _ = scraped_office
    before = series_without_talkers(daemon.metrics())
    base = 0x1000  # 2001:db8:1::1:1000 on: in sales' 2001:db8:1::1:0/112, apart from the lab's own hosts
    sources = [f"2001:db8:1::1:{base + n:x}" for n in range(SPRAY_ADDRESSES)]
    lab.run("sales", ["ip", "-6", "-batch", "-"], input="".join(f"addr add {a}/64 dev eth0 nodad\n" for a in sources),
            timeout=60)
    lab.exec_python("sales", SPRAY, [json.dumps({"sources": sources, "target": DEFAULT_SITES["news"].ipv6})],
                    timeout=60)
    prometheus.wait_for_scrapes(time.time())
    exposition = daemon.metrics()
    assert metric_value(exposition, "gatewayd_active_hosts", group="sales") >= SPRAY_ADDRESSES  # the kernel saw them
    talkers = [line for line in exposition.splitlines() if line.startswith("gatewayd_top_talker_bytes{")]
    assert len(talkers) <= 2 * TOP_TALKERS  # two directions per named host
    after = series_count(exposition)
    # Besides the named hosts, only labels from bounded sets: the spray may add its app and class to
    # sales' usage series, never a series per address.
    assert after - len(talkers) - before <= 5, f"{before} other series before the spray, {after} after"
    stored = prometheus.value('count({__name__=~"gatewayd_.+", job="gatewayd"})')
    assert stored <= after + 2 * TOP_TALKERS  # hosts that dropped out of the top N while Prometheus watched
    read_seconds = metric_value(exposition, "gatewayd_scrape_collector_duration_seconds", collector="top_talkers")
    print(f"top_talkers collector read {SPRAY_ADDRESSES}+ hosts in {read_seconds * 1000:.1f} ms; "
          f"series {before} -> {after}")
    assert read_seconds < 1.0


def series_count(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line.startswith("gatewayd_"))


def series_without_talkers(exposition: str) -> int:
    return series_count(exposition) - exposition.count("\ngatewayd_top_talker_bytes{")


# One UDP datagram from each source address; bounded by the list.
SPRAY = r"""
import json, socket, sys
p = json.loads(sys.argv[1])
for source in p["sources"]:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(b"x" * 32, (p["target"], 9))
"""


def test_host_byte_counts_survive_a_reload(scraped_office: tuple[Lab, GatewayDaemon, PrometheusServer, float]) -> None:
    _, daemon, _, _ = scraped_office
    service = OFFICE_HOSTS["service"].ipv4
    before = metric_value(daemon.metrics(), "gatewayd_top_talker_bytes", host=service)
    assert before >= VIDEO_BYTES * (1 - TOLERANCE)
    daemon.reload()
    assert metric_value(daemon.metrics(), "gatewayd_top_talker_bytes", host=service) >= before
