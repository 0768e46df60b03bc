"""Typed settings: what the cluster file, the environment and the flags say, checked at the edge.

Everything the rest of the code reads comes from here, already checked, so a
typo in the cluster file fails before any vSphere call with the key's path.
The cluster file's parser lives in vmcoreos.clusterfile and the vCenter
connection in vmcoreos.connection; import them from there.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from vmcoreos import naming
from vmcoreos.environment import (
    ENV_DATACENTER, ENV_DATASTORE, ENV_FOLDER, ENV_NETWORK, ENV_RESOURCE_POOL, value as env_value,
)
from vmcoreos.errors import ConfigError

DISTROS = ("flatcar", "coreos", "fedora-coreos")
CHANNELS = {
    "flatcar": ("stable", "beta", "alpha", "lts"),
    "coreos": ("stable", "beta", "alpha"),
    "fedora-coreos": ("stable", "testing", "next"),
}


@dataclass(frozen=True)
class VSphereTarget:
    datacenter: str | None = None
    cluster: str | None = None
    datastore: str | None = None  # the first of datastores (the template goes there)
    datastores: tuple[str, ...] | None = None  # vsphere.datastores, the members spread over them; None: datastore
    network: str | None = None
    folder: str | None = None
    resource_pool: str | None = None  # a path below the cluster's root pool
    host: str | None = None  # the ESXi host every clone and import goes to (else members are spread)
    # (key, variable) for each value a GOVC_* variable supplied, so a lookup error names what to fix.
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def datastore_names(self) -> tuple[str | None, ...]:
        """The datastores members spread over, the template's first; (None,): the only one vCenter has."""
        return self.datastores or (self.datastore,)

    def origin(self, key: str) -> str:
        """Where vsphere.<key>'s value came from: the cluster file's key or a GOVC_* variable."""
        return dict(self.origins).get(key, f"vsphere.{key}")


def with_govc_defaults(target: VSphereTarget, environ: Mapping[str, str] | None = None) -> VSphereTarget:
    """`target` with its unset keys taken from the GOVC_* inventory variables; govc's absolute paths
    (/DC/datastore/DS) are cut to our names. A variable is read only for a key it would fill; environ None: the process's."""

    def under(name: str, kind: str) -> str | None:
        value = env_value(name, environ)
        if value and value.startswith("/"):
            parts = value.strip("/").split("/")
            if len(parts) < 3 or parts[1] != kind:
                raise ConfigError(f"{name}={value!r} is not an inventory path like /<datacenter>/{kind}/<name>;"
                                  f" fix or unset {name}, or set it in the cluster file's vsphere section")
            return "/".join(parts[2:])
        return value

    read = {
        "datacenter": (ENV_DATACENTER, lambda: env_value(ENV_DATACENTER, environ)),
        "cluster": (ENV_RESOURCE_POOL, lambda: _cluster_of_pool(under(ENV_RESOURCE_POOL, "host"))),
        "datastore": (ENV_DATASTORE, lambda: under(ENV_DATASTORE, "datastore")),
        "network": (ENV_NETWORK, lambda: under(ENV_NETWORK, "network")),
        "folder": (ENV_FOLDER, lambda: under(ENV_FOLDER, "vm")),
    }
    filled = {key: (name, get()) for key, (name, get) in read.items() if getattr(target, key) is None}
    filled = {key: (name, value) for key, (name, value) in filled.items() if value is not None}
    return replace(target, **{key: value for key, (_, value) in filled.items()},
                   origins=tuple((key, name) for key, (name, _) in filled.items()))


def _cluster_of_pool(pool: str | None) -> str | None:
    # govc's pool paths are CLUSTER[/Resources[/CHILD…]] under the datacenter's host folder; "*/Resources" is any.
    if pool is None:
        return None
    parts = [p for p in pool.split("/") if p]
    if not parts:
        return None
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != "Resources"):
        raise ConfigError(f"{ENV_RESOURCE_POOL}={pool!r} names a child resource pool; vmcoreos places nodes in a"
                          f" compute cluster's root pool: set vsphere.cluster in the cluster file or unset"
                          f" {ENV_RESOURCE_POOL}")
    return None if parts[0] == "*" else parts[0]


@dataclass(frozen=True)
class TrustedKey:
    """A user's OpenPGP key file, trusted for one distro's images only."""

    path: Path
    distro: str


def trusted_key(text: str | Path, distro: str, base: Path | None = None) -> TrustedKey:
    """`[DISTRO=]FILE` (a --trusted-key or image.trusted_keys entry); without DISTRO it is for `distro`."""
    text = str(text)
    scope, sep, rest = text.partition("=")
    if sep and scope in DISTROS:
        distro, text = scope, rest
    path = Path(os.path.expanduser(text))
    if base is not None and not path.is_absolute():
        path = base / path
    return TrustedKey(path, distro)


@dataclass(frozen=True)
class ImageSettings:
    distro: str = "flatcar"
    channel: str = "stable"
    version: str = "current"
    base_url: str | None = None
    ova: str | None = None
    sig: str | None = None
    trusted_keys: tuple[TrustedKey, ...] = ()
    insecure_skip_verify: bool = False
    # Accept a release version that no signature covers (version.txt without .sig, FCOS metadata over http).
    allow_unsigned_version: bool = False


@dataclass(frozen=True)
class NetworkSettings:
    mode: str = "dhcp"
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()
    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()


@dataclass(frozen=True)
class NodeSettings:
    cpus: int = 2
    memory_mb: int = 2048
    config: Path | None = None
    network: NetworkSettings = NetworkSettings()
    linked_clone: bool = False


@dataclass(frozen=True)
class EtcdSettings:
    bootstrap: str = "static"
    discovery: str | None = None
    client_port: int = 2379
    peer_port: int = 2380
    image: str | None = None  # ETCD_IMAGE for Flatcar's etcd-member.service (a registry mirror)
    # https: the tool talks to etcd's client URLs over TLS, trusting ca_file (system CAs without one).
    scheme: str = "http"
    ca_file: Path | None = None


# A container image reference as docker reads it: [host[:port]/]path[:tag][@sha256:digest]. Checked strictly
# because it lands in a systemd Environment= line: a quote or newline there would rewrite the unit.
_IMAGE_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)


def check_image(value: str, where: str = "etcd.image") -> str:
    if len(value) > 255 or not _IMAGE_RE.fullmatch(value):
        raise ConfigError(f"{where} is not a container image reference; write one such as"
                          " registry.lab:5000/coreos/etcd:v3.5.16 (no quotes, spaces or line breaks)")
    return value


@dataclass(frozen=True)
class ClusterSettings:
    name: str
    count: int
    vsphere: VSphereTarget
    image: ImageSettings
    node: NodeSettings
    etcd: EtcdSettings
    wait_timeout: float = 600.0  # each node's join, from when it is cloned and powered on
    task_stall: float = 600.0  # a clone or import that shows no progress this long is given up
    upload_stall: float = 300.0  # an OVA upload that moves no byte this long is cut (and tried again)
    source: Path | None = None

    def node_names(self, count: int | None = None) -> list[str]:
        return naming.node_names(self.name, count or self.count)

    def with_overrides(self, **changes: Any) -> "ClusterSettings":
        return replace(self, **changes)


@dataclass(frozen=True)
class Overrides:
    """The command line's changes to the cluster file, applied in one place (apply / apply_image)."""

    count: int | None = None
    timeout: float | None = None
    distro: str | None = None
    channel: str | None = None
    version: str | None = None  # --version, --to-version
    base_url: str | None = None
    ova: str | None = None
    sig: str | None = None  # with ova: the signature of that OVA (None: OVA + .sig)
    trusted_keys: tuple[str, ...] = ()  # [DISTRO=]FILE
    insecure_skip_verify: bool = False
    allow_unsigned_version: bool = False
    discovery_etcd: str | None = None

    def check(self) -> None:
        """What the flags alone can get wrong, checked before anything is read."""
        if self.count is not None and self.count < 1:
            raise ConfigError("--count must be at least 1")

    def apply_image(self, image: ImageSettings) -> tuple[ImageSettings, list[str]]:
        """(image settings with the flags on top, warnings to show)."""
        changes = {"distro": self.distro, "channel": self.channel, "version": self.version, "base_url": self.base_url}
        image = replace(image, **{k: v for k, v in changes.items() if v is not None})
        if self.ova is not None:
            image = replace(image, ova=self.ova, sig=self.sig)
        elif self.sig is not None:
            image = replace(image, sig=self.sig)
        warnings = []
        if self.trusted_keys:
            extra = tuple(trusted_key(k, image.distro) for k in self.trusted_keys)
            image = replace(image, trusted_keys=image.trusted_keys + extra)
        if self.insecure_skip_verify:
            warnings.append("signature verification is OFF (--insecure-skip-verify); you are trusting the network")
            image = replace(image, insecure_skip_verify=True)
        if self.allow_unsigned_version:
            image = replace(image, allow_unsigned_version=True)
        return image, warnings

    def apply(self, settings: ClusterSettings) -> tuple[ClusterSettings, list[str]]:
        """(settings with the flags on top, warnings to show)."""
        self.check()
        image, warnings = self.apply_image(settings.image)
        settings = replace(settings, image=image)
        if self.count is not None:
            settings = replace(settings, count=self.count)
        if self.timeout is not None:
            settings = replace(settings, wait_timeout=self.timeout)
        return settings, warnings

