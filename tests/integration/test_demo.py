"""The lab demo end to end: it runs, and what it prints is still true when it has ended.

With --keep the lab outlives the command: every command it prints must work, and
`--down` must leave no namespace, process, workdir or state file of it behind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.lab import cleanup_stale, list_namespaces
from gatewayd.lab.demo_keep import KeptLab
from gatewayd.lab.prometheus_server import prometheus_binary
from gatewayd.lab.topology import RUN_DIR, process_alive, process_start_time

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo"


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


def shell(command: str) -> subprocess.CompletedProcess[str]:
    """A printed command run as the reader would paste it, from another directory."""
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd="/", timeout=90, check=False)


def lab_pids(prefix: str) -> set[int]:
    pids: set[int] = set()
    for namespace in list_namespaces():
        if namespace.startswith(prefix):
            out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10).stdout
            pids |= {int(pid) for pid in out.split()}
    return pids


def test_kept_demo_commands_work_and_down_removes_everything(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("needs Debian's prometheus package (scripts/setup installs it)")
    state_file = tmp_path / "demo-keep.json"
    output = ""
    try:
        kept = subprocess.run([str(DEMO), "--keep", "--seconds", "1", "--traffic-seconds", "5",
                               "--state-file", str(state_file)], capture_output=True, text=True, timeout=300,
                              check=False)
        output = kept.stdout
        assert kept.returncode == 0, kept.stdout + kept.stderr
        lab = KeptLab.read(state_file)
        assert lab is not None and f"namespaces {lab.prefix}*" in output, output
        assert lab.keeper_alive()
        # The lab outlived the command, owned by the keeper.
        namespaces = [ns for ns in list_namespaces() if ns.startswith(lab.prefix)]
        assert f"{lab.prefix}gw" in namespaces
        owner = json.loads((RUN_DIR / lab.prefix.rstrip("-") / "owner.json").read_text())
        assert owner["pid"] == lab.keeper_pid

        printed = dict(re.findall(r"^  ([A-Za-z ]+):\s+(.+?)\s*$", output, re.MULTILINE))
        assert set(printed) >= {"metrics", "status", "Prometheus", "report", "HTML report", "tear down"}, output
        metrics = shell(printed["metrics"])
        assert metrics.returncode == 0 and "gatewayd_flows_total{" in metrics.stdout, metrics
        status = shell(printed["status"])
        assert status.returncode == 0 and "(generation 1)" in status.stdout, status
        # Prometheus scraped during the traffic and evaluated the recording rules on it.
        answer = shell(printed["Prometheus"])
        assert answer.returncode == 0, answer
        usage = {(s["metric"]["group"], s["metric"]["app"]): float(s["value"][1])
                 for s in json.loads(answer.stdout)["data"]["result"]}
        assert usage.get(("service", "bilibili"), 0) > 0 and usage.get(("finance", "erp"), 0) > 0, usage
        report = shell(printed["report"])
        assert report.returncode == 0 and re.search(r"^  service\s+\d", report.stdout, re.MULTILINE), report
        assert re.search(r"^  im-front-desk-only\s+\d+", report.stdout, re.MULTILINE), report.stdout
        assert "Traffic by department" in output  # the demo printed the text report too
        html = Path(printed["HTML report"].split()[0])
        assert html.is_file() and "<svg" in html.read_text()

        processes = lab_pids(lab.prefix) | {lab.keeper_pid}
        assert len(processes) >= 4  # keeper, gatewayd, Prometheus, the internet's servers
        starts = {pid: process_start_time(pid) for pid in processes}
        down = shell(printed["tear down"])
        assert down.returncode == 0, down
        assert [ns for ns in list_namespaces() if ns.startswith(lab.prefix)] == []
        assert [pid for pid, start in starts.items() if process_alive(pid, start)] == []
        assert not state_file.exists() and not html.exists()
        assert not (RUN_DIR / lab.prefix.rstrip("-")).exists()
        # A second --down has nothing to do and says so.
        again = shell(printed["tear down"])
        assert again.returncode == 0 and "nothing to tear down" in again.stdout, again
    finally:
        if state_file.exists():
            subprocess.run([str(DEMO), "--down", "--state-file", str(state_file)], capture_output=True,
                           timeout=120, check=False)
        started = re.search(r"lab up: namespaces (\S+)\*", output)
        if started:  # the keeper is stopped by its lab's namespaces going away under it
            cleanup_stale(started.group(1))
