"""The lab demo end to end: it runs, and what it prints is still true when it has ended."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.lab import list_namespaces

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_demo_prints_no_command_for_a_namespace_it_removed() -> None:
    result = subprocess.run([sys.executable, "-m", "gatewayd.lab.demo", "--seconds", "1"], capture_output=True,
                            text=True, cwd=REPO, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done: no namespace, table or qdisc left behind." in result.stdout
    prefix = re.search(r"lab up: namespaces (\S+)\*", result.stdout)
    assert prefix, result.stdout
    assert [ns for ns in list_namespaces() if ns.startswith(prefix.group(1))] == []
    # Every namespace a printed command names must still exist for the reader to run it.
    named = set(re.findall(r"ip netns exec (\S+)", result.stdout))
    assert named <= set(list_namespaces()), f"the demo prints commands for removed namespaces: {sorted(named)}"
