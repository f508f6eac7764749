"""The daemon imports only what it runs (issue 14, section 3: RSS after start).

A module imported at start stays resident for the daemon's whole life, on boxes
with as little as 128 MB. These tests import what `gatewayd run` imports before
its first policy build (the command line, every subcommand's parser, the
daemon), in a fresh interpreter, and name what must not be among it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]

# What `python -m gatewayd run` has imported when Daemon.run() starts.
DAEMON_START = """
import json, sys
from gatewayd.cli import build_parser
build_parser()
from gatewayd.daemon.logsetup import setup_logging
from gatewayd.daemon.reactor import Daemon
print(json.dumps(sorted(sys.modules)))
"""

NEVER_IN_THE_DAEMON = {
    "scapy": "lab and test tooling only",
    "dpkt": "the classifier parses bytes by hand",
    "hypothesis": "tests only",
    "pytest": "tests only",
    "gatewayd.lab": "test and demo tooling, the top layer",
    "gatewayd.report": "the `gatewayd report` command, not the daemon",
}

# Loaded by the configuration that needs them, never at start.
ONLY_WHEN_NEEDED = {
    "importlib.metadata": "only `gatewayd --version` needs it (with email, zipfile, csv: ~2 MiB)",
    "cryptography": "QUIC Initial keys: loads on the first QUIC packet (~9 MiB)",
    "pyroute2": "policy routing of several WAN links only (~20 MiB)",
}


def modules_at_daemon_start() -> set[str]:
    result = subprocess.run([sys.executable, "-c", DAEMON_START], cwd=REPOSITORY, capture_output=True,
                            text=True, timeout=60, check=True)
    return set(json.loads(result.stdout))


def imported(modules: set[str], package: str) -> list[str]:
    return sorted(name for name in modules if name == package or name.startswith(package + "."))


def test_the_daemon_start_imports_no_test_lab_or_report_code() -> None:
    modules = modules_at_daemon_start()
    assert "gatewayd.daemon.reactor" in modules  # the probe did import the daemon
    found = {package: imported(modules, package) for package in NEVER_IN_THE_DAEMON}
    assert {package: names for package, names in found.items() if names} == {}


def test_the_daemon_start_leaves_what_only_some_configurations_use_unloaded() -> None:
    modules = modules_at_daemon_start()
    found = {package: imported(modules, package) for package in ONLY_WHEN_NEEDED}
    assert {package: names for package, names in found.items() if names} == {}


# Where pyroute2 may be imported at all, lazily inside a function included: a module the first apply
# runs (apply/epoch_labels.py clears ct labels at every start) would load it into every daemon.
PYROUTE2_ALLOWED_IN = {
    "gatewayd/apply/links.py": "routing of several WAN links, skipped with one link",
}


def modules_importing(package: str) -> set[str]:
    found = set()
    for path in sorted((REPOSITORY / "gatewayd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == package or name.startswith(package + ".") for name in names):
                found.add(path.relative_to(REPOSITORY).as_posix())
    return found


def test_only_the_multi_link_routing_imports_pyroute2_even_lazily() -> None:
    found = modules_importing("pyroute2")
    assert "gatewayd/apply/links.py" in found  # the scan does see a lazy import
    assert found - set(PYROUTE2_ALLOWED_IN) == set()
    assert "gatewayd/apply/epoch_labels.py" not in found
