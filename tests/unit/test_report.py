"""`gatewayd report`: periods, counter increases, the data gathered from (a stand-in for) Prometheus,
the text and HTML renderings, and one clear line for each kind of bad input."""

from __future__ import annotations

import datetime as dt
import re
import socket
import time
from pathlib import Path

import pytest

from gatewayd.cli import main
from gatewayd.report.html import render_html
from gatewayd.report.periods import period_of
from gatewayd.report.prometheus_api import PrometheusClient, ReportError, Series
from gatewayd.report.text import render_text
from gatewayd.report.usage import counter_increase, gather
from tests.unit.fake_prometheus import Canned, Points, fake_prometheus

GW = {"job": "gatewayd", "instance": "gw:9108"}


# --- periods ------------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 11, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_yesterday_is_midnight_to_midnight_and_compares_with_the_day_before() -> None:
    period = period_of("yesterday", False, False, NOW)
    assert (period.start, period.end) == (NOW.replace(day=10, hour=0, minute=0), NOW.replace(hour=0, minute=0))
    before = period.before()
    assert (before.start, before.end) == (NOW.replace(day=9, hour=0, minute=0), period.start)
    assert period_of(None, False, False, NOW) == period


def test_week_month_and_durations() -> None:
    assert period_of(None, True, False, NOW).start == NOW - dt.timedelta(days=7)
    month = period_of(None, False, True, NOW)
    assert month.start == NOW.replace(day=1, hour=0, minute=0) and month.label == "March 2026 so far"
    assert period_of("6h", False, False, NOW).start == NOW - dt.timedelta(hours=6)
    assert period_of("today", False, False, NOW).start == NOW.replace(hour=0, minute=0)


@pytest.mark.parametrize("since", ["last tuesday", "0h", "5x", "-3h"])
def test_a_period_that_is_not_one_is_a_clear_error(since: str) -> None:
    with pytest.raises(ReportError, match="is not a period"):
        period_of(since, False, False, NOW)


# --- counter increases --------------------------------------------------------------------

def test_a_series_present_at_the_start_counts_only_its_growth() -> None:
    assert counter_increase(Series({}, [(100.0, 500.0), (160.0, 700.0), (220.0, 900.0)]), 100.0) == 400


def test_a_series_born_in_the_period_counts_from_zero() -> None:
    # gatewayd makes a series with a flow's first packets: its first sample is already that flow's bytes.
    assert counter_increase(Series({}, [(160.0, 300.0), (220.0, 900.0)]), 100.0) == 900


def test_a_reset_counts_from_zero_again() -> None:
    assert counter_increase(Series({}, [(100.0, 500.0), (160.0, 700.0), (220.0, 50.0), (280.0, 80.0)]),
                            100.0) == 200 + 50 + 30


# --- gathered from a Prometheus ------------------------------------------------------------

def samples(now: float, value_at: dict[int, float] | None = None, first: int = 0, per_minute: float = 0.0,
            start_value: float = 0.0) -> Points:
    """One sample a minute over the last two hours (30 s off the minute), from minute `first` on."""
    return [(now - 7200 + 30 + 60 * k, start_value + per_minute * (k - first)) for k in range(first, 120)]


def office(now: float) -> Canned:
    allow = {**GW, "action": "allow"}
    return {
        'gatewayd_traffic_bytes_total{action="allow"}': [
            ({**allow, "group": "sales", "app": "youku", "class": "bulk"}, samples(now, per_minute=1000)),
            ({**allow, "group": "sales", "app": "dingtalk", "class": "realtime"}, samples(now, per_minute=100)),
            # finance starts using the ERP 30 minutes ago; its series is born with 5,000 bytes.
            ({**allow, "group": "finance", "app": "erp", "class": "business"},
             samples(now, first=90, per_minute=500, start_value=5000)),
        ],
        'gatewayd_traffic_packets_total{action="block"}': [
            ({**GW, "action": "block", "group": "finance", "app": "wechat", "class": "none"},
             samples(now, first=100, start_value=3)),
        ],
        "gatewayd_top_talker_bytes": [
            ({**GW, "host": "192.0.2.20", "group": "sales", "direction": "download"}, samples(now, per_minute=800)),
            ({**GW, "host": "192.0.2.20", "group": "sales", "direction": "upload"}, samples(now, per_minute=200)),
            ({**GW, "host": "192.0.2.130", "group": "finance", "direction": "download"},
             samples(now, first=90, per_minute=500, start_value=5000)),
        ],
        'gatewayd_rule_info{action="block"}': [
            ({**GW, "rule": "im-front-desk-only", "action": "block"}, samples(now, start_value=1)),
        ],
        "gatewayd_rule_hits_total": [
            ({**GW, "rule": "im-front-desk-only"}, samples(now, first=100, start_value=3)),
            ({**GW, "rule": "video-is-bulk"}, samples(now, per_minute=50)),  # an allow rule: not a block
        ],
        'gatewayd_class_bytes_total{class!="total"}': [
            ({**GW, "interface": "lan0", "direction": "download", "group": "shared", "class": "bulk"},
             samples(now, per_minute=600)),
        ],
        'gatewayd_class_drops_total{class!="total"}': [
            ({**GW, "interface": "lan0", "direction": "download", "group": "shared", "class": "bulk"},
             samples(now, per_minute=1)),
        ],
    }


def test_the_last_hour_per_department_app_talker_rule_and_class() -> None:
    now = time.time()
    period = period_of("1h", False, False, dt.datetime.fromtimestamp(now).astimezone())
    with fake_prometheus(office(now)) as url:
        data = gather(PrometheusClient(url), period)
    sales, finance = data.departments
    assert (sales.name, sales.bytes, sales.previous_bytes) == ("sales", 66_000, 64_900)
    assert sales.top_apps == [("youku", 60_000), ("dingtalk", 6_000)]
    assert (finance.name, finance.bytes, finance.previous_bytes) == ("finance", 19_500, 0)
    assert finance.blocked_packets == 3
    assert [(t.host, t.upload, t.download) for t in data.talkers] == [("192.0.2.20", 12_000, 48_000),
                                                                     ("192.0.2.130", 0, 19_500)]
    assert data.blocked_by_app == [("finance", "wechat", 3)]
    assert data.blocked_by_rule == [("im-front-desk-only", 3)]
    assert [(c.qos_class, c.bytes, c.drops) for c in data.classes] == [("bulk", 36_000, 60)]

    text = render_text(data)
    assert re.search(r"sales\s+66\.0 kB\s+77%\s+64\.9 kB\s+\+2%", text), text
    assert re.search(r"finance\s+19\.5 kB\s+23%\s+0 B\s+new\s+3", text), text
    assert re.search(r"192\.0\.2\.20\s+sales\s+60\.0 kB\s+12\.0 kB\s+48\.0 kB", text), text
    assert "video-is-bulk" not in text

    page = render_html(data)
    for number in ("66.0 kB", "19.5 kB", "60.0 kB", "im-front-desk-only"):
        assert number in page


def test_html_is_self_contained_and_every_chart_has_bars() -> None:
    now = time.time()
    period = period_of("1h", False, False, dt.datetime.fromtimestamp(now).astimezone())
    with fake_prometheus(office(now)) as url:
        page = render_html(gather(PrometheusClient(url), period))
    assert "<script" not in page and not re.search(r"""(src|href)=|url\(|@import""", page)
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.DOTALL)
    assert len(charts) >= 5  # departments, two departments' apps, talkers, blocked, rules, classes
    assert all('class="bar"' in chart for chart in charts)


def test_one_department_only() -> None:
    now = time.time()
    period = period_of("1h", False, False, dt.datetime.fromtimestamp(now).astimezone())
    with fake_prometheus(office(now)) as url:
        data = gather(PrometheusClient(url), period, group="finance")
    assert [d.name for d in data.departments] == ["finance"]
    assert [t.host for t in data.talkers] == ["192.0.2.130"]


# --- bad input: one line, exit 1, no traceback ---------------------------------------------

def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = report(capsys, "--prometheus", f"http://127.0.0.1:{closed_port()}", "--text")
    assert code == 1 and out == ""
    assert re.fullmatch(r"gatewayd report: cannot reach Prometheus at http://127\.0\.0\.1:\d+: "
                        r"Connection refused \(is it running\? .*\)\n", err), err


def test_no_data_for_the_period(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_prometheus({'gatewayd_traffic_bytes_total{action="allow"}': [],
                          'gatewayd_traffic_packets_total{action="block"}': []}) as url:
        code, _, err = report(capsys, "--prometheus", url, "--week", "--text")
    assert code == 1 and err.count("\n") == 1
    assert "has no gatewayd traffic for the last 7 days" in err


def test_unknown_group(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_prometheus(office(time.time())) as url:
        code, _, err = report(capsys, "--prometheus", url, "--since", "1h", "--group", "marketing", "--text")
    assert code == 1
    assert err == "gatewayd report: no traffic of a group 'marketing' in the last 1 hour " \
                  "(groups with traffic: finance, sales)\n"


def test_a_query_prometheus_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_prometheus({}) as url:  # answers every query with its 400 and an error text
        code, _, err = report(capsys, "--prometheus", url, "--since", "2h", "--text")
    assert code == 1 and err.startswith(f"gatewayd report: Prometheus at {url} refused the query: unknown query")


def test_html_file_is_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "office.html"
    with fake_prometheus(office(time.time())) as url:
        code, out, _ = report(capsys, "--prometheus", url, "--since", "1h", "-o", str(target))
    assert code == 0 and out == f"gatewayd report: the last 1 hour written to {target}\n"
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with fake_prometheus(office(time.time())) as url:
        code, _, err = report(capsys, "--prometheus", url, "--since", "1h", "-o", str(tmp_path / "no" / "r.html"))
    assert code == 1 and err.startswith("gatewayd report: cannot write ") and "Traceback" not in err
