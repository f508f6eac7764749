"""The shipped unit file passes systemd's own checks and asks for what the daemon does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "gatewayd.service"


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists the ExecStart binary exists: point it at this installation's entry point.
    entry = Path(sys.executable).with_name("gatewayd")
    binary = entry if entry.exists() else Path(sys.executable)
    unit = tmp_path / "gatewayd.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/gatewayd", str(binary)))
    # --man=no: the man page the unit names is installed by the package, not by a checkout
    # (tests/integration/test_package.py verifies the installed unit with it).
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "gatewayd.service" not in result.stderr, result.stderr  # no warnings about our unit


def test_unit_is_notify_with_watchdog_reload_and_least_privilege() -> None:
    settings = unit_settings()
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert set(settings["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert settings[hardening] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert "--state-dir /var/lib/gatewayd" in settings["ExecStart"] and settings["StateDirectory"] == "gatewayd"


def test_unit_runs_what_the_debian_package_installs() -> None:
    # scripts/build-deb ships this very file; its paths are the package's.
    exec_start = unit_settings()["ExecStart"]
    assert exec_start.startswith("/usr/bin/gatewayd run --policy /etc/gatewayd/policy.yaml ")
