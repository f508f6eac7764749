"""Throwaway Debian 12 roots for the package test, and the package built once per source.

Nothing here touches the test machine's own system: packages are installed into a
debootstrap'd Debian 12 tree with chroot, and commands that need /proc run in a
mount namespace of their own (unshare), so no mount outlives them.

Both expensive steps are cached in GATEWAYD_TEST_CACHE (default
/var/cache/gatewayd-tests), which outlives the test run and the checkout: the
chroot tarball (debootstrap, about two minutes, first run only) and the built
.deb (scripts/build-deb, one to two minutes, again only when its sources change).
With both cached the module takes about 40 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "debian"))
import package_layout  # scripts/debian: where the builder puts things, named once  # noqa: E402 (after the sys.path line above)

__all__ = ["REPO", "built_package", "checked", "debian_root", "in_root", "package_layout", "with_version"]

CACHE = Path(os.environ.get("GATEWAYD_TEST_CACHE", "/var/cache/gatewayd-tests"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Beside what the package Depends on (so that `dpkg -i` needs no network): systemd for
# `systemd-analyze verify`, man-db so that verify checks the unit's man: link.
EXTRA_PACKAGES = ("systemd", "man-db", "init-system-helpers")
# Not needed by the test: the downloaded .debs, translations, other packages' docs.
SLIMMED = ("var/cache/apt/archives/*.deb", "usr/share/locale/*", "usr/share/doc/*")
RAM_SCRATCH = Path("/dev/shm")
DEBOOTSTRAP_TIMEOUT = 900
BUILD_TIMEOUT = 900
STEP_TIMEOUT = 120
# What goes into the package: a change to any of these means a new build.
PACKAGE_SOURCES = ("gatewayd", "policies", "schema", "systemd", "scripts", "pyproject.toml", "README.md")
KEPT_BUILDS = 3


def root_packages(deb: Path) -> list[str]:
    """The package's Depends as dpkg-deb reads them from the .deb, plus the test's own tools."""
    depends = checked(["dpkg-deb", "--field", str(deb), "Depends"])
    names = {dependency.split()[0] for dependency in depends.split(",") if dependency.strip()}
    return sorted(names | set(EXTRA_PACKAGES))


def run(command: list[str], timeout: float = STEP_TIMEOUT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env,
                          stdin=subprocess.DEVNULL)  # dpkg must never wait for an answer


def checked(command: list[str], timeout: float = STEP_TIMEOUT) -> str:
    result = run(command, timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    return result.stdout


@contextmanager
def _cache_lock(name: str) -> Iterator[None]:
    """One builder at a time per cache entry (other worktrees' test runs share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def debian_tarball(deb: Path) -> Path:
    """A Debian 12 tree with the package's dependencies, debootstrapped once and cached."""
    packages = root_packages(deb)
    key = hashlib.sha256(" ".join([SUITE, MIRROR, *SLIMMED, *packages]).encode()).hexdigest()[:16]
    tarball = CACHE / f"debian12-{key}.tar.zst"
    with _cache_lock("debian12"):
        if tarball.exists():
            return tarball
        staging = CACHE / f"debian12-{key}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            checked(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                     SUITE, str(staging), MIRROR], DEBOOTSTRAP_TIMEOUT)
            for slimmed in SLIMMED:  # a third of the tree, copied and removed for every test otherwise
                for path in staging.glob(slimmed):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            partial = tarball.with_suffix(".partial")
            checked(["tar", "--zstd", "-C", str(staging), "-cf", str(partial), "."], STEP_TIMEOUT)
            partial.rename(tarball)  # atomic: a reader never sees half a tarball
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for outdated in CACHE.glob("debian12-*.tar.zst"):  # made for Depends the package no longer has
            if outdated != tarball:
                outdated.unlink()
    return tarball


@contextmanager
def debian_root(parent: Path, deb: Path) -> Iterator[Path]:
    """A fresh Debian 12 tree, ready for `deb`; removed afterwards even if the test fails.

    In memory (/dev/shm) where there is one: on a shared, busy disk unpacking and removing
    the ~200 MB tree took a minute per test, in memory it takes seconds.
    """
    scratch = RAM_SCRATCH if RAM_SCRATCH.is_dir() and os.access(RAM_SCRATCH, os.W_OK) else parent
    root = Path(tempfile.mkdtemp(prefix="gatewayd-package-test-", dir=scratch))
    try:
        checked(["tar", "--zstd", "-C", str(root), "-xf", str(debian_tarball(deb))], STEP_TIMEOUT)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def in_root(root: Path, *command: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`command` inside the tree, with /proc mounted in a private mount namespace."""
    script = f'mount -t proc proc "{root}/proc" && exec chroot "{root}" "$@"'
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                   "DEBIAN_FRONTEND": "noninteractive"}
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "in_root", *command],
               timeout, env=environment)


def source_hash() -> str:
    digest = hashlib.sha256()
    for top in PACKAGE_SOURCES:
        paths = [REPO / top] if (REPO / top).is_file() else sorted((REPO / top).rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def built_package() -> Path:
    """scripts/build-deb's .deb for the current sources, built once and cached."""
    output = CACHE / f"deb-{source_hash()}"
    with _cache_lock("deb"):
        found = sorted(output.glob("gatewayd_*_*.deb"))
        if found:
            return found[0]
        checked([str(REPO / "scripts" / "build-deb"), "--output", str(output)], BUILD_TIMEOUT)
        _forget_old_builds()
        return next(output.glob("gatewayd_*_*.deb"))


def _forget_old_builds() -> None:
    builds = sorted(CACHE.glob("deb-*"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in builds[KEPT_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)


def with_version(deb: Path, version: str, into: Path, policy_note: str = "") -> Path:
    """The same package as a later version: the upgrade an admin gets. `policy_note`, if
    given, is appended to the shipped policy, as when a release changes the example."""
    tree = into / f"tree-{version}"
    checked(["dpkg-deb", "-R", str(deb), str(tree)])
    control = tree / "DEBIAN" / "control"
    lines = [f"Version: {version}" if line.startswith("Version:") else line
             for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    if policy_note:
        policy = tree / package_layout.POLICY.lstrip("/")
        policy.write_text(policy.read_text() + f"# {policy_note}\n")  # conffiles are not in md5sums
    upgraded = into / f"gatewayd_{version}.deb"
    checked(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(tree), str(upgraded)])  # fast, local
    shutil.rmtree(tree)
    return upgraded

