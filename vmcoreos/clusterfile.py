"""The cluster file (YAML) parsed into ClusterSettings, each value checked with its key's path."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import yaml

from vmcoreos.errors import ConfigError
from vmcoreos.settings import (
    CHANNELS, DISTROS, ClusterSettings, EtcdSettings, ImageSettings, NetworkSettings, NodeSettings, VSphereTarget,
    check_image, trusted_key,
)

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")


class _Reader:
    """Reads typed values out of the parsed YAML, naming the key on error."""

    def __init__(self, data: dict, where: str):
        self.data = data
        self.where = where

    def section(self, key: str) -> "_Reader":
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: '{key}' must be a mapping; see configs/cluster.yaml for the layout")
        return _Reader(value, self.where + "." + key if self.where else key)

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.path(key)} must be {_kind_name(kind)}, not {value!r}")
        return value

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def reject_unknown(self, known: set[str]) -> None:
        unknown = sorted(set(self.data) - known)
        if unknown:
            raise ConfigError(
                f"unknown key '{self.path(unknown[0])}' in the cluster file; known keys here: {', '.join(sorted(known))}"
            )


def _kind_name(kind: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a list"}.get(
        kind, kind.__name__
    )


def load_cluster_file(path: Path) -> ClusterSettings:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"cluster file {path} does not exist; pass -c with the path of your cluster file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}{line}: {problem}; fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the cluster file must be a YAML mapping; see configs/cluster.yaml")
    return parse_cluster(data, base_dir=path.parent, source=path)


def parse_cluster(data: dict, *, base_dir: Path, source: Path | None = None) -> ClusterSettings:
    top = _Reader(data, "")
    top.reject_unknown({"cluster", "count", "vsphere", "image", "node", "etcd", "wait"})
    name = top.get("cluster", str)
    if not name:
        raise ConfigError("the cluster file needs 'cluster: <name>'; node VMs are named <name>-01, <name>-02, …")
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"cluster name {name!r} must be lower-case letters, digits and '-' (it becomes host names); pick another"
        )
    count = top.get("count", int, 3)
    if count < 1:
        raise ConfigError("count must be at least 1")

    vs = top.section("vsphere")
    vs.reject_unknown({"datacenter", "cluster", "datastore", "network", "folder"})
    target = VSphereTarget(**{k: vs.get(k, str) for k in ("datacenter", "cluster", "datastore", "network", "folder")})

    im = top.section("image")
    im.reject_unknown({"distro", "channel", "version", "base_url", "ova", "sig", "trusted_keys", "allow_unsigned_version"})
    distro = im.get("distro", str, "flatcar")
    if distro not in DISTROS:
        raise ConfigError(f"image.distro {distro!r} is not one of {', '.join(DISTROS)}")
    channel = im.get("channel", str, "stable")
    if channel not in CHANNELS[distro]:
        raise ConfigError(f"image.channel {channel!r} is not a {distro} channel; use one of {', '.join(CHANNELS[distro])}")
    keys = tuple(trusted_key(k, distro, base_dir) for k in (im.get("trusted_keys", list, []) or []))
    image = ImageSettings(
        distro=distro,
        channel=channel,
        version=im.get("version", str, "current"),
        base_url=im.get("base_url", str),
        ova=_resolve_source(base_dir, im.get("ova", str)),
        sig=_resolve_source(base_dir, im.get("sig", str)),
        trusted_keys=keys,
        allow_unsigned_version=im.get("allow_unsigned_version", bool, False),
    )

    nd = top.section("node")
    nd.reject_unknown({"cpus", "memory_mb", "config", "network", "linked_clone"})
    config_path = nd.get("config", str)
    net = nd.section("network")
    net.reject_unknown({"mode", "addresses", "gateway", "dns"})
    network = parse_network(net)
    node = NodeSettings(
        cpus=nd.get("cpus", int, 2),
        memory_mb=nd.get("memory_mb", int, 2048),
        config=_resolve(base_dir, config_path) if config_path else None,
        network=network,
        linked_clone=nd.get("linked_clone", bool, False),
    )
    check_node_hardware(node)

    et = top.section("etcd")
    et.reject_unknown({"bootstrap", "discovery", "client_port", "peer_port", "image", "scheme", "ca_file"})
    etcd_image = et.get("image", str)
    etcd_ca = et.get("ca_file", str)
    etcd = EtcdSettings(
        bootstrap=et.get("bootstrap", str, "static"),
        discovery=et.get("discovery", str),
        client_port=et.get("client_port", int, 2379),
        peer_port=et.get("peer_port", int, 2380),
        image=check_image(etcd_image) if etcd_image is not None else None,
        scheme=et.get("scheme", str, "https" if etcd_ca else "http"),
        ca_file=_resolve(base_dir, etcd_ca) if etcd_ca else None,
    )
    if etcd.bootstrap not in ("static", "discovery"):
        raise ConfigError(f"etcd.bootstrap {etcd.bootstrap!r} must be 'static' or 'discovery'")
    if etcd.scheme not in ("http", "https"):
        raise ConfigError(f"etcd.scheme {etcd.scheme!r} must be 'http' or 'https'")
    if etcd.ca_file is not None and etcd.scheme != "https":
        raise ConfigError("etcd.ca_file is set but etcd.scheme is http; set etcd.scheme: https or drop ca_file")
    if etcd.ca_file is not None and not etcd.ca_file.is_file():
        raise ConfigError(f"etcd.ca_file {etcd.ca_file} does not exist; fix the path in the cluster file")

    wt = top.section("wait")
    wt.reject_unknown({"timeout"})
    return ClusterSettings(
        name=name,
        count=count,
        vsphere=target,
        image=image,
        node=node,
        etcd=etcd,
        wait_timeout=wt.get("timeout", float, 600.0),
        source=source,
    )


# What ESXi accepts for one VM, checked here because vSphere says no only at clone time, after the upload:
# vSphere 8 allows 768 vCPUs and 24 TiB per VM; memory goes in 4 MB steps.
MAX_CPUS = 768
MAX_MEMORY_MB = 24 << 20


def check_node_hardware(node: NodeSettings) -> None:
    if not 1 <= node.cpus <= MAX_CPUS:
        raise ConfigError(f"node.cpus is {node.cpus}; a VM has 1 to {MAX_CPUS} virtual CPUs, so pick a number in that range")
    if not 256 <= node.memory_mb <= MAX_MEMORY_MB:
        raise ConfigError(f"node.memory_mb is {node.memory_mb}; give at least 256 and at most {MAX_MEMORY_MB} (24 TiB)")
    if node.memory_mb % 4:
        fit = node.memory_mb - node.memory_mb % 4
        raise ConfigError(
            f"node.memory_mb is {node.memory_mb}, not a multiple of 4, which ESXi refuses; use {fit} or {fit + 4}"
        )


def parse_network(net: _Reader) -> NetworkSettings:
    mode = net.get("mode", str, "dhcp")
    if mode not in ("static", "dhcp"):
        raise ConfigError(f"node.network.mode {mode!r} must be 'static' or 'dhcp'")
    raw = net.data.get("addresses") or []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError("node.network.addresses must be a list of CIDR addresses or a range like 10.0.0.20-10.0.0.29/24")
    addresses: list[ipaddress.IPv4Interface] = []
    for item in raw:
        addresses.extend(parse_addresses(str(item)))
    seen: set = set()
    for a in addresses:
        if a.ip in seen:
            raise ConfigError(f"node.network.addresses lists {a.ip} twice; every node needs its own address")
        seen.add(a.ip)
    if mode == "static" and not addresses:
        raise ConfigError("node.network.mode is static but node.network.addresses is empty; list one address per node")
    gateway = _ip(net.get("gateway", str), "node.network.gateway")
    dns = tuple(_ip(str(d), "node.network.dns") for d in (net.data.get("dns") or []))
    return NetworkSettings(mode=mode, addresses=tuple(addresses), gateway=gateway, dns=dns)


def parse_addresses(text: str) -> list[ipaddress.IPv4Interface]:
    """'10.0.0.20/24' or the range '10.0.0.20-10.0.0.29/24' (prefix required: the guest needs CIDR)."""
    if "/" not in text:
        raise ConfigError(f"address {text!r} has no prefix length; write it in CIDR form, e.g. {text}/24")
    span, prefix = text.rsplit("/", 1)
    first, _, last = span.partition("-")
    try:
        start = ipaddress.IPv4Interface(f"{first}/{prefix}")
        end = ipaddress.IPv4Interface(f"{last}/{prefix}") if last else start
    except ValueError:
        raise ConfigError(f"address {text!r} is not a CIDR address or range like 10.0.0.20-10.0.0.29/24") from None
    if int(end.ip) < int(start.ip):
        raise ConfigError(f"address range {text!r} ends before it starts")
    if end.network != start.network:
        raise ConfigError(f"address range {text!r} leaves its /{prefix} network")
    return [ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(i)}/{prefix}") for i in range(int(start.ip), int(end.ip) + 1)]


def _ip(text: str | None, where: str) -> ipaddress.IPv4Address | None:
    if text is None:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IPv4 address") from None


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _resolve_source(base: Path, value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    return str(_resolve(base, value))
