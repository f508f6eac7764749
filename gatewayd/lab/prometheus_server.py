"""A real Prometheus server (Debian's /usr/bin/prometheus) in a lab's gateway namespace, scraping gatewayd.

It listens on the namespace's loopback only, keeps its data in the lab's workdir,
scrapes every `scrape_interval` and loads the repository's recording rules with
their evaluation intervals shortened to the same interval, so a test (or the
demo) sees recorded series within seconds instead of minutes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from gatewayd.lab.gateway import METRICS_LISTEN
from gatewayd.lab.runner import NamespaceRunner
from gatewayd.lab.topology import GATEWAY

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "prometheus" / "gatewayd.rules.yml"
LISTEN = "127.0.0.1:9090"
START_TIMEOUT_SECONDS = 30.0


class PrometheusError(RuntimeError):
    pass


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def fast_rules(text: str, interval: str) -> str:
    """The rules file with every group's evaluation `interval:` set to `interval`."""
    return re.sub(r"^(\s+interval:) \S+$", rf"\1 {interval}", text, flags=re.MULTILINE)


class PrometheusServer:
    def __init__(self, lab: NamespaceRunner, scrape_interval: str = "1s", target: str = METRICS_LISTEN) -> None:
        self.lab = lab
        self.scrape_interval = scrape_interval
        self.target = target
        self.directory = lab.workdir / "prometheus"
        self.url = f"http://{LISTEN}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> PrometheusServer:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("no prometheus binary (Debian package prometheus; scripts/setup installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        rules = self.directory / "gatewayd.rules.yml"
        rules.write_text(fast_rules(RULES.read_text(), self.scrape_interval))
        config = self.directory / "prometheus.yml"
        config.write_text(
            f"global: {{ scrape_interval: {self.scrape_interval}, evaluation_interval: {self.scrape_interval} }}\n"
            f"rule_files: [{rules}]\n"
            "scrape_configs:\n"
            f"  - job_name: gatewayd\n    static_configs: [{{ targets: ['{self.target}'] }}]\n")
        self.process = self.lab.popen(GATEWAY, [
            binary, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address={LISTEN}", "--log.level=warn"], log_name="prometheus.log")
        self.wait(lambda: self.get("/-/ready", check=False) is not None, timeout, "Prometheus to be ready")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def get(self, path: str, params: dict[str, str] | None = None, check: bool = True) -> str | None:
        """GET from inside the gateway namespace (Prometheus listens on its loopback only)."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        result = self.lab.run(GATEWAY, ["curl", "-s", "--max-time", "10", url], timeout=15, check=False)
        if result.returncode != 0:
            if check:
                raise PrometheusError(f"GET {url}: curl exit {result.returncode}")
            return None
        return result.stdout

    def api(self, path: str, params: dict[str, str]) -> Any:
        """The `data` of an API answer; an error answer raises with Prometheus' message."""
        body = json.loads(self.get(path, params) or "{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{params.get('query', path)}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("/api/v1/query", {"query": expr})["result"]
        return result

    def query_range(self, expr: str, seconds: float, step: float = 1.0) -> list[dict[str, Any]]:
        end = time.time()
        result: list[dict[str, Any]] = self.api("/api/v1/query_range", {
            "query": expr, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})["result"]
        return result

    def value(self, expr: str) -> float:
        """The sum of an instant query's samples (0 if there are none)."""
        return sum(float(sample["value"][1]) for sample in self.query(expr))

    def wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: "
                                      + (self.lab.workdir / "prometheus.log").read_text()[-2000:])
            if ready():
                return
            time.sleep(0.25)
        raise PrometheusError(f"waited {timeout:g} s for {what}")

    def wait_for_scrapes(self, after: float, timeout: float = 20.0) -> None:
        """Until Prometheus has scraped gatewayd successfully at least twice since `after` (unix time),
        and evaluated the recording rules on those scrapes."""
        def scraped() -> bool:
            found = self.query("timestamp(up{job=\"gatewayd\"} == 1)")
            rules = self.query("timestamp(gatewayd:link_bits:rate5m)")
            return bool(found and rules) and min(float(s["value"][1]) for s in found + rules) > after + 2
        self.wait(scraped, timeout, "two scrapes of gatewayd and a rule evaluation")
