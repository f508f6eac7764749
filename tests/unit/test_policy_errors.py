"""Every bad-policy fixture yields exactly the FILE:LINE:COL: message lines it declares.

Each file under tests/unit/policies/ starts with one `# expect: LINE:COL: message`
comment per issue the loader must report, in order, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd.policy import PolicyError, PolicyIssue, load_policy
from gatewayd.policy.model import Location

FIXTURES = Path(__file__).parent / "policies"
EXPECT = "# expect: "


def expected_issues(fixture: Path) -> list[str]:
    lines = fixture.read_text(encoding="utf-8").splitlines()
    # `{file}` stands for the fixture's path where a message quotes another location.
    return [line[len(EXPECT):].replace("{file}", str(fixture)) for line in lines if line.startswith(EXPECT)]


def reported_issues(fixture: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy(str(fixture))
    prefix = f"{fixture}:"
    issues = [str(issue) for issue in caught.value.issues]
    assert all(issue.startswith(prefix) for issue in issues), issues
    return [issue[len(prefix):] for issue in issues]


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.yaml")), ids=lambda path: path.stem)
def test_fixture_reports_exactly_its_expected_issues(fixture: Path) -> None:
    expected = expected_issues(fixture)
    assert expected, f"{fixture.name} declares no '# expect:' lines"
    assert reported_issues(fixture) == expected


def test_issue_prints_as_file_line_column_message() -> None:
    issue = PolicyIssue(Location("office.yaml", 12, 5), "group 'salse' is not defined")
    assert str(issue) == "office.yaml:12:5: group 'salse' is not defined"


def test_error_prints_one_issue_per_line() -> None:
    error = PolicyError([
        PolicyIssue(Location("a.yaml", 1, 1), "first"),
        PolicyIssue(Location("a.yaml", 2, 3), "second"),
    ])
    assert str(error) == "a.yaml:1:1: first\na.yaml:2:3: second"
    assert [issue.message for issue in error.issues] == ["first", "second"]
