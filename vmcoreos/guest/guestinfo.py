"""The guestinfo keys a node gets, named exactly as the guest reads them.

Cloud-config nodes: coreos-cloudinit's VMware datasource (config data, the
`interface.<n>.*` network keys with a role so `$private_ipv4` resolves, DNS,
hostname). These are set as VMX extraConfig, never vApp properties: see
vsphere/importer.py for why the imported vApp options are dropped.
"""

from __future__ import annotations

import ipaddress

from vmcoreos.errors import ConfigError
from vmcoreos.guest.encoding import encode

# guest tools' RPC messages cap a value near 64 KiB; a longer one never reaches the guest.
MAX_VALUE_BYTES = 64 * 1024

CLOUDINIT_DATA = "guestinfo.coreos.config.data"
IGNITION_DATA = "guestinfo.ignition.config.data"
HOSTNAME = "guestinfo.hostname"
# The first VMXNET3 NIC of the Flatcar/CoreOS OVAs; networkd's Name= takes globs.
INTERFACE_MATCH = "e*"


def config_keys(data_key: str, payload: bytes, encoding: str, *, source: str) -> dict[str, str]:
    value = encode(payload, encoding)
    if len(value) > MAX_VALUE_BYTES:
        raise ConfigError(
            f"{source}: the encoded config is {len(value)} bytes, over the {MAX_VALUE_BYTES}-byte guestinfo limit;"
            " shrink it or fetch large files from a URL instead"
        )
    return {data_key: value, data_key + ".encoding": encoding}


def cloudinit_network_keys(
    address: ipaddress.IPv4Interface | None,
    gateway: ipaddress.IPv4Address | None,
    dns: tuple[ipaddress.IPv4Address, ...],
) -> dict[str, str]:
    keys: dict[str, str] = {}
    if address is None:
        return keys
    prefix = "guestinfo.interface.0."
    keys[prefix + "name"] = INTERFACE_MATCH
    keys[prefix + "dhcp"] = "no"
    keys[prefix + "role"] = "private"
    keys[prefix + "ip.0.address"] = address.with_prefixlen
    if gateway is not None:
        keys[prefix + "route.0.gateway"] = str(gateway)
        keys[prefix + "route.0.destination"] = "0.0.0.0/0"
    for i, server in enumerate(dns):
        keys[f"guestinfo.dns.server.{i}"] = str(server)
    return keys
