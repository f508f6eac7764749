"""Tests find the labelled captures in ../shared (or GATEWAYD_SHARED_DIR); under CI a missing set fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.lab import captures

ROOT = Path(__file__).resolve().parents[2]
NEEDS_CAPTURES = "tests/unit/test_classify_offline.py::test_command_prints_one_json_object_per_flow"


def test_default_is_shared_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(captures.SHARED_DIR_VARIABLE, raising=False)
    assert captures.capture_set("pcaps-more") == ROOT.parent / "shared" / "pcaps-more"


def test_variable_overrides_and_missing_set_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(captures.SHARED_DIR_VARIABLE, str(tmp_path))
    directory = captures.capture_set()
    assert directory == tmp_path / "pcaps"
    reason = captures.missing_reason(directory)
    assert reason is not None and captures.SHARED_DIR_VARIABLE in reason
    directory.mkdir()
    (directory / "labels.jsonl").write_text("")
    assert captures.missing_reason(directory) is None


def run_pytest(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"} | environment
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", NEEDS_CAPTURES],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_missing_captures_skip_locally_but_fail_in_ci(tmp_path: Path) -> None:
    local = run_pytest({captures.SHARED_DIR_VARIABLE: str(tmp_path)})
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = run_pytest({captures.SHARED_DIR_VARIABLE: str(tmp_path), "CI": "true"})
    assert ci.returncode != 0 and "fails instead of skipping" in ci.stdout, ci.stdout
