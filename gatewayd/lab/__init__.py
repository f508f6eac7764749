"""Network-namespace lab: a self-contained office (LAN hosts, switch, gateway, internet).

Needs root.  See topology.Lab for the entry point, services.DEFAULT_SITES for the
names the lab internet serves, traffic for client-side probes.
"""

from gatewayd.lab.services import (
    DEFAULT_SITES,
    DNS_SERVER_V4,
    DNS_SERVER_V6,
    IPERF_PORTS,
    IPERF_SERVER_V4,
    IPERF_SERVER_V6,
    InternetServices,
    Site,
)
from gatewayd.lab.topology import (
    DEFAULT_HOSTS,
    HostSpec,
    Lab,
    LabCommandError,
    LabError,
    cleanup_dead_labs,
    cleanup_stale,
    list_namespaces,
)

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_SITES",
    "DNS_SERVER_V4",
    "DNS_SERVER_V6",
    "IPERF_PORTS",
    "IPERF_SERVER_V4",
    "IPERF_SERVER_V6",
    "HostSpec",
    "InternetServices",
    "Lab",
    "LabCommandError",
    "LabError",
    "Site",
    "cleanup_dead_labs",
    "cleanup_stale",
    "list_namespaces",
]
