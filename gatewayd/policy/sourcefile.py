"""Reading a policy, catalog or bindings file into text, every failure an issue at line 1.

Only regular files up to MAX_FILE_BYTES are read: a FIFO would block forever,
/dev/zero never ends, and a huge file would be read whole before any check.
The file is opened non-blocking (opening a FIFO does not wait for a writer),
checked with fstat on the open descriptor (no window for a swap), and read
only up to the limit plus one byte, in case it grew since the fstat.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gatewayd.policy.limits import MAX_FILE_BYTES
from gatewayd.policy.yamltree import Checker, line_and_column

READ_CHUNK_BYTES = 1024 * 1024


class SourceFileError(Exception):
    """A file that cannot or must not be read; str() is the reason, without the file's content."""


def read_source(path: str | Path, checker: Checker, what: str) -> str | None:
    """The file's text, or None with an issue (missing, not a regular file, too big, unreadable, not UTF-8)."""
    try:
        data = read_limited_bytes(path)
    except SourceFileError as error:
        checker.report_at(1, 1, f"cannot read {what}: {error}")
        return None
    return decode(data, checker)


def read_limited_bytes(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; SourceFileError otherwise."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise SourceFileError("no such file") from None
    except IsADirectoryError:
        raise SourceFileError("is a directory (expected a YAML file)") from None
    except OSError as error:
        raise SourceFileError(error.strerror or str(error)) from None
    except ValueError:  # e.g. a NUL byte in the path
        raise SourceFileError("the path is not valid") from None
    try:
        return _read_regular(descriptor, limit)
    finally:
        os.close(descriptor)


def _read_regular(descriptor: int, limit: int) -> bytes:
    try:
        status = os.fstat(descriptor)
    except OSError as error:
        raise SourceFileError(error.strerror or str(error)) from None
    if stat.S_ISDIR(status.st_mode):
        raise SourceFileError("is a directory (expected a YAML file)")
    if not stat.S_ISREG(status.st_mode):
        raise SourceFileError(f"is not a regular file (it is {_file_kind(status.st_mode)})")
    if status.st_size > limit:
        raise SourceFileError(_too_big(status.st_size, limit))
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = os.read(descriptor, min(READ_CHUNK_BYTES, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise SourceFileError(error.strerror or str(error)) from None
    if size > limit:
        raise SourceFileError(_too_big(size, limit, grew=True))
    return b"".join(chunks)


def _too_big(size: int, limit: int, grew: bool = False) -> str:
    has = f"more than {limit:,}" if grew else f"{size:,}"
    return f"the file has {has} bytes; the limit is {limit:,}"


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def decode(data: bytes, checker: Checker) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        good = data[: error.start].decode("utf-8-sig", errors="replace")
        line, column = line_and_column(good, len(good))
        checker.report_at(line, column, f"file is not UTF-8 text (byte 0x{data[error.start]:02x} cannot be decoded)")
        return None
