"""Build gatewayd's Debian package from this repository (run it through scripts/build-deb).

    /usr/bin/python3 scripts/debian/build_deb.py [--output DIR] [--revision N]

Debian 12's own Python is externally managed and its python3-pyroute2 and
python3-cryptography are too old, so the package carries a self-contained Python
environment under /usr/lib/gatewayd, built with Debian's /usr/bin/python3.11 (the
interpreter it runs on) from wheels fetched here at build time: installing the
package needs no network. NetfilterQueue is compiled against Debian's
libnetfilter-queue. The staged tree is laid out as the router will see it, then
`dpkg-deb --root-owner-group --build` packs it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

from package_layout import (
    BIN,
    CONFFILES,
    DEPENDS,
    DESCRIPTION,
    DOC,
    LAUNCHER,
    MAINTAINER_SCRIPTS,
    POLICY,
    PREFIX,
    PYTHON,
    PYTHON_VERSION,
    SHARE,
    SITE_PACKAGES,
    STATE,
    UNIT,
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STEP_TIMEOUT = 1200  # seconds; a wheel build or download that hangs fails the build
# pip's cache of our own, holding only what Debian's python3.11 built here with Debian's flags: a
# wheel another interpreter built (pyenv) would carry that interpreter's RUNPATH.
PIP_CACHE = REPO / "build" / "pip-cache-debian"
BUILT_FROM_SOURCE = ("NetfilterQueue", "PyYAML")


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--output", type=Path, default=REPO / "build" / "deb",
                           help="directory for the .deb (default: build/deb)")
    arguments.add_argument("--revision", default="1",
                           help="Debian revision: the package version is PYPROJECT_VERSION-REVISION (default: 1)")
    options = arguments.parse_args(argv)
    deb = build_package(options.output.resolve(), options.revision)
    print(f"build-deb: {deb}")
    return 0


def build_package(output: Path, revision: str) -> Path:
    upstream_version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    version = f"{upstream_version}-{revision}"
    architecture = run(["dpkg", "--print-architecture"]).strip()
    work = output / "work"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    wheels = fetch_wheels(output / "tools", work / "wheels")

    install_environment(root, wheels, output / "tools")
    install_files(root, version)
    write_copyright(root)
    write_control(root, version, architecture)
    check_no_build_paths(root, work)
    write_md5sums(root)
    set_permissions_and_times(root, source_date_epoch())

    deb = output / f"gatewayd_{version}_{architecture}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)])
    shutil.rmtree(work)  # the staged tree and wheels: the .deb has it all
    return deb


def fetch_wheels(tools: Path, wheels: Path) -> Path:
    """gatewayd and every dependency as wheels built for /usr/bin/python3.11."""
    if not (tools / "bin" / "pip").exists():
        run([PYTHON, "-m", "venv", str(tools)])
    # Compiled here against Debian's headers and libraries: NetfilterQueue (source only on
    # PyPI) against libnetfilter-queue, PyYAML against libyaml (its wheel embeds a copy).
    run([str(tools / "bin" / "pip"), "wheel", "--quiet", "--cache-dir", str(PIP_CACHE),
         "--no-binary", ",".join(BUILT_FROM_SOURCE), "--wheel-dir", str(wheels), str(REPO)],
        environment=debian_build_flags())
    return wheels


def debian_build_flags() -> dict[str, str]:
    """The environment with Debian's hardening compiler and linker flags (as debhelper builds)."""
    environment = dict(os.environ, DEB_BUILD_MAINT_OPTIONS="hardening=+all")
    for line in run(["dpkg-buildflags", "--export=sh"], environment=environment).splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
            environment[name] = value.strip('"')
    return environment


def install_environment(root: Path, wheels: Path, tools: Path) -> None:
    """A virtual environment at /usr/lib/gatewayd: Debian's python3.11 plus our site-packages."""
    prefix = root / PREFIX.lstrip("/")
    (prefix / "bin").mkdir(parents=True)
    # Written by hand rather than by `python3 -m venv`, which records the build path.
    (prefix / "pyvenv.cfg").write_text(f"home = {Path(PYTHON).parent}\ninclude-system-site-packages = false\n"
                                       f"version = {PYTHON_VERSION}\n")
    (prefix / "bin" / "python3").symlink_to(PYTHON)
    (prefix / "bin" / "python").symlink_to("python3")
    site_packages = root / SITE_PACKAGES.lstrip("/")
    run([str(tools / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(wheels),
         "--no-compile", "--target", str(site_packages), "gatewayd"])
    # Console scripts pip wrote name the build path; /usr/bin/gatewayd is our own launcher.
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    for shared_object in site_packages.rglob("*.so"):
        run(["strip", "--strip-unneeded", "--remove-section=.comment", "--remove-section=.note",
             str(shared_object)])
    # The catalog lookup of an installed gatewayd is sys.prefix/share/gatewayd (policy/applications.py).
    (prefix / "share").mkdir()
    (prefix / "share" / "gatewayd").symlink_to(os.path.relpath(SHARE, f"{PREFIX}/share"))


def install_files(root: Path, version: str) -> None:
    launcher = place(root, BIN)
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)

    copy(root, f"{SHARE}/catalog.yaml", REPO / "policies" / "catalog.yaml")
    copy(root, f"{SHARE}/schema/policy.schema.json", REPO / "schema" / "policy.schema.json")
    examples = REPO / "policies"
    for example in sorted(path for path in examples.rglob("*") if path.is_file()):
        if example.name != "catalog.yaml":
            # The examples keep their `$schema=../schema/...` line: it resolves inside /usr/share/gatewayd;
            # the files they name (isp/telecom.txt, a network list) keep their place beside them.
            copy(root, f"{SHARE}/examples/{example.relative_to(examples)}", example)
    place(root, POLICY).write_text(etc_policy((REPO / "policies" / "office.yaml").read_text()))
    (root / STATE.lstrip("/")).mkdir(parents=True)

    copy(root, UNIT, REPO / "systemd" / "gatewayd.service")
    # Man page and completion come from the staged environment's own parser: what is
    # packaged is what they describe (and this runs the staged environment once).
    # -s: no user site-packages, -B: no byte code left in the package (postinst compiles it);
    # the generators' own directory is on sys.path as the script's.
    python = [str(root / PREFIX.lstrip("/") / "bin" / "python3"), "-s", "-B"]
    manpage = run([*python, str(HERE / "manpage.py"), "--date", time.strftime(
        "%Y-%m-%d", time.gmtime(source_date_epoch()))])
    write_gzip(place(root, "/usr/share/man/man8/gatewayd.8.gz"), manpage)
    completion = run([*python, str(HERE / "bash_completion.py")])
    place(root, "/usr/share/bash-completion/completions/gatewayd").write_text(completion)

    copy(root, f"{DOC}/README.md", REPO / "README.md")
    copy(root, "/usr/share/lintian/overrides/gatewayd", HERE / "lintian-overrides")
    write_gzip(place(root, f"{DOC}/changelog.Debian.gz"), debian_changelog(version))

    debian = place(root, "/DEBIAN/conffiles")
    debian.write_text("".join(f"{path}\n" for path in CONFFILES))
    for script in MAINTAINER_SCRIPTS:
        copy(root, f"/DEBIAN/{script}", HERE / script).chmod(0o755)


def etc_policy(example: str) -> str:
    """The policy admins edit: the office example, its schema line pointing at the installed schema."""
    first, _, rest = example.partition("\n")
    if "$schema=" in first:
        first = f"# yaml-language-server: $schema={SHARE}/schema/policy.schema.json"
    return f"{first}\n{rest}"


def debian_changelog(version: str) -> str:
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(source_date_epoch()))
    return (f"gatewayd ({version}) bookworm; urgency=medium\n\n"
            f"  * Built from the gatewayd repository by scripts/build-deb.\n\n"
            f" -- {maintainer()}  {when}\n")


def write_copyright(root: Path) -> None:
    """DEP-5 copyright: gatewayd's licence, then each bundled distribution's from its own metadata."""
    site_packages = root / SITE_PACKAGES.lstrip("/")
    header = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
              "Upstream-Name: gatewayd\n"
              "Comment: The Python environment under /usr/lib/gatewayd bundles the distributions\n"
              " listed below; each one's licence text is in its .dist-info directory.\n")
    year = time.gmtime(source_date_epoch()).tm_year
    own = (f"Files: *\nCopyright: {year} gatewayd developers\nLicense: GPL-3.0-or-later\n"
           " On Debian systems the full text is in /usr/share/common-licenses/GPL-3.\n")
    stanzas = [header, own]
    for dist_info in sorted(site_packages.glob("*.dist-info"), key=lambda p: p.name.lower()):
        metadata = HeaderParser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
        name = metadata["Name"]
        if name.lower() == "gatewayd":
            continue
        files = " ".join(f"{SITE_PACKAGES.lstrip('/')}/{pattern}" for pattern in installed_patterns(dist_info))
        stanzas.append(f"Files: {files}\nCopyright: the {name} authors ({name} {metadata['Version']})\n"
                       f"License: {licence_of(metadata)}\n"
                       f" The licence text is in {SITE_PACKAGES}/{dist_info.name}/.\n")
    place(root, f"{DOC}/copyright").write_text("\n".join(stanzas))


def installed_patterns(dist_info: Path) -> list[str]:
    """What a distribution put at the top of site-packages, as copyright Files: patterns."""
    patterns = set()
    for line in (dist_info / "RECORD").read_text().splitlines():
        path = line.split(",", 1)[0]
        top, slash, _ = path.partition("/")
        if top not in ("bin", "__pycache__", "..", ""):  # ../../bin: console scripts, not packaged
            patterns.add(f"{top}/*" if slash else top)
    return sorted(patterns)


def licence_of(metadata: Message) -> str:
    """License-Expression, else a one-line License field, else the licence classifiers."""
    expression = metadata.get("License-Expression")
    if expression:
        return str(expression)
    field = str(metadata.get("License") or "")
    if field and "\n" not in field and len(field) < 60:
        return field
    classifiers = [str(c).rsplit("::", 1)[-1].strip() for c in metadata.get_all("Classifier") or []
                   if str(c).startswith("License ::")]
    return " or ".join(classifiers) or "unknown"


def write_control(root: Path, version: str, architecture: str) -> None:
    depends = shared_library_depends(root)
    linked = {dependency.split()[0] for dependency in depends}
    depends += [dependency for dependency in DEPENDS if dependency.split()[0] not in linked]
    installed_kib = sum(p.lstat().st_size for p in root.rglob("*") if "DEBIAN" not in p.parts) // 1024
    summary, *body = DESCRIPTION.strip().splitlines()
    long_description = "\n".join(f" {line}" for line in body)
    place(root, "/DEBIAN/control").write_text(
        f"Package: gatewayd\nVersion: {version}\nArchitecture: {architecture}\n"
        f"Maintainer: {maintainer()}\nInstalled-Size: {installed_kib}\n"
        f"Depends: {', '.join(depends)}\nSection: net\nPriority: optional\n"
        f"Description: {summary}\n{long_description}\n")


def shared_library_depends(root: Path) -> list[str]:
    """The Debian packages of the libraries the bundled extensions link, with the versions
    they need (libc6, libnetfilter-queue1, libyaml-0-2, ...), as dpkg-shlibdeps finds them."""
    shared_objects = [str(path) for path in sorted(root.rglob("*.so"))]
    with tempfile.TemporaryDirectory() as scratch:
        control = Path(scratch) / "debian" / "control"  # dpkg-shlibdeps wants a source package around it
        control.parent.mkdir()
        control.write_text("Source: gatewayd\n\nPackage: gatewayd\nArchitecture: any\n")
        output = run(["dpkg-shlibdeps", "-O", *shared_objects], cwd=scratch)
    _, _, depends = output.strip().partition("shlibs:Depends=")
    return [dependency.strip() for dependency in depends.split(",") if dependency.strip()]


def write_md5sums(root: Path) -> None:
    """DEBIAN/md5sums, for `dpkg --verify` and debsums (conffiles have theirs in dpkg's database)."""
    skipped = {root / "DEBIAN", *(root / conffile.lstrip("/") for conffile in CONFFILES)}
    lines = [f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(root)}"
             for path in sorted(root.rglob("*"))
             if path.is_file() and not path.is_symlink() and skipped.isdisjoint({path, *path.parents})]
    place(root, "/DEBIAN/md5sums").write_text("\n".join(lines) + "\n")


def maintainer() -> str:
    return os.environ.get("DEBFULLNAME_EMAIL", "gatewayd developers <gatewayd@example.org>")


def check_no_build_paths(root: Path, work: Path) -> None:
    """Fail if a file still names the build directory: it would not exist on the router."""
    needle = str(work).encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            raise SystemExit(f"build-deb: {path.relative_to(root)} names the build directory {work}")


def set_permissions_and_times(root: Path, epoch: int) -> None:
    """Debian's modes (0755 directories and programs, 0644 the rest) and one mtime for reproducible builds."""
    for path in sorted(root.rglob("*"), reverse=True):
        if not path.is_symlink():
            executable = path.is_dir() or (path.stat().st_mode & 0o100 and ".so" not in path.name)
            path.chmod(0o755 if executable else 0o644)
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else now."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return int(run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"]).strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def place(root: Path, path: str) -> Path:
    """root/path with its parent directories made."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def copy(root: Path, path: str, source: Path) -> Path:
    target = place(root, path)
    target.write_bytes(source.read_bytes())
    return target


def write_gzip(target: Path, text: str) -> None:
    # mtime=0 and no file name inside: the same input gives the same bytes (gzip -9n).
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9,
                                                   mtime=0) as packed:
        packed.write(text.encode())


def run(command: list[str], cwd: str | None = None, environment: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False, cwd=cwd,
                            env=environment)
    if result.returncode != 0:
        raise SystemExit(f"build-deb: {' '.join(command)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


if __name__ == "__main__":
    sys.exit(main())
