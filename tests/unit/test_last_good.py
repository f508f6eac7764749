"""Last-known-good keeps the files the policy names (its bindings file) and points its copy at them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gatewayd.daemon.last_good import LastGoodStore
from gatewayd.policy.loader import load_policy, load_policy_with_text
from gatewayd.policy.model import Policy
from gatewayd.policy.security import referenced_files

ETHERS = "02:00:00:00:00:20 192.0.2.20\n02:00:00:00:00:30 192.0.2.30\n"
POLICY = """version: 1
interfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}
classes:
  default: {priority: 3}
security:
  bindings:
    file: REFERENCE
    unbound: drop
"""


def bound(policy: Policy) -> dict[str, str]:
    assert policy.security is not None and policy.security.bindings is not None
    return {str(binding.address): binding.mac for binding in policy.security.bindings.static}


def save_and_reload(tmp_path: Path, policy_text: str, reference: str) -> tuple[Policy, LastGoodStore]:
    """Policy in tmp/etc naming the bindings file by `reference`; saved to tmp/state; loaded from there."""
    (tmp_path / "etc" / "site").mkdir(parents=True)
    (tmp_path / "etc" / "site" / "office.ethers").write_text(ETHERS)
    path = tmp_path / "etc" / "policy.yaml"
    path.write_text(policy_text.replace("REFERENCE", reference))
    policy, text = load_policy_with_text(str(path))
    assert text is not None
    store = LastGoodStore(tmp_path / "state")
    store.save(text, referenced_files(policy))
    (tmp_path / "etc" / "site" / "office.ethers").write_text("02:00:00:00:00:99 192.0.2.99\n")  # changed later
    return load_policy(str(store.path)), store


@pytest.mark.parametrize("reference", ["site/office.ethers", "'site/office.ethers'", '"site/office.ethers"'])
def test_a_copy_with_a_relative_bindings_file_loads_from_the_state_directory(tmp_path: Path, reference: str) -> None:
    saved, store = save_and_reload(tmp_path, POLICY, reference)
    assert bound(saved) == {"192.0.2.20": "02:00:00:00:00:20", "192.0.2.30": "02:00:00:00:00:30"}
    copies = list(store.path.parent.glob("last-good-file-*"))
    assert [copy.name for copy in copies] == ["last-good-file-0-office.ethers"]
    assert stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    assert copies[0].read_text() == ETHERS  # what was in force, not what the file says now


def test_the_reference_is_rewritten_in_flow_style_and_after_a_byte_order_mark(tmp_path: Path) -> None:
    flow_style = "\ufeff" + POLICY.replace("  bindings:\n    file: REFERENCE\n    unbound: drop\n",
                                           "  bindings: {file: REFERENCE, unbound: drop}\n")
    saved, store = save_and_reload(tmp_path, flow_style, "site/office.ethers")
    assert bound(saved)["192.0.2.30"] == "02:00:00:00:00:30"
    assert 'bindings: {file: "last-good-file-0-office.ethers", unbound: drop}' in store.path.read_text()


def test_an_absolute_bindings_file_is_kept_too_and_stale_copies_go(tmp_path: Path) -> None:
    saved, store = save_and_reload(tmp_path, POLICY, str(tmp_path / "etc" / "site" / "office.ethers"))
    assert bound(saved)["192.0.2.20"] == "02:00:00:00:00:20"
    store.save(POLICY.replace("    file: REFERENCE\n", ""), ())  # a policy without a bindings file
    assert list(store.path.parent.glob("last-good-file-*")) == []
