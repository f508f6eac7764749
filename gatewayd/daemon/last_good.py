"""The last policy that applied cleanly, kept on disk so a broken file cannot stop a restart.

Written after every successful apply (write to a temporary file, then rename:
a crash mid-write leaves the previous copy whole). At start, if the
configured policy file does not load, the daemon runs this copy, says so in
its log and in the `gatewayd_policy_degraded` metric.

The files the policy names (its bindings file) are kept beside the copy, as
they were when the policy loaded, and the copy is rewritten to name them: a
relative name would otherwise be resolved against the state directory, and an
absolute one would point at the live file, which may have changed since.
They are written before the copy, so a copy never names a file not there yet.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from gatewayd.policy.model import FileReference

log = logging.getLogger("gatewayd.last_good")

DEFAULT_STATE_DIR = Path("/var/lib/gatewayd")
FILE_NAME = "last-good-policy.yaml"
DIR_MODE = 0o700
FILE_MODE = 0o600
DEPENDENCY_PREFIX = "last-good-file-"  # + index + "-" + the original file name
BYTE_ORDER_MARK = "\ufeff"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file created FILE_MODE (no window with wider rights)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def offset_of(text: str, line: int, column: int) -> int:
    """The character offset of a 0-based (line, column) as the YAML parser counts them."""
    lines = text.splitlines(keepends=True)
    skipped = 1 if line == 0 and text.startswith(BYTE_ORDER_MARK) else 0  # the parser never sees the mark
    return sum(len(earlier) for earlier in lines[:line]) + column + skipped


def point_at_copies(policy_text: str, copies: Sequence[tuple[FileReference, str]]) -> str:
    """The policy text with each reference's value replaced by the name of its copy."""
    spans = sorted(((offset_of(policy_text, *reference.start), offset_of(policy_text, *reference.end), name)
                    for reference, name in copies), reverse=True)  # from the end: earlier offsets stay valid
    for start, end, name in spans:
        policy_text = policy_text[:start] + json.dumps(name) + policy_text[end:]  # a YAML double-quoted scalar
    return policy_text


class LastGoodStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, policy_text: str, files: Sequence[FileReference] = ()) -> None:
        """Writes the copy (and the files it names) 0600 in a 0700 directory whatever the umask: a policy
        names hosts, MACs and the network's layout, and outside systemd (no StateDirectoryMode) the umask
        is often 022."""
        try:
            self._make_state_dir()
            copies = [(reference, f"{DEPENDENCY_PREFIX}{index}-{Path(reference.path).name}")
                      for index, reference in enumerate(files)]
            for reference, name in copies:
                write_private(self.path.parent / name, reference.text)
            policy_text = point_at_copies(policy_text, copies)
            temporary = self.path.with_suffix(".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                                 FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8") as copy:
                os.fchmod(copy.fileno(), FILE_MODE)  # os.open's mode is cut by the umask; an old file keeps its own
                copy.write(policy_text)
            os.replace(temporary, self.path)
            self._remove_stale_copies({name for _, name in copies})
        except OSError as exc:  # a full or read-only disk must not stop the gateway
            log.warning("event=last_good_not_saved path=%s error=%r", self.path, str(exc))

    def _make_state_dir(self) -> None:
        state_dir = self.path.parent
        if state_dir.is_dir():
            return  # an existing directory keeps the mode its owner (systemd's StateDirectory=) gave it
        state_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(state_dir, DIR_MODE)  # mkdir's mode is cut by the umask too

    def _remove_stale_copies(self, kept: set[str]) -> None:
        for stale in self.path.parent.glob(f"{DEPENDENCY_PREFIX}*"):
            if stale.name not in kept:
                stale.unlink(missing_ok=True)
