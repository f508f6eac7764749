"""pytest runs tests/ without packages (rootdir-relative imports): two test files with one basename
make collection stop with 'import file mismatch', and the whole CI run with it."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_has_a_basename_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert sum(names.values()) > 50  # the walk found the suite, so the check below means something
    assert [name for name, count in names.items() if count > 1] == []
