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


class LastGoodStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, policy_text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(policy_text)
            os.replace(temporary, self.path)
        except OSError as exc:  # a full or read-only disk must not stop the gateway
            log.warning("event=last_good_not_saved path=%s error=%r", self.path, str(exc))
