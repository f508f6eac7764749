"""The node's VRRP state as keepalived last told it: written by `gatewayd ha-notify`, read by the daemon.

One small file in the HA runtime directory (the directory of the node's conntrackd.conf,
compile/ha.py HaPaths): keepalived runs the notify in a process of its own, and the
daemon shows the state in `gatewayd status` and gatewayd_ha_state. Written through a
temporary file and a rename, so a reader never sees half of it.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_FILE = "vrrp-state"
KNOWN_STATES = ("master", "backup", "fault")
UNKNOWN = "unknown"  # no notify yet (keepalived not started, or still in its first seconds)


def write_state(runtime_dir: Path, state: str) -> None:
    temporary = runtime_dir / f".{STATE_FILE}.tmp"
    temporary.write_text(f"{state}\n")
    os.replace(temporary, runtime_dir / STATE_FILE)


def read_state(runtime_dir: Path) -> str:
    try:
        text = (runtime_dir / STATE_FILE).read_text(errors="replace").strip()
    except OSError:
        return UNKNOWN
    return text if text in KNOWN_STATES else UNKNOWN
