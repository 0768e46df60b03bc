"""What the vendors' VMware OVAs declare (coreos-facts §7): the OVF properties each offers, its guest OS, virtual
hardware version, memory and resource types. The OVA builder's output is checked against these
(test_ova_builder.py), and so is the import spec vCenter makes of it (tests/e2e/test_ova_import_spec.py).
"""

from __future__ import annotations

FLATCAR_KEYS = {
    "guestinfo.hostname",
    "guestinfo.ignition.config.data",
    "guestinfo.ignition.config.data.encoding",
    "guestinfo.ignition.config.url",
    "guestinfo.dns.server.0",
    "guestinfo.dns.server.1",
    *(f"guestinfo.interface.0.{k}" for k in ("name", "mac", "dhcp", "role", "ip.0.address", "ip.1.address")),
    *(f"guestinfo.interface.0.route.{n}.{k}" for n in (0, 1) for k in ("gateway", "destination")),
    *(f"guestinfo.interface.1.{k}" for k in ("name", "mac", "dhcp", "role", "ip.0.address")),
    "guestinfo.interface.1.route.0.gateway",
    "guestinfo.interface.1.route.0.destination",
}

COREOS_KEYS = {
    "guestinfo.hostname",
    "guestinfo.coreos.config.data",
    "guestinfo.coreos.config.url",
    "guestinfo.coreos.config.data.encoding",
    *(f"guestinfo.interface.0.{k}" for k in ("name", "mac", "dhcp", "role", "ip.0.address")),
    "guestinfo.interface.0.route.0.gateway",
    "guestinfo.interface.0.route.0.destination",
    "guestinfo.dns.server.0",
    "guestinfo.dns.server.1",
}

FCOS_KEYS = {"guestinfo.ignition.config.data", "guestinfo.ignition.config.data.encoding"}

HARDWARE = {  # distro: (osType, vmx, memory, property keys, ResourceTypes)
    "flatcar": ("other3xLinux64Guest", "vmx-13", 2048, FLATCAR_KEYS, [3, 4, 6, 5, 5, 24, 1, 15, 17, 14, 10]),
    "coreos": ("other26xLinux64Guest", "vmx-11", 1024, COREOS_KEYS, [3, 4, 6, 5, 5, 24, 1, 15, 17, 14, 10]),
    "fedora-coreos": ("fedora64Guest", "vmx-17", 4096, FCOS_KEYS, [3, 4, 6, 1, 17, 10]),
}
