"""The namespace lab on its own (no gatewayd): names resolve, sites answer, cleanup is total."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gatewayd.lab import (
    DEFAULT_HOSTS,
    DEFAULT_SITES,
    IPERF_SERVER_V4,
    IPERF_SERVER_V6,
    Lab,
    cleanup_dead_labs,
    list_namespaces,
    traffic,
)
from gatewayd.lab.topology import NETNS_ETC_DIR, RUN_DIR
from gatewayd.lab.traffic import Outcome

pytestmark = pytest.mark.integration

WEB_SITES = [site for site in DEFAULT_SITES.values() if site.key != "dns"]
CLIENT = "sales1"


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _assert_lab_gone(prefix: str, pids: list[int]) -> None:
    assert [ns for ns in list_namespaces() if ns.startswith(prefix)] == []
    assert list(NETNS_ETC_DIR.glob(f"{prefix}*")) == []
    assert not (RUN_DIR / prefix.rstrip("-")).exists()
    assert [pid for pid in pids if _pid_alive(pid)] == []


# -- reachability ---------------------------------------------------------------------------


@pytest.mark.parametrize("ip_version", [4, 6])
def test_every_site_answers_https_by_name(lab_module: Lab, ip_version: int) -> None:
    for site in WEB_SITES:
        result = traffic.https_get(lab_module, CLIENT, site.hostname, timeout=3, ip_version=ip_version)
        assert result.ok and result.http_code == 200, (site.hostname, result)
        assert result.remote_ip == (site.ipv4 if ip_version == 4 else site.ipv6)


def test_every_lan_host_reaches_the_internet(lab_module: Lab) -> None:
    for host in DEFAULT_HOSTS:
        result = traffic.https_get(lab_module, host, DEFAULT_SITES["news"].hostname, timeout=3)
        assert result.ok, (host, result)


def test_erp_https_on_8443_and_http_bytes(lab_module: Lab) -> None:
    erp = traffic.https_get(lab_module, CLIENT, f"https://{DEFAULT_SITES['erp'].hostname}:8443/", timeout=3)
    assert erp.ok and erp.http_code == 200, erp
    download = traffic.http_get(lab_module, CLIENT, DEFAULT_SITES["bilibili"].hostname,
                                path="/bytes/200000", timeout=5)
    assert download.ok and download.bytes_downloaded == 200_000, download


def test_dns_returns_cname_chain_and_nxdomain(lab_module: Lab) -> None:
    youku = DEFAULT_SITES["youku"]
    answer_v4 = traffic.dns_query(lab_module, CLIENT, youku.hostname, "A")
    assert answer_v4.status == "NOERROR"
    assert answer_v4.answers == [f"{youku.cname}.", youku.ipv4]
    assert answer_v4.records[0] == (f"{youku.hostname}.", "CNAME", f"{youku.cname}.")
    answer_v6 = traffic.dns_query(lab_module, CLIENT, youku.hostname, "AAAA")
    assert answer_v6.addresses == [youku.ipv6]
    # Nothing is forwarded: a real-world name is simply unknown to the lab.
    assert traffic.dns_query(lab_module, CLIENT, "example.org", "A").status == "NXDOMAIN"


def test_bittorrent_peer_answers_handshake(lab_module: Lab) -> None:
    peer = DEFAULT_SITES["bittorrent"]
    for address in (peer.ipv4, peer.ipv6):
        result = traffic.bittorrent_handshake(lab_module, CLIENT, address, timeout=3)
        assert result.outcome == Outcome.ANSWERED, result


def test_tcp_refused_and_udp_echo(lab_module: Lab) -> None:
    news = DEFAULT_SITES["news"]
    assert traffic.tcp_connect(lab_module, CLIENT, news.ipv4, 9, timeout=2).outcome == Outcome.REFUSED
    echo = traffic.udp_send(lab_module, CLIENT, news.ipv6, 443, count=3, expect_reply=True)
    assert (echo.outcome, echo.sent, echo.replies) == (Outcome.OK, 3, 3)


def test_iperf3_gives_plausible_rate(lab_module: Lab) -> None:
    upload = traffic.iperf3(lab_module, CLIENT, IPERF_SERVER_V4, seconds=1)
    download = traffic.iperf3(lab_module, "sales2", IPERF_SERVER_V6, seconds=1, reverse=True)
    for rate in (upload, download):
        assert 10e6 < rate < 1e12  # veth: far above 10 Mbit/s, far below a terabit


def test_gateway_is_configured(lab_module: Lab) -> None:
    forwarding = lab_module.run("gw", ["sysctl", "-n", "net.ipv4.ip_forward",
                                       "net.ipv6.conf.all.forwarding"]).stdout.split()
    assert forwarding == ["1", "1"]
    links = lab_module.run("gw", ["ip", "-br", "addr"]).stdout
    assert "192.0.2.1/24" in links and "198.51.100.1/24" in links and "2001:db8:ff::1/64" in links
    spec = DEFAULT_HOSTS[CLIENT]
    host_link = lab_module.run(CLIENT, ["ip", "-br", "link", "show", "eth0"]).stdout
    assert spec.mac in host_link
    resolv = lab_module.run(CLIENT, ["cat", "/etc/resolv.conf"]).stdout
    assert "nameserver 203.0.113.53" in resolv


# -- isolation and cleanup --------------------------------------------------------------------


def test_two_labs_coexist(lab_module: Lab, lab: Lab) -> None:
    assert lab.prefix != lab_module.prefix
    assert set(lab.namespaces).isdisjoint(lab_module.namespaces)
    for each in (lab_module, lab):
        result = traffic.https_get(each, CLIENT, DEFAULT_SITES["dingtalk"].hostname, timeout=3)
        assert result.ok, (each.prefix, result)


def test_nothing_remains_after_exit() -> None:
    with Lab(hosts={"pc1": DEFAULT_HOSTS["sales1"]}) as lab:
        prefix = lab.prefix
        assert lab.services is not None
        pids = lab.services.pids()
        pids += [int(p.read_text().split()[0]) for p in lab.services.pid_files]
        assert all(_pid_alive(pid) for pid in pids)
        assert len(list_namespaces()) >= 4
    _assert_lab_gone(prefix, pids)


def test_cleanup_happens_on_exception() -> None:
    prefix = ""
    with pytest.raises(RuntimeError, match="boom"), Lab(start_services=False) as lab:
        prefix = lab.prefix
        raise RuntimeError("boom")
    _assert_lab_gone(prefix, [])


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    # A child builds a lab, starts a process that would outlive it, and dies without cleanup.
    crash = textwrap.dedent("""
        import os, subprocess
        from gatewayd.lab import DEFAULT_HOSTS, Lab
        lab = Lab(hosts={"pc1": DEFAULT_HOSTS["sales1"]}, start_services=False)
        lab.build()
        orphan = subprocess.Popen(["ip", "netns", "exec", lab.ns_name("inet"), "sleep", "300"],
                                  start_new_session=True, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(lab.prefix, orphan.pid, flush=True)
        os._exit(1)
    """)
    proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2])
    prefix, orphan_pid = proc.stdout.split()
    assert any(ns.startswith(prefix) for ns in list_namespaces())
    assert _pid_alive(int(orphan_pid))

    assert prefix in cleanup_dead_labs()
    _assert_lab_gone(prefix, [int(orphan_pid)])


def test_live_labs_survive_dead_lab_cleanup(lab_module: Lab) -> None:
    cleanup_dead_labs()
    assert all(ns in list_namespaces() for ns in lab_module.namespaces)
    assert os.path.isdir(lab_module.workdir)
