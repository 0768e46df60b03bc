"""Which of the addresses VMware Tools reports is the node's own.

`guest.ipAddress` is Tools' "primary" address: while the network comes up it
can be IPv6 link-local (fe80::), and on a node that runs containers an
overlay interface's (flannel, cni, calico; open-vm-tools hides only docker*,
veth* and virbr*). `guest.net` lists every NIC; the VM's first virtual NIC
has deviceConfigId 4000, interfaces the guest made itself have -1. What the
guest reports is untrusted, so only parsable IPv4 literals count.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

FIRST_NIC = 4000
_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")


def _field(obj: Any, name: str) -> Any:
    # pyvmomi objects, or dicts from a JSON report (tests).
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def nic_addresses(nic: Any) -> list[str]:
    """Every address text one guest.net entry reports, ipConfig's and the flat list's, in order."""
    found = list(_field(nic, "ipAddress") or [])
    config = _field(nic, "ipConfig")
    for entry in (_field(config, "ipAddress") or []) if config is not None else []:
        found.append(_field(entry, "ipAddress"))
    return [str(a) for a in found if a]


def _usable_ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if not isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip in _LINK_LOCAL or ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return ip


def first_nic(net: Iterable[Any]) -> Any | None:
    """The VM's first virtual NIC: deviceConfigId 4000, else the lowest one vSphere gave (never the guest's -1)."""
    nics = [n for n in net or [] if isinstance(_field(n, "deviceConfigId"), int) and _field(n, "deviceConfigId") >= 0]
    if not nics:
        return None
    return min(nics, key=lambda n: (_field(n, "deviceConfigId") != FIRST_NIC, _field(n, "deviceConfigId")))


def node_address(net: Iterable[Any] | None, primary: str | None = None) -> str | None:
    """The node's own IPv4 address: the first NIC's, outside 169.254/16 and on no other NIC; None until there is one.

    Without any guest.net (tools that report only the primary), the primary
    address counts if it is such an IPv4 address.
    """
    net = list(net or [])
    nic = first_nic(net)
    if nic is None:
        ip = _usable_ipv4(primary or "") if not net else None
        return str(ip) if ip else None
    others = {a for n in net if n is not nic for a in nic_addresses(n)}
    for text in nic_addresses(nic):
        ip = _usable_ipv4(text)
        if ip is not None and text not in others and str(ip) not in others:
            return str(ip)
    return None


def reported(net: Iterable[Any] | None, primary: str | None = None) -> set[str]:
    """Every IPv4 address the guest reports, on any NIC or as the primary."""
    texts = [a for n in net or [] for a in nic_addresses(n)] + ([primary] if primary else [])
    return {str(ip) for ip in map(_usable_ipv4, texts) if ip is not None}
