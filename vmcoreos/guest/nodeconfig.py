"""Per-node configs: the user's one config plus what makes each node itself.

Planning is pure: it needs the cluster settings and the user's config file,
never vSphere, so `render` and validation run offline and before any change.
Both steps check what they can and raise one ConfigError listing every
problem with its line (validate.py says which findings are errors):

* load_user_config: the file itself (YAML/JSON, coreos-cloudinit's rules,
  Ignition spec versions) and what the cluster file decides about it (DHCP
  and `$private_ipv4`, the etcd ports, the distro);
* plan: each node's merged config (addresses in etcd URLs, the 64 KiB limit).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, guestinfo, ignition, validate
from vmcoreos.guest.validate import ERROR, WARNING, Finding
from vmcoreos.settings import ClusterSettings

DEFAULT_KIND = {"flatcar": "member", "coreos": "etcd2", "fedora-coreos": "member"}
CLOUD_CONFIG, IGNITION = "cloud-config", "ignition"

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
    kind: str = CLOUD_CONFIG

    @property
    def ip(self) -> str | None:
        return str(self.address.ip) if self.address else None

    @property
    def data_key(self) -> str:
        """The guestinfo key that carries this node's config; which one depends on distro and config kind."""
        return next(k for k in guestinfo.DATA_KEYS if k in self.guestinfo)


@dataclass(frozen=True)
class UserConfig:
    text: str
    source: str
    doc: dict
    kind: str = CLOUD_CONFIG
    # Findings that do not stop a run, as "line N: …"; the CLI prints them as warnings.
    warnings: tuple[str, ...] = ()
    located: validate.Located | None = field(default=None, compare=False, repr=False)


def detect(text: str) -> str:
    """The config kind, decided from the content as the guest does (coreos-cloudinit user_data.go)."""
    if text.split("\n", 1)[0].rstrip() == validate.HEADER:
        return CLOUD_CONFIG
    if ignition.is_ignition(text) or ignition.looks_like_json(text):
        return IGNITION
    if text.startswith("#!"):
        return "script"
    return CLOUD_CONFIG  # checked as one, so the missing header is reported with everything else


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
    kind = detect(text)
    if kind == "script":
        raise ConfigError(
            f"node config {source} is a script (#!); vmcoreos adds each node's hostname and etcd membership to a"
            ' cloud-config ("#cloud-config" on the first line) or an Ignition config, so use one of those'
        )
    located = None
    if kind == IGNITION:
        findings, doc = ignition.check(text, settings.image.distro, settings.image.version)
    else:
        findings, located = validate.check_cloud_config(text)
        doc = cloudconfig.load(text) if located is not None else None
    # Without a document (syntax errors) nothing more can be checked; otherwise report everything at once.
    if doc is not None:
        findings += _settings_findings(settings, kind, text, doc, located, source)
    findings = sorted(set(findings), key=lambda f: (f.line, f.level, f.message))
    warned = tuple((f"line {f.line}: " if f.line else "") + f.message for f in validate.warnings(findings))
    if carries_private_key(text):
        warned += (PRIVATE_KEY_WARNING,)
    user = UserConfig(text, source, doc or {}, kind, warned, located)
    _raise_if_errors(source, findings)
    return user


PRIVATE_KEY_WARNING = (
    "carries private key material; node configs go into guestinfo, which every vCenter user who can read the"
    " VM's configuration (and anyone who can browse its datastore) can read; fetch keys at boot instead"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PuTTY-User-Key-File-")
_BASE64_DATA_URL = re.compile(r"data:[^,\s\"]*;base64,([A-Za-z0-9+/=]+)")


def carries_private_key(text: str) -> bool:
    """A PEM or OpenSSH/PuTTY private key anywhere in the config, also inside Ignition data: URLs."""
    import base64
    import binascii
    from urllib.parse import unquote

    candidates = [text, unquote(text)]
    for match in _BASE64_DATA_URL.finditer(text):
        try:
            candidates.append(base64.b64decode(match.group(1)).decode(errors="replace"))
        except (binascii.Error, ValueError):
            continue
    return any(_PRIVATE_KEY.search(c) for c in candidates)


def _raise_if_errors(source: str, findings: list[Finding]) -> None:
    findings = sorted(set(findings), key=lambda f: (f.line, f.level, f.message))
    errors = validate.errors(findings)
    if not errors:
        return
    n = len(errors)
    raise ConfigError(
        f"node config {source} has {n} problem{'s' if n != 1 else ''}; fix {'them' if n != 1 else 'it'} and run again",
        findings=[str(f) for f in findings],
    )


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


# DHCP nodes boot twice: first without etcd, so guest tools report the leased address, then
# with the membership written for that address (coreos-cloudinit applies guestinfo on every boot).
# Ignition applies its config on the first boot only, so it cannot take part.
DHCP_IGNITION_MESSAGE = (
    "node.network.mode is dhcp with an Ignition config: each etcd member must advertise its own address, which"
    " vmcoreos learns only after the first boot, and Ignition never reads its config again; use"
    " node.network.mode static, or a cloud-config (coreos-cloudinit re-reads guestinfo on every boot)"
)


def _bootstrap_checks(settings: ClusterSettings) -> None:
    etcd = settings.etcd
    if etcd.bootstrap == "discovery" and not etcd.discovery:
        raise ConfigError("etcd.bootstrap is discovery but etcd.discovery has no URL; set it or pass --discovery-etcd")


def plan(
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
    if settings.node.network.mode == "dhcp":
        missing = [n for n in names if n not in (leases or {}) and (only is None or n in only)]
        if missing:
            return first_boot(settings, user, missing)
        return _plan_leased(settings, user, count=count, only=only, existing=existing_members, leases=leases)
    addresses = node_addresses(settings, count)
    etcd = settings.etcd
    peers = {n: _url(a, etcd.peer_port) for n, a in zip(names, addresses)}
    out: list[NodeConfig] = []
    findings: list[Finding] = []
    for index, (name, address) in enumerate(zip(names, addresses), start=1):
        if only is not None and name not in only:
            continue
        membership = _membership(settings, name, address, peers, existing_members)
        if user.kind == IGNITION:
            text, keys = _ignition_node(settings, user, name, address, membership)
        else:
            text, keys = _cloud_config_node(settings, user, name, address, membership)
        findings += _url_findings(user, address)
        node = NodeConfig(name, index, address, text, keys, _digest(text, keys), user.kind)
        if len(keys[node.data_key]) > guestinfo.MAX_VALUE_BYTES:
            findings.append(Finding(0, ERROR, f"{name}: the encoded config is {len(keys[node.data_key])} bytes,"
                                    f" over the {guestinfo.MAX_VALUE_BYTES}-byte guestinfo limit; shrink it (fetch"
                                    " large files from a URL instead)"))
        out.append(node)
    _raise_if_errors(user.source, findings)
    return out


def first_boot(settings: ClusterSettings, user: UserConfig, names: list[str]) -> list[NodeConfig]:
    """DHCP nodes' first boot: the user's config and hostname, etcd left stopped until the address is known."""
    out = []
    for name in names:
        doc = cloudconfig.without_etcd(cloudconfig.merge_node(
            user.doc, hostname=name, membership=None, default_kind=DEFAULT_KIND[settings.image.distro]
        ))
        text = cloudconfig.render(doc)
        keys = {guestinfo.HOSTNAME: name}
        keys.update(guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, text.encode(), "gzip+base64"))
        index = int(name.rsplit("-", 1)[1])
        # The digest covers what the cluster file says (config, hostname), not the leased address,
        # so a DHCP node's mark stays the same across its two boots and across re-leases.
        out.append(NodeConfig(name, index, None, text, keys, _digest(text, keys), user.kind))
    return out


def _plan_leased(settings, user, *, count, only, existing, leases) -> list[NodeConfig]:
    """DHCP nodes with known addresses: membership as for static ones, network left to DHCP."""
    names = settings.node_names(count)
    etcd = settings.etcd
    addresses = {n: ipaddress.IPv4Interface(f"{leases[n]}/32") for n in names if n in leases}
    peers = {n: _url(a, etcd.peer_port) for n, a in addresses.items()}
    out: list[NodeConfig] = []
    for index, name in enumerate(names, start=1):
        if only is not None and name not in only:
            continue
        membership = _membership(settings, name, addresses[name], peers, existing)
        text, keys = _cloud_config_node(settings, user, name, addresses[name], membership, static_network=False)
        out.append(NodeConfig(name, index, addresses[name], text, keys, _digest(text, keys), user.kind))
    return out


def _cloud_config_node(settings, user, name, address, membership, *, static_network=True) -> tuple[str, dict[str, str]]:
    doc = cloudconfig.merge_node(
        user.doc, hostname=name, membership=membership, default_kind=DEFAULT_KIND[settings.image.distro]
    )
    text = cloudconfig.render(doc)
    net = settings.node.network
    keys = {guestinfo.HOSTNAME: name}
    if static_network:
        keys.update(guestinfo.cloudinit_network_keys(address, net.gateway, net.dns))
    keys.update(guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, text.encode(), "gzip+base64"))
    return text, keys


def _ignition_node(settings, user, name, address, membership) -> tuple[str, dict[str, str]]:
    distro, net = settings.image.distro, settings.node.network
    env = None
    if membership is not None:
        env = cloudconfig.member_env(membership, ignition.user_env(user.doc))
    doc = ignition.merge_node(
        user.doc, distro=distro, hostname=name, env=env, address=address, gateway=net.gateway, dns=net.dns,
        iface=guestinfo.KARGS_INTERFACE,
    )
    text = ignition.render(doc)
    keys: dict[str, str] = {}
    if distro != "coreos":  # CoreOS CL has no Afterburn kargs; its networkd unit is in the config
        keys.update(guestinfo.afterburn_network_keys(address, net.gateway, net.dns, hostname=name))
    data_key = guestinfo.CLOUDINIT_DATA if distro == "coreos" else guestinfo.IGNITION_DATA
    keys.update(guestinfo.config_keys(data_key, text.encode(), "gzip+base64"))
    return text, keys


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
    plain = {k: v for k, v in keys.items() if not k.endswith((".config.data", ".config.data.encoding"))}
    blob = json.dumps({"config": text, "keys": plain}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- checks that need the cluster file ------------------------------------------------


@dataclass(frozen=True)
class UrlSetting:
    """One etcd address setting the user wrote: which role it plays and where it is."""

    name: str  # as the user wrote it: coreos.etcd2.advertise_client_urls, ETCD_LISTEN_PEER_URLS, …
    value: str
    line: int
    role: str  # advertise-client, advertise-peer, listen-client, listen-peer
    hostport: bool = False  # etcd 0.4's addr/peer_addr: host:port, no scheme

    def urls(self, ip: str | None) -> list[tuple[str | None, int | None]]:
        """(host, port) of each URL after coreos-cloudinit's substitution with this node's address."""
        out = []
        value = self.value.replace("$private_ipv4", ip or "")
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            parts = urlsplit(("http://" + part) if self.hostport else part)
            try:
                port = parts.port
            except ValueError:
                port = None
            out.append((parts.hostname, port))
        return out


_ETCD2_ROLES = {
    "advertise_client_urls": "advertise-client",
    "initial_advertise_peer_urls": "advertise-peer",
    "listen_client_urls": "listen-client",
    "listen_peer_urls": "listen-peer",
}
_ETCD04_ROLES = {"addr": "advertise-client", "peer_addr": "advertise-peer", "bind_addr": "listen-client",
                 "peer_bind_addr": "listen-peer"}
_MEMBERSHIP_KEYS = ("name", "initial_cluster", "initial_cluster_state", "initial_cluster_token", "discovery")


def url_settings(user: UserConfig, kind: str) -> list[UrlSetting]:
    out = []
    if kind in ("etcd2", "etcd") and user.kind == CLOUD_CONFIG:
        section = (user.doc.get("coreos") or {}).get(kind) or {}
        roles = dict(_ETCD2_ROLES)
        if kind == "etcd":
            roles.update(_ETCD04_ROLES)
        for key, role in roles.items():
            value = section.get(key)
            if isinstance(value, str) and value:
                path = ("coreos", kind, key)
                line = user.located.line(path) if user.located else 0
                out.append(UrlSetting(validate.dotted(path), value, line, role, key in _ETCD04_ROLES))
    elif kind == "member":
        env = ignition.user_env(user.doc) if user.kind == IGNITION else cloudconfig.user_member_env(user.doc)
        for key, role in _ETCD2_ROLES.items():
            var = "ETCD_" + key.upper()
            if env.get(var):
                out.append(UrlSetting(var, env[var], _text_line(user.text, var + "="), role))
    return out


def _text_line(text: str, needle: str) -> int:
    found = 0
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            found = n  # the last one wins, as later drop-ins do
    return found


def _config_kind(settings: ClusterSettings, user: UserConfig) -> str:
    if user.kind == IGNITION:
        return "member"
    return cloudconfig.etcd_kind(user.doc) or DEFAULT_KIND[settings.image.distro]


def _settings_findings(settings, kind, text, doc, located, source="node.yaml") -> list[Finding]:
    user = UserConfig(text, "", doc, kind, (), located)
    out: list[Finding] = []
    distro, net = settings.image.distro, settings.node.network
    if kind == IGNITION:
        out += ignition.checks_for_settings(doc, text, distro=distro, version=settings.image.version,
                                            static=net.mode == "static")
    elif distro == "fedora-coreos":
        out.append(Finding(1, ERROR, "Fedora CoreOS reads only Ignition configs (no coreos-cloudinit); write an"
                           " Ignition config (see configs/flatcar-ignition.json) or use image.distro flatcar"))
    etcd_kind = _config_kind(settings, user)
    refused = kind == CLOUD_CONFIG and _legacy_findings(doc, located, distro, etcd_kind, source, out)
    if net.mode == "dhcp" and kind == IGNITION:
        out.append(Finding(0, ERROR, DHCP_IGNITION_MESSAGE))
    # Substitution: coreos-cloudinit fills $private_ipv4 only from static guestinfo addresses with role private.
    for line, var in validate.substitution_lines(text):
        if kind == IGNITION:
            continue  # ignition.check reports these
        if net.mode == "dhcp":
            out.append(Finding(line, ERROR, f"{var} stays empty under DHCP on VMware (coreos-cloudinit fills it"
                               " only from static guestinfo.interface addresses)"))
        elif var != "$private_ipv4":
            out.append(Finding(line, ERROR, f"{var} stays empty: vmcoreos gives each node one IPv4 address with"
                               " the private role; use $private_ipv4"))
    if kind == CLOUD_CONFIG:
        out += _shadowed_network_units(doc, located, static=net.mode == "static")
        section = (doc.get("coreos") or {}).get(etcd_kind) if etcd_kind in ("etcd2", "etcd") else None
        for key in _MEMBERSHIP_KEYS:
            if isinstance(section, dict) and key in section:
                path = ("coreos", etcd_kind, key)
                out.append(Finding(located.line(path) if located else 0, WARNING,
                                   f"{validate.dotted(path)} is set per node by vmcoreos; the value here is replaced"))
    if not refused:  # the converted config's ports are what counts, and convert reports them
        out += _port_findings(settings, url_settings(user, etcd_kind))
    if net.mode == "static":  # plan() checks again for the nodes it plans; this lists them with the rest
        for address in net.addresses[: settings.count]:
            out += _url_findings(user, address)
    return out


_GONE_UNITS = {"etcd2.service": "etcd2", "etcd.service": "etcd 0.4", "fleet.service": "fleet"}


def _legacy_findings(doc, located, distro, etcd_kind, source, out: list[Finding]) -> bool:
    """CoreOS-era etcd and fleet where they cannot run; each error carries the convert command. True if any."""
    from vmcoreos.guest import convert

    fix = f"convert it: {convert.command(source)}, then point node.config at the new file"
    before = len(out)

    def line(path) -> int:
        return located.line(path) if located else 0

    coreos = doc.get("coreos") if isinstance(doc.get("coreos"), dict) else {}
    if distro == "flatcar":
        for section in ("etcd2", "etcd"):
            if isinstance(coreos.get(section), dict):
                out.append(Finding(line(("coreos", section)), ERROR, f"Flatcar ships no {section}.service, so"
                                   f" coreos.{section} never runs there; its etcd is etcd-member.service; {fix}"))
        if "fleet" in coreos:
            out.append(Finding(line(("coreos", "fleet")), ERROR, f"Flatcar ships no fleet, so coreos.fleet never"
                               f" runs there; its units become plain systemd units; {fix}"))
        for i, unit in enumerate(coreos.get("units") or []):
            name = unit.get("name") if isinstance(unit, dict) else None
            if name in _GONE_UNITS and not unit.get("mask"):
                out.append(Finding(line(("coreos", "units", i, "name")), ERROR, f"unit {name} does not exist on"
                                   f" Flatcar ({_GONE_UNITS[name]} is not shipped), so deploy would report success"
                                   f" without it; {fix}"))
    elif distro == "coreos" and etcd_kind == "etcd":
        # etcd 0.4 has no initial_cluster and no members API (v2 /members, v3 gateway): vmcoreos could neither
        # bootstrap a fixed set of members nor see them join, and CoreOS dropped etcd 0.4 long before its end.
        out.append(Finding(line(("coreos", "etcd")), ERROR, "coreos.etcd is etcd 0.4, which has no initial cluster"
                           " list and no members API, so vmcoreos can neither bootstrap nor check its members, and"
                           " late CoreOS images no longer ship it; use coreos.etcd2, or move to Flatcar (image.distro"
                           f" flatcar): {convert.command(source)}"))
    return len(out) > before


def _port_findings(settings: ClusterSettings, urls: list[UrlSetting]) -> list[Finding]:
    """The config's etcd ports must be the cluster file's: deploy waits and joins on etcd.client_port/peer_port."""
    out = []
    wanted = {"advertise-client": ("client_port", settings.etcd.client_port),
              "advertise-peer": ("peer_port", settings.etcd.peer_port)}
    for setting in urls:
        if setting.role not in wanted:
            continue
        key, port = wanted[setting.role]
        for _, used in setting.urls("192.0.2.1")[:1]:
            if used is None:
                out.append(Finding(setting.line, ERROR, f"{setting.name} has no port; write etcd's port in it"
                                   f" (the cluster file's etcd.{key} is {port})"))
            elif used != port:
                out.append(Finding(setting.line, ERROR, f"{setting.name} uses port {used} but the cluster file's"
                                   f" etcd.{key} is {port}; set etcd.{key}: {used} in the cluster file so vmcoreos"
                                   " builds member URLs and waits on the port etcd really uses"))
    return out


_ANY = {"0.0.0.0", "::"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _url_findings(user: UserConfig, address: ipaddress.IPv4Interface | None) -> list[Finding]:
    """After substitution, advertised URLs must name the node's own address and listen URLs must be bindable."""
    if address is None:
        return []
    ip = str(address.ip)
    kind = cloudconfig.etcd_kind(user.doc) or "member"
    out = []
    for setting in url_settings(user, kind):
        hosts = [h for h, _ in setting.urls(ip)]
        if setting.role.startswith("advertise"):
            if any(h != ip for h in hosts):
                out.append(Finding(setting.line, ERROR, f"{setting.name} must name each node's own address; write"
                                   " $private_ipv4 for the host, or leave the key out and vmcoreos fills it"))
        else:
            bad = [h for h in hosts if h not in _ANY | _LOOPBACK | {ip}]
            if bad or not any(h in _ANY | {ip} for h in hosts):
                out.append(Finding(setting.line, ERROR, f"{setting.name} must include 0.0.0.0 or the node's own"
                                   " address ($private_ipv4), and no other machine's; etcd cannot bind it otherwise"))
    return out


def _shadowed_network_units(doc: dict, located, *, static: bool) -> list[Finding]:
    """A .network unit with Address= loses to the unit coreos-cloudinit writes from guestinfo.interface.0."""
    if not static:
        return []
    out = []
    units = (doc.get("coreos") or {}).get("units") or []
    for i, unit in enumerate(units):
        if not isinstance(unit, dict):
            continue
        name, content = str(unit.get("name") or ""), str(unit.get("content") or "")
        if name.endswith(".network") and re.search(r"^\s*Address\s*=", content, re.MULTILINE) and name > guestinfo.NETWORK_UNIT:
            path = ("coreos", "units", i, "name")
            out.append(Finding(located.line(path) if located else 0, WARNING,
                               f"unit {name} sets Address=, but vmcoreos gives the node its address through"
                               f" guestinfo.interface.0 (coreos-cloudinit writes {guestinfo.NETWORK_UNIT}, which"
                               " systemd-networkd applies first); this unit only takes effect on another NIC"))
    return out
