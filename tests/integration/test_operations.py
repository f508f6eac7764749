"""Running as a service: last-known-good start, systemd notify and watchdog."""

from __future__ import annotations

import re
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, GatewayError, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab
from gatewayd.lab.traffic import Outcome

pytestmark = pytest.mark.integration
BLOCKED = {Outcome.RESET, Outcome.REFUSED}
WECHAT = DEFAULT_SITES["wechat"].hostname


@pytest.fixture
def office(tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    policy = tmp_path / "office.yaml"
    policy.write_text(OFFICE_POLICY.read_text())
    with Lab(hosts=OFFICE_HOSTS) as lab:
        yield lab, policy


def test_broken_policy_at_start_runs_the_last_known_good_one(office: tuple[Lab, Path]) -> None:
    lab, policy = office
    daemon = GatewayDaemon(lab, policy).start()
    daemon.stop()
    # The copy names hosts and MACs: private even though the lab's umask is not.
    assert stat.S_IMODE((daemon.state_dir / "last-good-policy.yaml").stat().st_mode) == 0o600
    good = policy.read_text()
    policy.write_text(good.replace("  upload: 20mbit", "  upload: twenty"))
    daemon = GatewayDaemon(lab, policy).start()
    try:
        log = daemon.log_text()
        assert re.search(r"event=policy_invalid where=\S+office\.yaml:\d+:\d+ message=.*twenty", log)
        assert "event=started_degraded" in log
        assert metric_value(daemon.metrics(), "gatewayd_policy_degraded") == 1
        # The last-known-good policy is really in force.
        assert traffic.https_get(lab, "finance", WECHAT, ip_version=4).error in BLOCKED
        assert traffic.https_get(lab, "sales", WECHAT, ip_version=4).ok
        policy.write_text(good)
        daemon.reload()
        assert metric_value(daemon.metrics(), "gatewayd_policy_degraded") == 0
    finally:
        daemon.stop()


def test_broken_policy_and_no_last_known_good_refuses_to_start(office: tuple[Lab, Path]) -> None:
    lab, policy = office
    policy.write_text("version: 1\ninterfaces: {lan: lan0\n")
    daemon = GatewayDaemon(lab, policy)
    with pytest.raises(GatewayError) as failure:
        daemon.start(timeout=10)
    assert daemon.process is not None and daemon.process.returncode == 1
    assert "event=no_policy" in str(failure.value) and "Traceback" not in str(failure.value)


def test_systemd_hears_ready_watchdog_reloading_and_stopping(office: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, policy = office
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.2)
    messages: list[str] = []

    def drain(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                messages.append(listener.recv(4096).decode())
            except TimeoutError:
                pass

    daemon = GatewayDaemon(lab, policy).start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    try:
        drain(2.5)
        ready = [m for m in messages if "READY=1" in m]
        assert ready and "STATUS=policy applied, generation 1" in ready[0]
        assert sum("WATCHDOG=1" in m for m in messages) >= 3  # every 0.5 s from the main loop
        daemon.reload()
        drain(0.5)
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in messages)
        assert any("READY=1" in m and "generation 2" in m for m in messages)
    finally:
        daemon.stop()
        listener.settimeout(2)
        drain(0.5)
        listener.close()
    assert any("STOPPING=1" in m for m in messages)


def test_last_known_good_keeps_a_relative_bindings_file(office: tuple[Lab, Path]) -> None:
    lab, policy = office
    text = policy.read_text()
    start = text.index("    hosts:\n", text.index("\n  bindings:\n"))
    end = text.index("    learn:", start)
    (policy.parent / "site").mkdir()
    ethers = policy.parent / "site" / "office.ethers"
    # The office's pairs, moved to a file the policy names relative to itself; one extra pair marks it.
    pairs = [line.split(": ", 1) for line in text[start:end].splitlines()[1:]]
    ethers.write_text("".join(f"{mac} {address.strip()}\n" for address, mac in pairs)
                      + "02:00:00:00:0a:bc 192.0.2.77\n")
    assert ["192.0.2.20", "02:00:00:00:00:20"] in [[a.strip(), m] for a, m in pairs]
    policy.write_text(text[:start] + "    file: site/office.ethers\n" + text[end:])
    daemon = GatewayDaemon(lab, policy).start()
    daemon.stop()
    ethers.unlink()  # gone, and the policy broken: only the saved copies are left
    policy.write_text("version: 1\ninterfaces: {lan: lan0\n")
    daemon = GatewayDaemon(lab, policy).start()
    try:
        log = daemon.log_text()
        assert "event=started_degraded" in log and "Traceback" not in log, log
        assert metric_value(daemon.metrics(), "gatewayd_policy_degraded") == 1
        listing = daemon.nft("list", "ruleset")
        assert "192.0.2.77 . 02:00:00:00:0a:bc" in listing  # the file's bindings are in force
    finally:
        daemon.stop()
