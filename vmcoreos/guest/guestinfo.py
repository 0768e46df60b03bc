"""The guestinfo keys a node gets, named exactly as the guest reads them.

Cloud-config nodes: coreos-cloudinit's VMware datasource (config data, the
`interface.<n>.*` network keys with a role so `$private_ipv4` resolves, DNS,
hostname). Ignition nodes: the config data (`ignition.config.*` on Flatcar and
Fedora CoreOS, `coreos.config.*` on CoreOS CL, whose Ignition v0.x reads only
that) and, for a static address, Afterburn's initramfs network kargs; Ignition
reads neither guestinfo.hostname nor the interface keys. These are set as VMX
extraConfig, never vApp properties: see vsphere/importer.py for why the
imported vApp options are dropped.
"""

from __future__ import annotations

import ipaddress

from vmcoreos.guest.encoding import DecodeError, decode, encode

# open-vm-tools' RPC channel caps a message at 64 KiB, and the message carries the RPC's own command
# and reply header besides the value: a value of exactly 65,536 bytes already never reaches the guest.
# 1 KiB is left for that overhead.
RPC_LIMIT_BYTES = 64 * 1024
MAX_VALUE_BYTES = RPC_LIMIT_BYTES - 1024

CLOUDINIT_DATA = "guestinfo.coreos.config.data"
IGNITION_DATA = "guestinfo.ignition.config.data"
# Every key a node config can travel in (NodeConfig.data_key picks the one a node has).
DATA_KEYS = (IGNITION_DATA, CLOUDINIT_DATA)
# What Ignition >= 2.14 writes over its config once applied: "{}\n" in base64.
IGNITION_CLEARED = "e30K"
HOSTNAME = "guestinfo.hostname"
AFTERBURN_KARGS = "guestinfo.afterburn.initrd.network-kargs"
# The node's NIC is named by its MAC (guest/macs.py): dracut's ifname= gives it this name in the initramfs,
# where Afterburn's ip= karg then applies (the booted system matches the MAC again, not this name).
KARGS_INTERFACE = "vmcoreos0"
# The runtime unit coreos-cloudinit writes for interface 0: network/interface.go Filename() is "%02x-%s" of the
# interface's name, or its MAC when it has no name.
NETWORK_UNIT_PREFIX = "00-"


def config_keys(data_key: str, payload: bytes, encoding: str) -> dict[str, str]:
    """The config and its encoding; plan() refuses values over MAX_VALUE_BYTES."""
    return {data_key: encode(payload, encoding), encoding_key(data_key): encoding}


def encoding_key(data_key: str) -> str:
    """The key naming data_key's encoding (guestinfo.<x>.config.data.encoding)."""
    return data_key + ".encoding"


def data_key_of(keys: dict[str, str]) -> str:
    """Which of DATA_KEYS a node's guestinfo carries its config in."""
    return next(k for k in DATA_KEYS if k in keys)


def cloudinit_network_keys(
    address: ipaddress.IPv4Interface | None,
    gateway: ipaddress.IPv4Address | None,
    dns: tuple[ipaddress.IPv4Address, ...],
    *,
    mac: str,
) -> dict[str, str]:
    """interface.0 matched by MAC (networkd [Match] MACAddress=), never by a name glob."""
    keys: dict[str, str] = {}
    if address is None:
        return keys
    prefix = "guestinfo.interface.0."
    keys[prefix + "mac"] = mac
    keys[prefix + "dhcp"] = "no"
    keys[prefix + "role"] = "private"
    keys[prefix + "ip.0.address"] = address.with_prefixlen
    if gateway is not None:
        keys[prefix + "route.0.gateway"] = str(gateway)
        keys[prefix + "route.0.destination"] = "0.0.0.0/0"
    for i, server in enumerate(dns):
        keys[f"guestinfo.dns.server.{i}"] = str(server)
    return keys


def afterburn_network_keys(
    address: ipaddress.IPv4Interface | None,
    gateway: ipaddress.IPv4Address | None,
    dns: tuple[ipaddress.IPv4Address, ...],
    *,
    hostname: str,
    mac: str,
) -> dict[str, str]:
    """dracut `ifname=<name>:<mac> ip=<ip>::<gw>:<netmask>:<hostname>:<name>:off` (+ nameserver=) for the first
    boot's initramfs: the NIC named by its MAC, whatever name its PCI slot would give it."""
    if address is None:
        return {}
    gw = str(gateway) if gateway is not None else ""
    words = [f"ifname={KARGS_INTERFACE}:{mac}",
             f"ip={address.ip}::{gw}:{address.netmask}:{hostname}:{KARGS_INTERFACE}:off"]
    words += [f"nameserver={d}" for d in dns]
    return {AFTERBURN_KARGS: " ".join(words)}


def clear_applied_ignition(extra: dict[str, str]) -> dict[str, str]:
    """The changes that take an applied Ignition config out of a joined node's guestinfo ({} when none).

    Ignition reads its config on the first boot only: guestinfo.ignition.config.data (Flatcar, FCOS) and,
    on CoreOS CL, guestinfo.coreos.config.data when it holds Ignition JSON (its password hashes and keys
    would stay readable to every vCenter user who can read the VM). A cloud-config there stays:
    coreos-cloudinit reads it on every boot.
    """
    changes: dict[str, str] = {}
    for key in DATA_KEYS:
        value = extra.get(key, "")
        if value in ("", IGNITION_CLEARED):
            continue
        if key == CLOUDINIT_DATA:
            try:
                text = decode(value, extra.get(encoding_key(key), ""))
            except DecodeError:  # unreadable: not ours to judge, left as it is
                continue
            if not text.lstrip().startswith(b"{"):
                continue  # cloud-config or a script
        changes[key] = IGNITION_CLEARED
        changes[encoding_key(key)] = "base64"
    return changes
