"""Per-node configs: the user's one config plus what makes each node itself.

Planning is pure: it needs the cluster settings and the user's config file,
never vSphere, so `render` and validation run offline and before any change.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, guestinfo
from vmcoreos.settings import ClusterSettings

DEFAULT_KIND = {"flatcar": "member", "coreos": "etcd2", "fedora-coreos": "member"}

_DEFAULT_CONFIG = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
"""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    index: int
    address: ipaddress.IPv4Interface | None
    config_text: str
    guestinfo: dict[str, str]
    digest: str

    @property
    def ip(self) -> str | None:
        return str(self.address.ip) if self.address else None


@dataclass(frozen=True)
class UserConfig:
    text: str
    source: str
    doc: dict


def load_user_config(settings: ClusterSettings) -> UserConfig:
    path: Path | None = settings.node.config
    if path is None:
        text, source = _DEFAULT_CONFIG, "(built-in config)"
    else:
        try:
            text, source = path.read_text(), str(path)
        except FileNotFoundError:
            raise ConfigError(f"node config {path} does not exist; fix node.config in the cluster file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read node config {path}: {exc}") from None
    return UserConfig(text=text, source=source, doc=cloudconfig.parse(text, source))


def cluster_token(settings: ClusterSettings) -> str:
    # Stable per cluster so re-rendering gives the same config (and digest) every run.
    return f"vmcoreos-{settings.name}"


def node_addresses(settings: ClusterSettings, count: int) -> list[ipaddress.IPv4Interface | None]:
    net = settings.node.network
    if net.mode == "dhcp":
        return [None] * count
    if len(net.addresses) < count:
        raise ConfigError(
            f"{count} nodes need {count} addresses but node.network.addresses has {len(net.addresses)};"
            " add addresses or lower the count"
        )
    return list(net.addresses[:count])


def plan(
    settings: ClusterSettings,
    user: UserConfig,
    *,
    count: int,
    only: list[str] | None = None,
    existing_members: dict[str, str] | None = None,
) -> list[NodeConfig]:
    """Configs for nodes 1..count (or just `only`).

    existing_members (name -> peer URL) means the nodes join a running cluster:
    `initial_cluster_state: existing` with the live list plus the joiner.
    """
    names = settings.node_names(count)
    addresses = node_addresses(settings, count)
    etcd = settings.etcd
    if etcd.bootstrap == "static" and settings.node.network.mode == "dhcp":
        raise ConfigError(
            "etcd.bootstrap static needs every node's address up front; use node.network.mode static"
            " or etcd.bootstrap discovery"
        )
    if etcd.bootstrap == "discovery" and not etcd.discovery:
        raise ConfigError("etcd.bootstrap is discovery but etcd.discovery has no URL; set it or pass --discovery-etcd")
    peers = {n: _url(a, etcd.peer_port) for n, a in zip(names, addresses)}
    out = []
    for index, (name, address) in enumerate(zip(names, addresses), start=1):
        if only is not None and name not in only:
            continue
        membership = _membership(settings, name, address, peers, existing_members)
        doc = cloudconfig.merge_node(
            user.doc, hostname=name, membership=membership, default_kind=DEFAULT_KIND[settings.image.distro]
        )
        text = cloudconfig.render(doc)
        keys = {guestinfo.HOSTNAME: name}
        keys.update(
            guestinfo.cloudinit_network_keys(address, settings.node.network.gateway, settings.node.network.dns)
        )
        keys.update(
            guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, text.encode(), "gzip+base64", source=user.source)
        )
        out.append(NodeConfig(name, index, address, text, keys, _digest(text, keys)))
    return out


def _membership(settings, name, address, peers, existing) -> cloudconfig.Membership | None:
    etcd = settings.etcd
    if address is None and etcd.bootstrap == "static":
        return None
    client = _url(address, etcd.client_port)
    peer = _url(address, etcd.peer_port)
    common = dict(
        name=name,
        client_url=client,
        peer_url=peer,
        token=cluster_token(settings),
        # A node owns its addresses; listening on all of them lets etcdctl on the node use localhost.
        listen_client_url=f"http://0.0.0.0:{etcd.client_port}",
        listen_peer_url=f"http://0.0.0.0:{etcd.peer_port}",
    )
    if existing is not None:
        members = dict(existing)
        members[name] = peer
        initial = ",".join(f"{n}={u}" for n, u in members.items())
        return cloudconfig.Membership(initial_cluster=initial, state="existing", **common)
    if etcd.bootstrap == "discovery":
        return cloudconfig.Membership(initial_cluster=None, state="new", discovery=etcd.discovery, **common)
    initial = ",".join(f"{n}={u}" for n, u in peers.items())
    return cloudconfig.Membership(initial_cluster=initial, state="new", **common)


def _url(address: ipaddress.IPv4Interface | None, port: int) -> str:
    host = str(address.ip) if address is not None else "$private_ipv4"
    return f"http://{host}:{port}"


def _digest(text: str, keys: dict[str, str]) -> str:
    plain = {k: v for k, v in keys.items() if not k.endswith((".config.data", ".config.data.encoding"))}
    blob = json.dumps({"config": text, "keys": plain}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
