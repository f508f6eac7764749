"""Where the labelled nDPI captures are: tests and benchmarks find them through here.

They live outside the repository, in `../shared` relative to its root (every
worktree sits beside that directory). `GATEWAYD_SHARED_DIR` overrides the
directory that holds `pcaps/` and `pcaps-more/`.

Without the captures a test is skipped on a developer's machine, but fails when
`CI` is set to a true value: in CI a missing data set means the classifier was
never measured, which must not pass as green.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR_VARIABLE = "GATEWAYD_SHARED_DIR"
DEVELOPMENT_SET = "pcaps"  # the captures the classifier was built on
UNSEEN_SET = "pcaps-more"  # captures nobody tuned on
_REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
_TRUE_WORDS = frozenset(("1", "true", "yes", "on"))


def shared_dir() -> Path:
    override = os.environ.get(SHARED_DIR_VARIABLE)
    return Path(override) if override else _REPOSITORY_ROOT.parent / "shared"


def capture_set(name: str = DEVELOPMENT_SET) -> Path:
    """The directory of one labelled capture set (it may not exist: see `missing_reason`)."""
    return shared_dir() / name


def missing_reason(directory: Path) -> str | None:
    """Why the set cannot be used, or None when its labels are there."""
    if (directory / "labels.jsonl").is_file():
        return None
    return (f"labelled captures not found in {directory} (set {SHARED_DIR_VARIABLE} to the directory "
            f"holding {DEVELOPMENT_SET}/ and {UNSEEN_SET}/)")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUE_WORDS
