"""Run the real gatewayd daemon in a lab's gateway namespace, for the demo and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gatewayd.lab.runner import NamespaceRunner
from gatewayd.lab.topology import GATEWAY

START_TIMEOUT_SECONDS = 20.0
METRICS_LISTEN = "127.0.0.1:9108"


class GatewayError(RuntimeError):
    pass


class GatewayDaemon:
    """`gatewayd run` inside the lab's gateway namespace, with its log in the lab's workdir."""

    def __init__(self, lab: NamespaceRunner, policy_path: str | Path, log_name: str = "gatewayd.log",
                 ns_key: str = GATEWAY) -> None:
        """`ns_key`: the gateway namespace; another one (a second box of an HA pair) gets its
        own state directory and control socket, named after it."""
        self.lab = lab
        self.policy_path = Path(policy_path)
        self.log_path = lab.workdir / log_name
        self._log_name = log_name
        self.ns_key = ns_key
        own = "" if ns_key == GATEWAY else f"{ns_key}-"
        # Kept across restarts of this runner, like /var/lib/gatewayd on a real box.
        self.state_dir = lab.workdir / f"{own}gatewayd-state"
        self.control_socket = lab.workdir / f"{own}control.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT_SECONDS, log_level: str = "info",
              env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
              command_prefix: tuple[str, ...] = ()) -> GatewayDaemon:
        """`command_prefix`: run the daemon under e.g. `chrt` or `nice`, as a unit's scheduling settings would."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gatewayd", "run", "--policy", str(self.policy_path),
                "--state-dir", str(self.state_dir), "--control-socket", str(self.control_socket),
                "--log-level", log_level, *extra_args]
        self.process = self.lab.popen(self.ns_key, [*command_prefix, *argv], log_name=self._log_name,
                                      env={**os.environ, **(env or {})})
        self.wait_for_log("event=started ", offset, timeout)
        return self

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def wait_for_log(self, needle: str, offset: int = 0, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text(offset)
            if needle in text:
                return text
            if self.process is not None and self.process.poll() is not None:
                raise GatewayError(f"gatewayd exited with {self.process.returncode}:\n{self.log_text(offset)}")
            time.sleep(0.05)
        raise GatewayError(f"no {needle!r} in gatewayd's log within {timeout}s:\n{self.log_text(offset)}")

    def reload(self, expect: str = "event=reloaded", timeout: float = 10.0) -> str:
        """SIGHUP, then wait for `expect` in the log lines written after it."""
        offset = self.log_size()
        self.signal(signal.SIGHUP)
        return self.wait_for_log(expect, offset, timeout)

    def signal(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            raise GatewayError("gatewayd is not running")
        # `ip netns exec` execs the daemon, so the Popen pid is the daemon's.
        os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no teardown runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def memory_kib(self, field: str = "VmRSS") -> int:
        """A memory figure of the daemon from /proc (VmRSS now, VmHWM the peak), in KiB."""
        if self.process is None:
            raise GatewayError("gatewayd is not running")
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise GatewayError(f"no {field} in /proc/{self.process.pid}/status")

    def metrics(self, listen: str = METRICS_LISTEN) -> str:
        url = f"http://{listen}/metrics"
        result = self.lab.run(self.ns_key, ["curl", "-s", "--max-time", "5", url], timeout=10)
        return result.stdout

    def wait_for_learned_writes(self, timeout: float = 5.0) -> None:
        """Until the learned-address writer has put into the kernel all it was handed (the DNS
        answer is released first: apply/learned_writer.py)."""
        deadline = time.monotonic() + timeout
        while metric_value(self.metrics(), "gatewayd_dns_learned_pending") != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"learned addresses still waiting for the kernel after {timeout:g} s")
            time.sleep(0.05)

    def control(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """`gatewayd status/apply/confirm ...` against this daemon's control socket."""
        return subprocess.run([sys.executable, "-m", "gatewayd", *args, "--socket", str(self.control_socket)],
                              capture_output=True, text=True, timeout=timeout)

    def nft(self, *args: str) -> str:
        return self.lab.run(self.ns_key, ["nft", *args], timeout=10).stdout


@contextmanager
def running_gatewayd(lab: NamespaceRunner, policy_path: str | Path) -> Iterator[GatewayDaemon]:
    """The daemon started with `policy_path`, stopped (SIGTERM) when the block ends, however it ends."""
    daemon = GatewayDaemon(lab, policy_path).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in _split_labels(label_text.rstrip("}"))) if label_text else {}
        found = {k: urllib.parse.unquote(v.strip('"')) for k, v in found.items()}
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def promtool_problems(exposition: str, promtool: str = "promtool") -> list[str]:
    """What `promtool check metrics` finds in an exposition: parse errors (a repeated HELP
    line, a bad sample line) and naming-guideline findings alike; none is accepted."""
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode == 0:
        return []
    findings = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return findings or [f"promtool exited with {result.returncode}"]


def _split_labels(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts
