"""Unit-test hooks: tests marked `captures` need the labelled nDPI captures.

`@pytest.mark.captures("pcaps")` (or "pcaps-more"): without that set the test is
skipped, except under CI, where it fails (see gatewayd.lab.captures).
"""

from __future__ import annotations

import pytest

from gatewayd.lab.captures import capture_set, missing_reason, running_in_ci


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "captures(name): needs the labelled capture set `name` from ../shared")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="captures"):
        reason = missing_reason(capture_set(*marker.args))
        if reason is None:
            continue
        if running_in_ci():
            pytest.fail(f"{reason}; CI must measure the classifier, so this fails instead of skipping",
                        pytrace=False)
        pytest.skip(reason)
