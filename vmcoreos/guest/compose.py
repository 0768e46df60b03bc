"""Composing each node's config: its name, address and etcd membership merged into the user's config.

Pure: it needs the cluster settings and the user's config, never vSphere,
so `render` runs offline and before any change. Static nodes get their
address from the cluster file. DHCP nodes with a cloud-config boot twice
(first_boot, then their membership once the lease is known); DHCP nodes with
Ignition boot once and work out their own address (guest/leased.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json

from vmcoreos import naming
from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, guestinfo, ignition, leased, macs
from vmcoreos.guest.configvalues import DEFAULT_KIND, IGNITION, NodeConfig, UserConfig
from vmcoreos.guest.findings import raise_if_errors, url_findings
from vmcoreos.guest.sections import config_sections
from vmcoreos.guest.validate import ERROR, Finding
from vmcoreos.settings import ClusterSettings


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


def _bootstrap_checks(settings: ClusterSettings) -> None:
    etcd = settings.etcd
    if etcd.bootstrap == "discovery" and not etcd.discovery:
        raise ConfigError("etcd.bootstrap is discovery but etcd.discovery has no URL; set it or pass --discovery-etcd")


def node_configs(
    settings: ClusterSettings,
    user: UserConfig,
    *,
    count: int,
    only: list[str] | None = None,
    existing_members: dict[str, str] | None = None,
    leases: dict[str, str] | None = None,
) -> list[NodeConfig]:
    """Configs for nodes 1..count (or just `only`).

    existing_members (name -> peer URL) means the nodes join a running cluster:
    `initial_cluster_state: existing` with the live list plus the joiner.
    leases (name -> IP) are DHCP nodes' addresses as guest tools reported them;
    a DHCP node without one gets its first-boot config (see first_boot).
    """
    names = settings.node_names(count)
    _bootstrap_checks(settings)
    if settings.node.network.mode == "dhcp" and user.kind != IGNITION:
        missing = [n for n in names if n not in (leases or {}) and (only is None or n in only)]
        if missing:
            nodes = first_boot(settings, user, missing)
        else:
            nodes = _leased_configs(settings, user, count=count, only=only, existing=existing_members, leases=leases)
        raise_if_errors(user.source, [f for node in nodes for f in _size_findings(node)])
        return nodes
    addresses = node_addresses(settings, count)
    etcd = settings.etcd
    peers = {n: _url(a, etcd.peer_port) for n, a in zip(names, addresses)}
    mac_of = macs.node_macs(settings.name, names)
    out: list[NodeConfig] = []
    findings: list[Finding] = []
    for index, (name, address) in enumerate(zip(names, addresses), start=1):
        if only is not None and name not in only:
            continue
        membership = _membership(settings, name, address, peers, existing_members)
        render = _ignition_node if user.kind == IGNITION else _cloud_config_node
        text, keys = render(settings, user, name, address, membership, mac_of[name])
        findings += url_findings(user, address)
        own = render(settings, user, name, address, _own_membership(settings, name, address), mac_of[name])
        node = NodeConfig(name, index, address, text, keys, _digest(text, keys), user.kind, mac_of[name],
                          config_sections(*own, user.kind))
        findings += _size_findings(node)
        out.append(node)
    raise_if_errors(user.source, findings)
    return out


def _size_findings(node: NodeConfig) -> list[Finding]:
    """Every path (static, a DHCP first boot, a leased re-plan) checks the value that goes to the guest."""
    size = len(node.guestinfo[node.data_key])
    if size <= guestinfo.MAX_VALUE_BYTES:
        return []
    return [Finding(0, ERROR, f"{node.name}: the encoded config is {size} bytes, over the {guestinfo.MAX_VALUE_BYTES}-byte"
                              " guestinfo limit (open-vm-tools' 64 KiB less its RPC overhead); shrink it (fetch large"
                              " files from a URL instead)")]


def first_boot(settings: ClusterSettings, user: UserConfig, names: list[str]) -> list[NodeConfig]:
    """DHCP nodes' first boot: the user's config and hostname, etcd left stopped until the address is known."""
    out = []
    mac_of = macs.node_macs(settings.name, settings.node_names(max(naming.node_index(settings.name, n) or 0
                                                                   for n in names)))
    for name in names:
        doc = cloudconfig.without_etcd(cloudconfig.merge_node(
            user.doc, hostname=name, membership=None, default_kind=DEFAULT_KIND[settings.image.distro]
        ))
        text = cloudconfig.render(doc)
        keys = {guestinfo.HOSTNAME: name}
        keys.update(guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, text.encode(), "gzip+base64"))
        index = naming.node_index(settings.name, name)
        # The digest covers what the cluster file says (config, hostname), not the leased address,
        # so a DHCP node's mark stays the same across its two boots and across re-leases.
        out.append(NodeConfig(name, index, None, text, keys, _digest(text, keys), user.kind, mac_of[name],
                              config_sections(text, keys, user.kind)))
    return out


def _leased_configs(settings, user, *, count, only, existing, leases) -> list[NodeConfig]:
    """DHCP nodes with known addresses: membership as for static ones, network left to DHCP."""
    names = settings.node_names(count)
    etcd = settings.etcd
    addresses = {n: ipaddress.IPv4Interface(f"{leases[n]}/32") for n in names if n in leases}
    peers = {n: _url(a, etcd.peer_port) for n, a in addresses.items()}
    mac_of = macs.node_macs(settings.name, names)
    out: list[NodeConfig] = []
    for index, name in enumerate(names, start=1):
        if only is not None and name not in only:
            continue
        membership = _membership(settings, name, addresses[name], peers, existing)
        text, keys = _cloud_config_node(settings, user, name, addresses[name], membership, mac_of[name],
                                        static_network=False)
        own = _cloud_config_node(settings, user, name, addresses[name], _own_membership(settings, name, addresses[name]),
                                 mac_of[name], static_network=False)
        out.append(NodeConfig(name, index, addresses[name], text, keys, _digest(text, keys), user.kind,
                              mac_of[name], config_sections(*own, user.kind)))
    return out


def _cloud_config_node(settings, user, name, address, membership, mac, *,
                       static_network=True) -> tuple[str, dict[str, str]]:
    doc = cloudconfig.merge_node(
        user.doc, hostname=name, membership=membership, default_kind=DEFAULT_KIND[settings.image.distro]
    )
    text = cloudconfig.render(doc)
    net = settings.node.network
    keys = {guestinfo.HOSTNAME: name}
    if static_network:
        keys.update(guestinfo.cloudinit_network_keys(address, net.gateway, net.dns, mac=mac))
    keys.update(guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, text.encode(), "gzip+base64"))
    return text, keys


def _ignition_node(settings, user, name, address, membership, mac) -> tuple[str, dict[str, str]]:
    distro, net, etcd = settings.image.distro, settings.node.network, settings.etcd
    env = None
    if membership is not None:
        env = cloudconfig.member_env(membership, ignition.user_env(user.doc))
    # DHCP: one boot; the node works out its address when etcd starts (guest/leased.py).
    lease_step = None
    if net.mode == "dhcp" and leased.supported(distro):
        joining = None
        if membership is not None and membership.state == "existing":
            joining = leased.joining(name, membership.initial_cluster or "")
        lease_step = leased.command(distro, scheme=etcd.scheme, client_port=etcd.client_port,
                                    peer_port=etcd.peer_port, mac=mac, joining=joining)
        env = leased.without_advertise(env or {}, joining=joining is not None)
    doc = ignition.merge_node(
        user.doc, distro=distro, hostname=name, env=env, address=address, gateway=net.gateway, dns=net.dns,
        mac=mac, image=etcd.image, lease_step=lease_step,
    )
    text = ignition.render(doc)
    keys: dict[str, str] = {}
    if distro != "coreos":  # CoreOS CL has no Afterburn kargs; its networkd unit is in the config
        keys.update(guestinfo.afterburn_network_keys(address, net.gateway, net.dns, hostname=name, mac=mac))
    data_key = guestinfo.CLOUDINIT_DATA if distro == "coreos" else guestinfo.IGNITION_DATA
    keys.update(guestinfo.config_keys(data_key, text.encode(), "gzip+base64"))
    return text, keys


def _own_membership(settings, name, address) -> cloudconfig.Membership | None:
    """The membership with the node itself as its only peer and no discovery token: what stays when the peer
    list, the initial state and a token (all read once, at bootstrap; --discovery-etcd mints a new token
    each run) are taken out of the comparison."""
    if address is not None:
        return _membership(settings, name, address, {}, {})
    found = _membership(settings, name, address, {}, None)
    return None if found is None else dataclasses.replace(found, discovery=None)


def _membership(settings, name, address, peers, existing) -> cloudconfig.Membership | None:
    etcd = settings.etcd
    if address is None and etcd.bootstrap == "static":
        return None
    client = _url(address, etcd.client_port, etcd.scheme)
    peer = _url(address, etcd.peer_port)
    common = dict(
        name=name,
        client_url=client,
        peer_url=peer,
        token=cluster_token(settings),
        # A node owns its addresses; listening on all of them lets etcdctl on the node use localhost.
        listen_client_url=f"{etcd.scheme}://0.0.0.0:{etcd.client_port}",
        listen_peer_url=f"http://0.0.0.0:{etcd.peer_port}",
        image=etcd.image,
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


def _url(address: ipaddress.IPv4Interface | None, port: int, scheme: str = "http") -> str:
    host = str(address.ip) if address is not None else "$private_ipv4"
    return f"{scheme}://{host}:{port}"


def _digest(text: str, keys: dict[str, str]) -> str:
    # The config is in the blob as text; its encoded copy (and how it is encoded) would only repeat it.
    data_key = guestinfo.data_key_of(keys)
    plain = {k: v for k, v in keys.items() if k not in (data_key, guestinfo.encoding_key(data_key))}
    blob = json.dumps({"config": text, "keys": plain}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
