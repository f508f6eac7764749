"""Several WAN links in the kernel: routing tables and rules, the link choice, ending connections.

Owns routing tables and `ip rule` priorities LINK_ROUTE_TABLE_BASE+1.. (compile/
kernel_names.py), in IPv4 and in IPv6 (links with `gateway6`), and nothing else.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gatewayd.apply.nft import NftKernel
from gatewayd.compile import marks
from gatewayd.compile.links import LinkRoute, choice_script
from gatewayd.compile.plan import Plan

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger("gatewayd.apply")

CONNTRACK_TIMEOUT_SECONDS = 5.0
ENOENT, ESRCH = 2, 3
DELETED = re.compile(r"(\d+) flow entries have been deleted")


class LinkError(RuntimeError):
    pass


class LinkKernel:
    def __init__(self, nft: NftKernel) -> None:
        self.nft = nft

    def apply_routes(self, routes: Iterable[LinkRoute], previous: Iterable[LinkRoute] = ()) -> None:
        """Install one table and one fwmark rule per link; remove the previous plan's extra ones."""
        wanted, previous = list(routes), list(previous)
        if not wanted and not previous:
            return  # one WAN link: nothing of ours in the routing, and pyroute2 stays unloaded (~20 MiB)
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with IPRoute() as ipr:
                for route in wanted:
                    self._install(ipr, route)
                kept = {(route.table, route.version) for route in wanted}
                for route in previous:
                    if (route.table, route.version) not in kept:
                        self._remove(ipr, route)
        except (NetlinkError, OSError) as exc:
            raise LinkError(f"could not install the links' routing: {exc}") from exc

    def remove_routes(self, routes: Iterable[LinkRoute]) -> None:
        routes = list(routes)
        if not routes:
            return
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with IPRoute() as ipr:
                for route in routes:
                    self._remove(ipr, route)
        except (NetlinkError, OSError) as exc:
            log.warning("event=link_routes_remove_failed error=%r", str(exc))

    @staticmethod
    def _install(ipr: IPRoute, route: LinkRoute) -> None:
        index = ipr.link_lookup(ifname=route.interface)
        if not index:
            raise LinkError(f"interface {route.interface} of link {route.link} does not exist")
        family = _family(route)
        _delete_rule(ipr, route.priority, family)  # a rule from an earlier run: replace, never duplicate
        ipr.rule("add", family=family, priority=route.priority, table=route.table,
                 fwmark=route.mark, fwmask=route.mask)
        gateway = {"gateway": str(route.gateway)} if route.gateway else {}
        default = "0.0.0.0/0" if route.version == 4 else "::/0"
        ipr.route("replace", dst=default, family=family, oif=index[0], table=route.table, **gateway)

    @staticmethod
    def _remove(ipr: IPRoute, route: LinkRoute) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        _delete_rule(ipr, route.priority, _family(route))
        try:
            ipr.flush_routes(table=route.table, family=_family(route))
        except NetlinkError as exc:
            if exc.code not in (ENOENT, ESRCH):
                raise

    def choose_links(self, plan: Plan, up: frozenset[str]) -> None:
        """Point new connections (balance and pins) at the links in `up`: one nft transaction."""
        self.nft.run(choice_script(plan.policy, plan.numbering.links.numbers, up))

    @staticmethod
    def end_connections(link_number: int) -> int:
        """Delete the conntrack entries carrying link `link_number` in the ct mark, and only those.

        Their next packet starts a new entry that the balance puts on an up link; the
        old connection (its NAT address gone) ends. The rest of the table is untouched.
        """
        selector = f"{marks.link_bits(link_number):#x}/{marks.LINK_MASK:#x}"
        deleted = 0
        for family in ("ipv4", "ipv6"):
            try:
                proc = subprocess.run(["conntrack", "-D", "-f", family, "--mark", selector], capture_output=True,
                                      text=True, timeout=CONNTRACK_TIMEOUT_SECONDS, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise LinkError(f"conntrack -D --mark {selector}: {exc}") from exc
            # Exit 1 with "0 flow entries" when nothing matched: not an error.
            found = DELETED.search(proc.stderr + proc.stdout)
            if found is None and proc.returncode != 0:
                raise LinkError(f"conntrack -D --mark {selector}: {proc.stderr.strip()}")
            deleted += int(found.group(1)) if found else 0
        return deleted


def _family(route: LinkRoute) -> int:
    return socket.AF_INET if route.version == 4 else socket.AF_INET6


def _delete_rule(ipr: IPRoute, priority: int, family: int) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.rule("del", family=family, priority=priority)
    except NetlinkError as exc:
        if exc.code not in (ENOENT, ESRCH):
            raise

