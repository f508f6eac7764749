"""What a node does when keepalived changes its state: hold, commit conntrackd's states, release.

keepalived runs `gatewayd ha-notify STATE` (compile/ha.py writes the line into
keepalived.conf). The conntrackd sequence is the one conntrack-tools' own
primary-backup.sh runs; around it, the takeover hold of compile/ha.py:

  backup, fault  hold the LAN and WAN ports (no timeout: nothing flows through a
                 backup, and the hold must already be there when keepalived brings the
                 addresses up on the next takeover, before any notify has run);
                 `conntrackd -t` ages out the states this box had as master;
                 on backup also `-n`, asking the master for all its states.
  master         refresh the hold with a timeout (a stuck step cannot hold the office
                 for more than HOLD_TIMEOUT_SECONDS), `conntrackd -c` (commit the synced
                 states into the kernel), clear the rules-epoch ct label bits the peer's
                 flows brought (they name the peer's epochs, not ours: apply/epoch_labels.py;
                 before the release, so no new flow meets a stale one; flows the LAN
                 instance's early commit let through meanwhile carry the peer's verdict,
                 the same one when both nodes run the same policy); then, if gatewayd's
                 own table is in force, release the hold. Without the table the hold runs
                 out by itself: forwarding without gatewayd's policy beats no forwarding.
                 Only after the release (the office waits for none of it): `-f` (flush
                 the caches), `-R` (reload the internal cache from the kernel), `-B`
                 (send it all to the peer).

Every command has a time limit; a failed step is logged and the sequence goes on
(as primary-backup.sh does), so the release always comes.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gatewayd.apply.epoch_labels import clear_label_bits
from gatewayd.compile import marks
from gatewayd.compile.ha import CONNTRACKD_PROGRAM, HOLD_TIMEOUT_SECONDS, hold_elements, hold_table
from gatewayd.compile.kernel_names import HA_HOLD_SET, HA_TABLE_NAME, TABLE_FAMILY, TABLE_NAME

log = logging.getLogger("gatewayd.ha")

NotifyState = Literal["master", "backup", "fault"]
CONNTRACKD_TIMEOUT_SECONDS = 5.0  # each client command; a commit of 100,000 states takes about a second


class NftRunner(Protocol):
    def run(self, script: str) -> None: ...
    def query(self, command: str) -> object: ...


# argv, timeout -> return code (a test passes a fake; the real one runs the program)
CommandRunner = Callable[[Sequence[str], float], int]


def run_command(argv: Sequence[str], timeout: float) -> int:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("event=ha_command_failed command=%r error=%r", " ".join(argv), str(error))
        return -1


@dataclass(frozen=True)
class StepResult:
    step: str
    ok: bool
    seconds: float
    ended_at: float  # wall clock (time.time()): lines up with the kill and the probe in a failover breakdown


def hold_script(held: tuple[str, ...], timeout_seconds: int | None) -> str:
    """One transaction: the hold table afresh (a base chain redefined would gain its rules twice)
    with the ports held."""
    return hold_table().replace_script((hold_elements(held, timeout_seconds),))


def release_script() -> str:
    return f"flush set {TABLE_FAMILY} {HA_TABLE_NAME} {HA_HOLD_SET}\n"


class Takeover:
    def __init__(self, nft: NftRunner, conntrackd_config: str, held: tuple[str, ...],
                 command: CommandRunner = run_command,
                 clear_labels: Callable[[int], int] = clear_label_bits) -> None:
        self.nft = nft
        self.clear_labels = clear_labels
        self.conntrackd_config = conntrackd_config
        self.held = held
        self.command = command
        self.results: list[StepResult] = []

    def notify(self, state: NotifyState) -> list[StepResult]:
        if state == "master":
            self._step("hold", lambda: self._nft(hold_script(self.held, HOLD_TIMEOUT_SECONDS)))
            self._step("commit", lambda: self._conntrackd("-c"))
            self._step("clear_epoch_labels", self._clear_epoch_labels)
            if self._step("table_in_force", self._gatewayd_table_exists):
                self._step("release", lambda: self._nft(release_script()))
            else:
                log.warning("event=ha_hold_left_to_expire seconds=%d reason=gatewayd_table_missing",
                            HOLD_TIMEOUT_SECONDS)
            # The office waits only for the commit: the kernel has the states then. The cache
            # housekeeping of primary-backup.sh comes after the release.
            for flag, step in (("-f", "flush"), ("-R", "resync"), ("-B", "bulk_send")):
                self._step(step, functools.partial(self._conntrackd, flag))
        else:
            self._step("hold", lambda: self._nft(hold_script(self.held, None)))
            self._step("expire_old_states", lambda: self._conntrackd("-t"))
            if state == "backup":
                self._step("request_resync", lambda: self._conntrackd("-n"))
        return self.results

    def _step(self, name: str, action: Callable[[], bool]) -> bool:
        started = time.monotonic()
        ok = action()
        seconds = time.monotonic() - started
        self.results.append(StepResult(name, ok, seconds, time.time()))
        log.log(logging.INFO if ok else logging.WARNING, "event=ha_step step=%s ok=%s seconds=%.3f",
                name, str(ok).lower(), seconds)
        return ok

    def _nft(self, script: str) -> bool:
        try:
            self.nft.run(script)
            return True
        except Exception as error:  # NftError or a missing nft: logged, the sequence goes on
            log.warning("event=ha_nft_failed error=%r", str(error))
            return False

    def _conntrackd(self, flag: str) -> bool:
        return self.command([CONNTRACKD_PROGRAM, "-C", self.conntrackd_config, flag], CONNTRACKD_TIMEOUT_SECONDS) == 0

    def _clear_epoch_labels(self) -> bool:
        try:
            self.clear_labels(marks.EPOCH_LABEL_MASK)
            return True
        except OSError as error:  # logged; the flows run the rules at the next epoch instead
            log.warning("event=ha_clear_epoch_labels_failed error=%r", str(error))
            return False

    def _gatewayd_table_exists(self) -> bool:
        try:
            self.nft.query(f"list table {TABLE_FAMILY} {TABLE_NAME}")
            return True
        except Exception:
            return False
