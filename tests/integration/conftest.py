"""Integration suite: real kernel, network namespaces, root.

Every test in this directory is marked ``integration`` and skipped (with the reason)
when the machine cannot build a lab.  Fixtures build the default namespace lab
(gatewayd.lab.Lab) and always tear it down.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.lab import Lab, cleanup_dead_labs
from gatewayd.lab.gateway import GatewayDaemon, running_gatewayd
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY

INTEGRATION_DIR = Path(__file__).resolve().parent
REQUIRED_TOOLS = ("ip", "dnsmasq", "iperf3", "curl", "dig", "sysctl", "ss")


@functools.cache
def lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (they create network namespaces)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"integration tests need these tools: {', '.join(missing)}"
    try:
        subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unavailable: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items; touch only the ones in this directory.
    reason = lab_unavailable_reason()
    for item in items:
        if INTEGRATION_DIR not in Path(item.path).resolve().parents:
            continue
        item.add_marker(pytest.mark.integration)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _remove_labs_of_crashed_runs() -> None:
    """Labs whose owner process is gone are leftovers of a crash; labs of live runs are kept."""
    if lab_unavailable_reason() is None:
        cleanup_dead_labs()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh default lab (network + internet services) for one test."""
    with Lab() as built:
        yield built


@pytest.fixture(scope="module")
def lab_module() -> Iterator[Lab]:
    """One default lab shared by a module's tests (faster; tests must not break it)."""
    with Lab() as built:
        yield built


@pytest.fixture
def office_daemon(tmp_path: Path) -> Iterator[tuple[Lab, GatewayDaemon, Path]]:
    """The office lab with gatewayd running policies/office.yaml, copied to tmp_path (free to change)."""
    policy = tmp_path / "office.yaml"
    policy.write_text(OFFICE_POLICY.read_text())
    with Lab(hosts=OFFICE_HOSTS) as lab, running_gatewayd(lab, policy) as daemon:
        yield lab, daemon, policy
