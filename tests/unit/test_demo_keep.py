"""The kept demo's state file: what --down trusts before it kills a process and removes namespaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatewayd.lab.demo_keep import DEFAULT_STATE_FILE, KeptLab, down_command, tear_down
from gatewayd.lab.topology import process_start_time


def test_state_file_round_trip_and_liveness(tmp_path: Path) -> None:
    state_file = tmp_path / "sub" / "demo-keep.json"
    me = KeptLab("gwl1230-", os.getpid(), process_start_time(os.getpid()))
    me.write(state_file)
    assert KeptLab.read(state_file) == me
    assert me.keeper_alive()
    # The same pid with another start time is a reused pid: not the keeper.
    assert not KeptLab("gwl1230-", os.getpid(), "0").keeper_alive()


@pytest.mark.parametrize("text", [
    "", "not json", "{}", '{"prefix": "gwl1230-", "keeper_pid": "x", "keeper_start_time": "1"}',
    # --down removes namespaces by this prefix: never one that is not a single lab's own.
    '{"prefix": "gwl", "keeper_pid": 1, "keeper_start_time": "1"}',
    '{"prefix": "gwl-", "keeper_pid": 1, "keeper_start_time": "1"}',
    '{"prefix": "", "keeper_pid": 1, "keeper_start_time": "1"}',
    '{"prefix": "netns-", "keeper_pid": 1, "keeper_start_time": "1"}',
])
def test_a_broken_or_foreign_state_file_names_no_lab(tmp_path: Path, text: str) -> None:
    state_file = tmp_path / "demo-keep.json"
    state_file.write_text(text)
    assert KeptLab.read(state_file) is None


def test_down_without_a_kept_lab_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tear_down(tmp_path / "missing.json") == 0
    assert "nothing to tear down" in capsys.readouterr().out


def test_down_command_names_a_non_default_state_file(tmp_path: Path) -> None:
    assert down_command(DEFAULT_STATE_FILE).endswith("scripts/demo --down")
    assert down_command(tmp_path / "s.json").endswith(f"scripts/demo --down --state-file {tmp_path / 's.json'}")
