"""Each node's MAC address, which vmcoreos sets on the clone's first NIC, so its config can name that NIC.

A name cannot do it: networkd's `Name=e*` catches every NIC whose name starts with "e" (a second
NIC would get the same static address), and the name predictable naming gives a NIC (ens192,
ens224, …) depends on its PCI slot, which differs by hardware version. The MAC is the NIC's own.

The address is derived from the cluster and node names, so re-rendering gives the same config, and
lies in the range VMware reserves for manually set addresses (00:50:56:00:00:00-00:50:56:3F:FF:FF),
which vCenter never hands out itself.
"""

from __future__ import annotations

import hashlib

_MANUAL_BITS = 22  # 00:50:56:00:00:00 + 0 .. 0x3FFFFF


def node_macs(cluster: str, names: list[str]) -> dict[str, str]:
    """name -> MAC for every node of the cluster; distinct within it (a clash is re-drawn, in name order)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        salt = 0
        while True:
            mac = _draw(cluster, name, salt)
            if mac not in taken:
                break
            salt += 1
        taken.add(mac)
        out[name] = mac
    return out


def _draw(cluster: str, name: str, salt: int) -> str:
    digest = hashlib.sha256(f"vmcoreos-mac\0{cluster}\0{name}\0{salt}".encode()).digest()
    low = int.from_bytes(digest[:3], "big") & ((1 << _MANUAL_BITS) - 1)
    octets = [0x00, 0x50, 0x56, low >> 16, (low >> 8) & 0xFF, low & 0xFF]
    return ":".join(f"{o:02x}" for o in octets)
