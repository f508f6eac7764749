"""The command line as an admin uses it: exit codes, messages, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "policies" / "office.yaml"


def gatewayd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatewayd", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_check_accepts_the_office_policy() -> None:
    result = gatewayd("check", str(OFFICE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_lists_every_error_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = OFFICE.read_text().replace("upload: 20mbit", "upload: 20mbps").replace(
        "schedule: work-hours", "schedule: work-hour", 1)
    bad.write_text(text)
    result = gatewayd("check", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert any("20mbps" in line for line in lines) and any("work-hour" in line for line in lines)


def test_check_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = gatewayd("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{tmp_path / 'nope.yaml'}:1:1:")


def test_render_prints_the_ruleset_and_tc_trees_without_root() -> None:
    result = gatewayd("render", str(OFFICE))
    assert result.returncode == 0, result.stderr
    assert "table inet gatewayd {" in result.stdout
    assert "chain rules {" in result.stdout and "tc qdisc replace dev wan0 root handle 1: htb" in result.stdout
    assert "GATEWAYD_QUEUE" in result.stdout


def test_render_refuses_a_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninterfaces: [\n")
    result = gatewayd("render", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr and result.stdout == ""


def test_version_prints_the_installed_package_version() -> None:
    from importlib import metadata

    result = gatewayd("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gatewayd {metadata.version('gatewayd')}"
