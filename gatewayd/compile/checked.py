"""What `gatewayd check` and `gatewayd render` both run, so "check: OK" means the policy renders."""

from __future__ import annotations

import sys
from typing import TextIO

from gatewayd.compile.intervals import overlapping_elements
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.model import Location, Policy


def compile_or_report(policy: Policy, errors: TextIO | None = None) -> tuple[Plan, str] | None:
    """The plan and its rendering, or None after one FILE:LINE:COL line saying why it does not compile.

    The policy reader range-checks every value at its position, so this should never
    report; it is the last line of defence, and it points at the interfaces section,
    whose link rates every tc tree is built from.
    """
    errors = errors or sys.stderr  # looked up per call: a default would pin the stderr of import time
    where = policy.interfaces.location or Location(policy.source, 1, 1)
    try:
        plan = compile_plan(policy)
        rendered = plan.render()
    except Exception as error:
        print(PolicyIssue(where, f"the policy passed its checks but does not compile "
                                 f"({type(error).__name__}: {error})"), file=errors)
        return None
    # What nft would refuse at apply ("File exists"), found without nft or root.
    tables = (plan.ruleset.table, *plan.guard.tables)
    overlaps = [problem for table in tables for problem in overlapping_elements(table)]
    for problem in overlaps:
        print(PolicyIssue(where, f"the policy passed its checks but nft would refuse it: {problem}"), file=errors)
    return None if overlaps else (plan, rendered)
