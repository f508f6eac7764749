"""The takeover hold in a real kernel: `gatewayd ha-notify` fills and refreshes `inet gatewayd_ha`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
NAMESPACE = f"gwha{os.getpid()}"


def in_namespace(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", NAMESPACE, *argv], capture_output=True, text=True,
                          timeout=30, check=check)


@pytest.fixture
def namespace() -> Iterator[None]:
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True, timeout=10)
    try:
        in_namespace("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "wan0")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], timeout=10, check=False)


def notify(state: str, tmp: str) -> subprocess.CompletedProcess[str]:
    return in_namespace(sys.executable, "-m", "gatewayd", "ha-notify", state, "--node", "gw-a",
                        "--conntrackd-config", f"{tmp}/conntrackd.conf", "--hold", "lan0,wan0", check=False)


def test_backup_holds_the_ports_and_a_master_without_gatewayds_table_lets_the_hold_run_out(
        namespace: None, tmp_path: object) -> None:
    backup = notify("backup", str(tmp_path))
    held = in_namespace("nft", "list", "set", "inet", "gatewayd_ha", "hold").stdout
    assert '"lan0"' in held and '"wan0"' in held and "expires" not in held, backup.stderr
    master = notify("master", str(tmp_path))
    assert "step=table_in_force ok=false" in master.stderr  # no gatewayd in this namespace
    held = in_namespace("nft", "list", "set", "inet", "gatewayd_ha", "hold").stdout
    assert held.count("expires") == 2, held  # still held, but only for HOLD_TIMEOUT_SECONDS
    chain = in_namespace("nft", "list", "chain", "inet", "gatewayd_ha", "hold_unsynced").stdout
    assert chain.count(" drop comment") == 2 and "reject" not in chain


def test_master_with_gatewayds_table_in_force_releases_the_hold(namespace: None, tmp_path: object) -> None:
    notify("backup", str(tmp_path))
    in_namespace("nft", "add", "table", "inet", "gatewayd")  # stands for the running daemon's table
    master = notify("master", str(tmp_path))
    assert "step=release ok=true" in master.stderr, master.stderr
    held = in_namespace("nft", "list", "set", "inet", "gatewayd_ha", "hold").stdout
    assert "lan0" not in held and "wan0" not in held
