"""Policy problems, each pinned to the FILE:LINE:COL an admin has to edit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatewayd.policy.model import Location

# Characters that must not reach a terminal or log from a file: C0 and C1 controls and DEL
# (escape sequences, newlines that forge a second error line) and the bidi overrides,
# isolates and marks that make a line read differently from what it says.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_MESSAGE_CHARS = 2000  # a message quoting a 16 MB key would be one 16 MB line


def escape_untrusted(text: str) -> str:
    """`text` with every control and bidi character as a visible \\xNN or \\uNNNN escape."""
    return _UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True)
class PolicyIssue:
    location: Location
    message: str

    def __str__(self) -> str:
        """FILE:LINE:COL: message, made safe to print: messages quote keys and values from the file."""
        message = self.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}... (message cut at {MAX_MESSAGE_CHARS:,} characters)"
        return escape_untrusted(f"{self.location}: {message}")


class PolicyError(Exception):
    """Everything wrong with a policy, found in one pass so the admin fixes it all at once."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues: list[PolicyIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
