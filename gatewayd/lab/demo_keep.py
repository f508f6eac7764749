"""`scripts/demo --keep` and `scripts/demo --down`: a demo lab that outlives the command that built it.

A lab's processes die with the process that started them (PDEATHSIG), and other runs
remove labs whose owner is gone (`cleanup_dead_labs`), so the kept lab needs an owner
that stays: the keeper, a copy of the demo in a session of its own. It builds the lab,
runs the demo, writes a state file naming itself and the lab's prefix, says it is ready
and waits for SIGTERM. The command the reader typed relays the keeper's output until
then and returns. `--down` stops the keeper, which tears its lab down, then removes
whatever still carries the lab's prefix (everything, if the keeper had been killed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gatewayd.lab.topology import (
    PREFIX_ROOT,
    RUN_DIR,
    cleanup_stale,
    list_namespaces,
    process_alive,
    process_start_time,
)

DEFAULT_STATE_FILE = RUN_DIR / "demo-keep.json"
KEEPER_FLAG = "--keeper"
READY_LINE = "demo keeper: ready"  # the keeper's last line on the pipe; not shown to the reader
STOP_TIMEOUT_SECONDS = 60.0  # the keeper stops the daemon and Prometheus and removes ~10 namespaces
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


@dataclass(frozen=True)
class KeptLab:
    """What the state file records: the lab's prefix and the keeper that owns it."""

    prefix: str
    keeper_pid: int
    keeper_start_time: str | None

    @classmethod
    def read(cls, path: Path) -> KeptLab | None:
        try:
            fields = json.loads(path.read_text())
            kept = cls(str(fields["prefix"]), int(fields["keeper_pid"]), fields["keeper_start_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # cleanup_stale removes by this prefix: only ever a lab's own.
        return kept if re.fullmatch(rf"{PREFIX_ROOT}\d+-", kept.prefix) else None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)) + "\n")

    def keeper_alive(self) -> bool:
        return process_alive(self.keeper_pid, self.keeper_start_time)


def launch_keeper(demo_argv: list[str], state_file: Path) -> int:
    """Start the keeper with `demo_argv`, show its output until it is ready; its exit code if it fails."""
    existing = KeptLab.read(state_file)
    if existing is not None and existing.keeper_alive():
        print(f"demo: a kept lab is already up (namespaces {existing.prefix}*, keeper pid {existing.keeper_pid}); "
              f"tear it down first: {down_command(state_file)}", file=sys.stderr)
        return 1
    if existing is not None:  # its keeper died without tearing down
        cleanup_stale(existing.prefix)
    state_file.unlink(missing_ok=True)
    keeper = subprocess.Popen([sys.executable, "-m", "gatewayd.lab.demo", *demo_argv, KEEPER_FLAG],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # a Ctrl-C at the terminal later is not its
    assert keeper.stdout is not None
    try:
        for line in keeper.stdout:
            if line.rstrip("\n") == READY_LINE:
                return 0
            sys.stdout.write(line)
            sys.stdout.flush()
        return keeper.wait() or 1  # its output ended without the ready line: it failed
    except KeyboardInterrupt:  # while the lab is being built: the keeper tears down what it has
        keeper.terminate()
        keeper.wait(STOP_TIMEOUT_SECONDS)
        return 130


def stop_on_signal_during_setup() -> None:
    """In the keeper: SIGTERM (from the launcher's Ctrl-C) unwinds through the lab's cleanup."""
    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, leave)


def hand_over_and_wait(state_file: Path, prefix: str) -> None:
    """In the keeper: record the lab, tell the launcher it is ready, wait for `--down` (SIGTERM)."""
    # Blocked before the state file exists, so a `--down` as soon as it appears cannot be lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    KeptLab(prefix, os.getpid(), process_start_time(os.getpid())).write(state_file)
    print(READY_LINE, flush=True)
    # The launcher stops reading now; nothing may write to its closed pipe afterwards.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.dup2(devnull, sys.stderr.fileno())
    signal.sigwait(STOP_SIGNALS)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def forget(state_file: Path, prefix: str) -> None:
    """In the keeper, after its teardown: remove the state file if it still names this lab."""
    kept = KeptLab.read(state_file)
    if kept is not None and kept.prefix == prefix:
        state_file.unlink(missing_ok=True)


def tear_down(state_file: Path) -> int:
    kept = KeptLab.read(state_file)
    if kept is None:
        print(f"demo: no kept lab ({state_file} does not name one); nothing to tear down")
        return 0
    if kept.keeper_alive():
        os.kill(kept.keeper_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while kept.keeper_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if kept.keeper_alive():
            os.kill(kept.keeper_pid, signal.SIGKILL)  # its lab's processes follow it (PDEATHSIG)
    leftovers = cleanup_stale(kept.prefix)
    remaining = [namespace for namespace in list_namespaces() if namespace.startswith(kept.prefix)]
    if remaining:
        print(f"demo: could not remove {', '.join(remaining)}; see the warnings above", file=sys.stderr)
        return 1
    state_file.unlink(missing_ok=True)
    print(f"demo: lab {kept.prefix}* torn down" + (f" (also removed {', '.join(leftovers)})" if leftovers else "")
          + ": no namespace or process of it left.")
    return 0


def down_command(state_file: Path) -> str:
    script = Path(__file__).resolve().parents[2] / "scripts" / "demo"
    return f"{script} --down" + ("" if state_file == DEFAULT_STATE_FILE else f" --state-file {state_file}")
