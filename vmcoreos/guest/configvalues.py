"""The config values: the user's one config as loaded, and each node's config as planned."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from vmcoreos.guest import guestinfo, validate

DEFAULT_KIND = {"flatcar": "member", "coreos": "etcd2", "fedora-coreos": "member"}
CLOUD_CONFIG, IGNITION = "cloud-config", "ignition"


@dataclass(frozen=True)
class NodeConfig:
    name: str
    index: int
    address: ipaddress.IPv4Interface | None
    config_text: str
    guestinfo: dict[str, str]
    digest: str
    kind: str = CLOUD_CONFIG
    mac: str = ""  # set on the clone's first NIC (guest/macs.py); the config names the NIC by it
    # Per-section digests of the config as rendered with the node's own membership only: the peer list and
    # initial state are fixed at bootstrap and change with every scale, so a comparison must not see them.
    sections: tuple[tuple[str, str], ...] = ()

    @property
    def ip(self) -> str | None:
        return str(self.address.ip) if self.address else None

    @property
    def data_key(self) -> str:
        """The guestinfo key that carries this node's config; which one depends on distro and config kind."""
        return guestinfo.data_key_of(self.guestinfo)


@dataclass(frozen=True)
class UserConfig:
    text: str
    source: str
    doc: dict
    kind: str = CLOUD_CONFIG
    # Findings that do not stop a run, as "line N: …"; the CLI prints them as warnings.
    warnings: tuple[str, ...] = ()
    located: validate.Located | None = field(default=None, compare=False, repr=False)
