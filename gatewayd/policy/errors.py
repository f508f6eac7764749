"""Policy problems, each pinned to the FILE:LINE:COL an admin has to edit."""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.policy.model import Location


@dataclass(frozen=True)
class PolicyIssue:
    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PolicyError(Exception):
    """Everything wrong with a policy, found in one pass so the admin fixes it all at once."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues: list[PolicyIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
