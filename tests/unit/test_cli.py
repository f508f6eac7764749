"""The command line as an admin uses it: exit codes, messages, never a traceback."""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
from pathlib import Path

from gatewayd import cli as cli_package
from gatewayd.cli import SUBCOMMANDS, build_parser

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


def test_every_subcommand_is_one_module_of_the_cli_package() -> None:
    subparsers = next(action for action in build_parser()._actions
                      if isinstance(action, argparse._SubParsersAction))
    names = list(subparsers.choices)
    assert names == ["check", "render", "explain", "replay", "run", "classify", "status", "apply", "confirm",
                     "report", "ha-config", "ha-notify"]
    modules = [name.replace("-", "_") for name in names]  # `ha-notify` lives in ha_notify.py
    assert [module.__name__ for module in SUBCOMMANDS] == [f"gatewayd.cli.{name}" for name in modules]  # type: ignore[attr-defined]
    helpers = {"__init__", "control_client", "guard_blocklist"}
    package = Path(cli_package.__file__).parent
    assert {path.stem for path in package.glob("*.py")} - helpers == set(modules)


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback() -> None:
    """`gatewayd render POLICY | head -4`: the pipe closes while gatewayd still writes."""
    read_end, write_end = os.pipe()
    # A one-page pipe, so render (tens of kB) is still writing when the reader goes away.
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    # Unbuffered, Python drops what a partial write left over instead of failing; an admin's shell is buffered.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    process = subprocess.Popen([sys.executable, "-m", "gatewayd", "render", str(OFFICE)], stdout=write_end,
                               stderr=subprocess.PIPE, cwd=REPO, env=env)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            first_lines = [reader.readline() for _ in range(4)]
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert first_lines[0].startswith(b"# gatewayd plan for") and all(first_lines)
    assert stderr.decode() == ""
    assert process.returncode == 141  # the pipe did break: like a C tool killed by SIGPIPE


def test_version_prints_the_installed_package_version() -> None:
    from importlib import metadata

    result = gatewayd("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gatewayd {metadata.version('gatewayd')}"
