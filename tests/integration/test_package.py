"""The Debian package, installed into a throwaway Debian 12 root as an admin would.

Builds the package with scripts/build-deb (cached per source hash), installs it with
dpkg into a debootstrap'd Debian 12 chroot (cached tarball), and uses it there:
`gatewayd --version`, `check` and `render` on the installed policies, the bundled
Python environment with the kernel libraries it loads, `systemd-analyze verify` on
the installed unit, and upgrades over an edited /etc/gatewayd/policy.yaml.

What a chroot cannot show: no systemd runs inside it, so starting and stopping the
service is checked at the maintainer scripts' boundary instead (they are run with
/run/systemd/system present and systemctl/deb-systemd-invoke recording their calls).
That the daemon removes its kernel state when stopped is test_operations' job.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_root import (
    REPO,
    built_package,
    checked,
    debian_root,
    in_root,
    package_layout,
    with_version,
)

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("debootstrap", "dpkg-deb", "unshare", "zstd")),
    reason="the package test needs debootstrap, dpkg-deb, unshare and zstd (scripts/setup installs them)")

UNIT = package_layout.UNIT
POLICY = package_layout.POLICY
# Stand-ins for the service manager: they record what the maintainer scripts ask of it.
RECORDING_STUB = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> /var/log/service-calls\n"


@pytest.fixture(scope="module")
def deb() -> Path:
    return built_package()


@pytest.fixture
def root(tmp_path: Path, deb: Path) -> Iterator[Path]:
    with debian_root(tmp_path, deb) as made:
        yield made


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, deb: Path) -> Iterator[Path]:
    """One root with the package freshly installed, for the tests that only look at it."""
    with debian_root(tmp_path_factory.mktemp("installed"), deb) as made:
        dpkg(made, deb)
        yield made


def dpkg(root: Path, package: Path, *options: str) -> str:
    inside = Path("/tmp") / package.name
    shutil.copy(package, root / inside.relative_to("/"))
    result = in_root(root, "dpkg", *options, "-i", str(inside))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def gatewayd(root: Path, *arguments: str) -> str:
    result = in_root(root, "gatewayd", *arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def enabled(root: Path) -> bool:
    return (root / "etc/systemd/system/multi-user.target.wants/gatewayd.service").is_symlink()


def record_service_calls(root: Path) -> Path:
    """Pretend systemd runs (maintainer scripts look for /run/systemd/system) and record its calls."""
    (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    for tool in ("systemctl", "deb-systemd-invoke"):
        stub = root / "usr/local/sbin" / tool  # first on the PATH dpkg gives the scripts
        stub.write_text(RECORDING_STUB)
        stub.chmod(0o755)
    log = root / "var/log/service-calls"
    log.write_text("")
    return log


def test_installed_package_runs_from_its_own_environment(installed: Path, deb: Path) -> None:
    root = installed
    assert gatewayd(root, "--version").strip() == f"gatewayd {deb.name.split('_')[1].rsplit('-', 1)[0]}"
    checked_policy = gatewayd(root, "check", POLICY)
    assert checked_policy.startswith(f"{POLICY}: OK (")
    # The catalog is found under /usr/share/gatewayd: its ~100 apps are counted, not only the policy's own.
    apps = int(checked_policy.split(" apps)")[0].rsplit(", ", 1)[1])
    assert apps > 90, checked_policy
    for example in sorted((root / "usr/share/gatewayd/examples").glob("*.yaml")):
        rendered = gatewayd(root, "render", f"/usr/share/gatewayd/examples/{example.name}")
        assert "table inet gatewayd {" in rendered and " htb " in rendered, rendered[:500]
    # The libraries the daemon loads at run time resolve against the Debian packages it Depends on.
    probe = in_root(root, "/usr/lib/gatewayd/bin/python3", "-I", "-c",
                    "import nftables, netfilterqueue, pyroute2, cryptography, prometheus_client, yaml;"
                    "nftables.Nftables(); import gatewayd.daemon.reactor; print('loaded')")
    assert probe.stdout.strip() == "loaded", probe.stderr
    # Installed the Debian way: conffile, man page, completion, state directory; not enabled yet.
    conffiles = in_root(root, "dpkg-query", "--showformat=${Conffiles}", "--show", "gatewayd").stdout
    assert POLICY in conffiles
    assert in_root(root, "man", "-P", "cat", "gatewayd").stdout.count("gatewayd run") >= 1
    assert (root / "usr/share/bash-completion/completions/gatewayd").read_text().startswith("# bash completion")
    assert (root / package_layout.STATE.lstrip("/")).is_dir()
    assert not enabled(root)
    verify = in_root(root, "dpkg", "--verify", "gatewayd")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr


def test_installed_unit_passes_systemd_analyze_verify(installed: Path) -> None:
    root = installed
    # Checks ExecStart's binary exists and the man: link in Documentation= resolves.
    result = in_root(root, "systemd-analyze", "verify", UNIT)
    assert result.returncode == 0, result.stderr
    assert "gatewayd" not in result.stderr, result.stderr
    # One source of truth: the installed unit is the repository's.
    assert (root / UNIT.lstrip("/")).read_text() == (REPO / "systemd" / "gatewayd.service").read_text()


def test_upgrades_keep_the_admins_policy_and_enabled_service(root: Path, deb: Path, tmp_path: Path) -> None:
    dpkg(root, deb)
    policy = root / POLICY.lstrip("/")
    edited = policy.read_text().replace("upload: 20mbit", "upload: 30mbit")
    assert edited != policy.read_text()
    policy.write_text(edited)
    checked(["chroot", str(root), "systemctl", "enable", "gatewayd.service"])
    assert enabled(root)

    # Same shipped policy: dpkg keeps the edit without asking.
    dpkg(root, with_version(deb, "99.0-1", tmp_path))
    assert policy.read_text() == edited
    assert in_root(root, "dpkg-query", "--showformat=${Version}", "--show", "gatewayd").stdout == "99.0-1"
    assert enabled(root)

    # A release that changed the example: unattended (--force-confdef) the edit stays and
    # the new version lands beside it for the admin to compare.
    dpkg(root, with_version(deb, "99.1-1", tmp_path, policy_note="changed in 99.1"), "--force-confdef")
    assert policy.read_text() == edited
    assert (root / f"{POLICY.lstrip('/')}.dpkg-dist").read_text().endswith("# changed in 99.1\n")
    assert "OK" in gatewayd(root, "check", POLICY)


def test_life_cycle_install_upgrade_remove_purge(root: Path, deb: Path, tmp_path: Path) -> None:
    calls = record_service_calls(root)
    dpkg(root, deb)
    # A fresh install neither enables nor starts: the example policy is not this router's.
    assert "start" not in calls.read_text() and not enabled(root)
    policy = root / POLICY.lstrip("/")
    policy.write_text(policy.read_text() + "# the admin's\n")
    (root / "var/lib/gatewayd/last-good.yaml").write_text("kept until purge\n")

    calls.write_text("")
    dpkg(root, with_version(deb, "99.0-1", tmp_path))
    assert "deb-systemd-invoke try-restart gatewayd.service" in calls.read_text().splitlines()
    assert "stop" not in calls.read_text()

    # Remove stops the daemon (which then removes its kernel state) and keeps the admin's files.
    calls.write_text("")
    removed = in_root(root, "dpkg", "--remove", "gatewayd")
    assert removed.returncode == 0, removed.stderr
    assert "deb-systemd-invoke stop gatewayd.service" in calls.read_text().splitlines()
    assert policy.read_text().endswith("# the admin's\n")
    assert (root / "var/lib/gatewayd/last-good.yaml").exists()
    # Nothing left behind in /usr, byte code postinst compiled included.
    assert not (root / "usr/bin/gatewayd").exists() and not (root / "usr/lib/gatewayd").exists()

    purged = in_root(root, "dpkg", "--purge", "gatewayd")
    assert purged.returncode == 0, purged.stderr
    assert not (root / "etc/gatewayd").exists() and not (root / "var/lib/gatewayd").exists()
