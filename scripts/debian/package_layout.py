"""Where gatewayd's Debian package puts things, and what it needs: named once here.

build_deb.py lays the package out from these; tests/integration/test_package.py
checks the installed package against them. The unit file (systemd/gatewayd.service)
and the maintainer scripts beside this file use the same paths.
"""

from __future__ import annotations

PYTHON = "/usr/bin/python3.11"  # Debian 12's interpreter: the bundled extensions are built for it
PYTHON_VERSION = "3.11"
PREFIX = "/usr/lib/gatewayd"  # the self-contained Python environment
SITE_PACKAGES = f"{PREFIX}/lib/python{PYTHON_VERSION}/site-packages"
BIN = "/usr/bin/gatewayd"
ETC = "/etc/gatewayd"
POLICY = f"{ETC}/policy.yaml"
STATE = "/var/lib/gatewayd"
SHARE = "/usr/share/gatewayd"  # catalog.yaml, schema/, examples/
DOC = "/usr/share/doc/gatewayd"
# Debian 12 ships units in /lib (merged /usr, but dpkg still tracks the /lib path).
UNIT = "/lib/systemd/system/gatewayd.service"

CONFFILES = (POLICY,)  # dpkg never overwrites an edited conffile on upgrade
MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")

# What the daemon needs at run time beyond the libraries its compiled extensions link:
# those (libc6, libnetfilter-queue1, libyaml-0-2, ...) dpkg-shlibdeps adds at build time.
DEPENDS = (
    f"python3 (>= {PYTHON_VERSION})",
    "python3 (<< 3.12)",  # compiled extensions (NetfilterQueue, PyYAML, cffi) are for 3.11 only
    "libnftables1",  # pip-nftables loads libnftables.so.1 with ctypes: no ELF dependency to find
    "nftables",  # nft, for admins to look at gatewayd's tables
    "iptables",  # iptables-nft: the queue rule's fallback when nft has no native queue
    "iproute2",  # tc and ip, for admins to look at the qdiscs
    "conntrack",  # verdicts live in the conntrack mark; conntrack -L shows them
    "procps",  # /bin/kill: the unit's ExecReload (not in a minimal Debian)
)

# /usr/bin/gatewayd: exec keeps the PID, which systemd's notify and watchdog expect.
# -I: a root daemon ignores PYTHONPATH, the user's site-packages and the current directory.
LAUNCHER = f"""#!/bin/sh
# gatewayd, run by its own Python environment under {PREFIX} (Debian package).
exec {PREFIX}/bin/python3 -I -m gatewayd "$@"
"""

DESCRIPTION = """\
office gateway: app classification, blocking and QoS
gatewayd is the traffic-policy daemon of an office router. It knows which
department (subnet, range, MAC) and which application each flow belongs to,
blocks or shapes it as the admin's YAML policy says, and shows in Prometheus
who uses what. The fast path is nftables and tc in the kernel; only the first
packets of undecided flows go through NFQUEUE to the Python classifier.
.
The package carries its own Python environment under /usr/lib/gatewayd. The
service is installed disabled: edit /etc/gatewayd/policy.yaml, check it with
`gatewayd check`, then `systemctl enable --now gatewayd`.
"""
