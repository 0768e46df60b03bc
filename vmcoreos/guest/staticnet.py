"""A CoreOS-era `.network` unit with a static address, turned into the cluster file's node.network.

On one machine `static.network` (Address=192.168.249.20/24) was right; as the template every node
shares, it gives every node that one address, on a NIC name (enp0s3) VMware never gives. vmcoreos
writes each node's own address from node.network instead, so convert drops such a unit and says
which node.network block carries its address, gateway and DNS on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from vmcoreos.guest.changes import DROPPED, NOTE, Change


@dataclass
class StaticNetwork:
    addresses: list[str] = field(default_factory=list)
    gateway: str | None = None
    dns: list[str] = field(default_factory=list)

    def suggestion(self) -> str:
        """The node.network block, one line, with the address widened to a range of three as a start."""
        parts = ["mode: static"]
        if self.addresses:
            parts.append(f"addresses: [{_range_of_three(self.addresses[0])}]")
        if self.gateway:
            parts.append(f"gateway: {self.gateway}")
        if self.dns:
            parts.append(f"dns: [{', '.join(self.dns)}]")
        return "node.network: {" + ", ".join(parts) + "}"


def parse(content: str) -> StaticNetwork | None:
    """Address=, Gateway= and DNS= of a networkd unit's [Network] (and [Address]/[Route]); None without Address=."""
    found = StaticNetwork()
    section = ""
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()  # the seed's DNS lines end in spaces
        if not sep or section not in ("Network", "Address", "Route"):
            continue
        if key == "Address":
            found.addresses.append(value)
        elif key == "Gateway":
            found.gateway = value
        elif key == "DNS":
            found.dns += value.split()
    return found if found.addresses else None


def _range_of_three(address: str) -> str:
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        return address
    last = iface.ip + 2
    if last not in iface.network:
        return iface.with_prefixlen
    return f"{iface.ip}-{last}/{iface.network.prefixlen}"


def drop_static_units(units: list, item_line) -> list:
    """Remove every .network unit that sets a static address; one convert.Change each, with the block to use."""
    out = []
    for i in reversed(range(len(units))):
        unit = units[i]
        if not isinstance(unit, dict) or not str(unit.get("name") or "").endswith(".network"):
            continue
        static = parse(str(unit.get("content") or ""))
        if static is None:
            continue
        name, line = unit.get("name"), item_line(units, i)
        del units[i]
        out.append(Change(line, DROPPED, f"coreos.units[{i}] {name}", "its Address= would be the same on every node"
                          " (vmcoreos gives each node its own address from the cluster file)"))
        out.append(Change(line, NOTE, f"coreos.units[{i}] {name}", "put its address, gateway and DNS in the cluster"
                          f" file, one address per node: {static.suggestion()}"))
    return out
