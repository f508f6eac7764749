"""The last policy that applied cleanly, kept on disk so a broken file cannot stop a restart.

Written after every successful apply (write to a temporary file, then rename:
a crash mid-write leaves the previous copy whole). At start, if the
configured policy file does not load, the daemon runs this copy, says so in
its log and in the `gatewayd_policy_degraded` metric.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("gatewayd.last_good")

DEFAULT_STATE_DIR = Path("/var/lib/gatewayd")
FILE_NAME = "last-good-policy.yaml"
DIR_MODE = 0o700
FILE_MODE = 0o600


class LastGoodStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, policy_text: str) -> None:
        """Writes the copy 0600 in a 0700 directory whatever the umask: a policy names hosts, MACs
        and the network's layout, and outside systemd (no StateDirectoryMode) the umask is often 022."""
        try:
            self._make_state_dir()
            temporary = self.path.with_suffix(".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                                 FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8") as copy:
                os.fchmod(copy.fileno(), FILE_MODE)  # os.open's mode is cut by the umask; an old file keeps its own
                copy.write(policy_text)
            os.replace(temporary, self.path)
        except OSError as exc:  # a full or read-only disk must not stop the gateway
            log.warning("event=last_good_not_saved path=%s error=%r", self.path, str(exc))

    def _make_state_dir(self) -> None:
        state_dir = self.path.parent
        if state_dir.is_dir():
            return  # an existing directory keeps the mode its owner (systemd's StateDirectory=) gave it
        state_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(state_dir, DIR_MODE)  # mkdir's mode is cut by the umask too
