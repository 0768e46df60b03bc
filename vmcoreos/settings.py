"""The cluster file and environment, parsed into typed settings at the edge.

Everything the rest of the code reads comes from here, already checked, so a
typo in the cluster file fails before any vSphere call with the key's path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from vmcoreos.errors import ConfigError

# Environment variables, ours first, then govc's so govc users need nothing new.
ENV_URL = ("VMCOREOS_URL", "GOVC_URL")
ENV_USERNAME = ("VMCOREOS_USERNAME", "GOVC_USERNAME")
ENV_PASSWORD = ("VMCOREOS_PASSWORD", "GOVC_PASSWORD")
ENV_INSECURE = ("VMCOREOS_INSECURE", "GOVC_INSECURE")
ENV_CA_FILE = ("VMCOREOS_CA_FILE", "GOVC_TLS_CA_CERTS")
ENV_THUMBPRINT = ("VMCOREOS_THUMBPRINT",)
ENV_CACHE_DIR = "VMCOREOS_CACHE_DIR"
ENV_GPGV = "VMCOREOS_GPGV"  # absolute path of gpgv, when it is not in /usr/bin
ENV_RETRY_MAX_DELAY = "VMCOREOS_RETRY_MAX_DELAY"  # seconds; the cap of the doubling delay between download retries

DISTROS = ("flatcar", "coreos", "fedora-coreos")
CHANNELS = {
    "flatcar": ("stable", "beta", "alpha", "lts"),
    "coreos": ("stable", "beta", "alpha"),
    "fedora-coreos": ("stable", "testing", "next"),
}


class Secret(str):
    """A string that never shows itself in repr, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class Connection:
    url: str
    host: str
    port: int
    username: str
    password: Secret = field(repr=False)
    insecure: bool = False
    ca_file: Path | None = None
    thumbprint: str | None = None
    # One-line notices for the CLI to show (an inherited --insecure that a pin overrode).
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class VSphereTarget:
    datacenter: str | None = None
    cluster: str | None = None
    datastore: str | None = None
    network: str | None = None
    folder: str | None = None


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
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def check_image(value: str, where: str = "etcd.image") -> str:
    if len(value) > 255 or not _IMAGE_RE.match(value):
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
    wait_timeout: float = 600.0
    source: Path | None = None

    def node_names(self, count: int | None = None) -> list[str]:
        return [node_name(self.name, i) for i in range(1, (count or self.count) + 1)]

    def with_overrides(self, **changes: Any) -> "ClusterSettings":
        return replace(self, **changes)


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-{index:02d}"


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
    if node.cpus < 1 or node.memory_mb < 256:
        raise ConfigError("node.cpus must be at least 1 and node.memory_mb at least 256")

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


def _env(names: tuple[str, ...], environ: dict) -> str | None:
    return _env_named(names, environ)[1]


def _env_named(names: tuple[str, ...], environ: dict) -> tuple[str | None, str | None]:
    """(name, value) of the first of names set in environ."""
    for name in names:
        value = environ.get(name)
        if value:
            return name, value
    return None, None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def read_password_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"password file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"password file {path} is readable by others; run: chmod 600 {path}")
    return path.read_text().rstrip("\n")


def connection_from(
    *,
    url: str | None,
    username: str | None = None,
    password_file: Path | None = None,
    insecure: bool | None = None,
    ca_file: Path | None = None,
    thumbprint: str | None = None,
    environ: dict | None = None,
) -> Connection:
    """Flags first, then VMCOREOS_*, then GOVC_*; a URL may carry user:password as govc's does."""
    env = os.environ if environ is None else environ
    if url and urlsplit(url if "://" in url else "https://" + url).password:
        # A flag's value is on the process list for every user of the machine to read.
        raise ConfigError(
            "--url carries a password, which would show in the process list; put it in VMCOREOS_PASSWORD"
            " or --password-file instead"
        )
    url = url or _env(ENV_URL, env)
    if not url:
        raise ConfigError("no vCenter given; pass --url or set VMCOREOS_URL (or GOVC_URL)")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"vCenter URL {parts.hostname or url!r} is not an https:// URL; e.g. https://vcenter.example.com/sdk")
    user = username or (unquote(parts.username) if parts.username else None) or _env(ENV_USERNAME, env)
    if password_file is not None:
        password = read_password_file(password_file)
    else:
        password = (unquote(parts.password) if parts.password else None) or _env(ENV_PASSWORD, env)
    if not user or password is None:
        raise ConfigError(
            "no vCenter credentials; set VMCOREOS_USERNAME and VMCOREOS_PASSWORD (or use --password-file)"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/sdk"
    clean = f"{parts.scheme}://{parts.hostname}:{port}{path}"
    ca = ca_file or (Path(v) if (v := _env(ENV_CA_FILE, env)) else None)
    if ca is not None and not ca.is_file():
        raise ConfigError(f"CA file {ca} does not exist; pass --ca-file with the PEM of your vCenter's CA")
    pin, skip, notices = _tls_trust(insecure, thumbprint, env)
    return Connection(
        url=clean,
        host=parts.hostname,
        port=port,
        username=user,
        password=Secret(password),
        insecure=skip,
        ca_file=ca,
        thumbprint=pin,
        notices=notices,
    )


def _tls_trust(insecure: bool | None, thumbprint: str | None, env) -> tuple[str | None, bool, tuple[str, ...]]:
    """(thumbprint, insecure, notices): a pinned thumbprint always wins over skipping verification.

    Both on one command line contradict each other and are refused; an insecure
    setting from the environment (a govc user's GOVC_INSECURE=1) or a pin from
    it yields to the pin, with a notice, so a pin is never silently dropped.
    """
    if insecure and thumbprint:
        raise ConfigError(
            "--insecure and --thumbprint contradict each other (one skips the certificate check, the other pins it);"
            " drop --insecure to keep the pin"
        )
    pin_from, pin = ("--thumbprint", thumbprint) if thumbprint else _env_named(ENV_THUMBPRINT, env)
    if insecure is not None:
        skip_from, skip = "--insecure", insecure
    else:
        skip_from, value = _env_named(ENV_INSECURE, env)
        skip = _truthy(value)
        skip_from = f"{skip_from}={value}"
    if pin and skip:
        return pin, False, (f"ignoring {skip_from}: {pin_from} pins vCenter's certificate, and the pin is checked",)
    return pin, skip, ()
