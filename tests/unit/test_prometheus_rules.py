"""The recording rules shipped in prometheus/: valid for promtool, and right on series written by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "prometheus" / "gatewayd.rules.yml"
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (scripts/setup installs Debian's prometheus package)")
        pytest.skip("promtool is missing (scripts/setup installs Debian's prometheus package)")
    return found


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_compute_what_their_unit_tests_expect() -> None:
    assert RULE_TESTS, "no promtool rule tests in prometheus/tests"
    result = subprocess.run([promtool(), "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True,
                            timeout=120, check=False, cwd=REPO / "prometheus" / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_recording_rule_is_unit_tested() -> None:
    recorded = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines()
                if line.strip().startswith("- record:")}
    tested = "\n".join(path.read_text() for path in RULE_TESTS)
    assert sorted(name for name in recorded if name not in tested) == []
