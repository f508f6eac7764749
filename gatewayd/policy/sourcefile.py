"""Reading a policy or catalog file into text, every failure an issue at line 1."""

from __future__ import annotations

from pathlib import Path

from gatewayd.policy.yamltree import Checker, line_and_column


def read_source(path: str | Path, checker: Checker, what: str) -> str | None:
    """The file's text, or None with an issue (missing, a directory, unreadable, not UTF-8)."""
    file = Path(path)
    try:
        if file.is_dir():
            checker.report_at(1, 1, f"cannot read {what}: is a directory (expected a YAML file)")
            return None
        data = file.read_bytes()
    except FileNotFoundError:
        checker.report_at(1, 1, f"cannot read {what}: no such file")
        return None
    except OSError as error:
        checker.report_at(1, 1, f"cannot read {what}: {error.strerror or error}")
        return None
    except ValueError:  # e.g. a NUL byte in the path
        checker.report_at(1, 1, f"cannot read {what}: the path is not valid")
        return None
    return decode(data, checker)


def decode(data: bytes, checker: Checker) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        good = data[: error.start].decode("utf-8-sig", errors="replace")
        line, column = line_and_column(good, len(good))
        checker.report_at(line, column, f"file is not UTF-8 text (byte 0x{data[error.start]:02x} cannot be decoded)")
        return None
