"""What the cluster file decides about the user's config: the checks that need both.

DHCP and `$private_ipv4`, the etcd ports and addresses in the user's etcd
settings, CoreOS-era units on Flatcar, network units guestinfo overrides.
Each check returns findings; raise_if_errors turns the errors among them
into one ConfigError listing every problem with its line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from vmcoreos import examples
from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, guestinfo, ignition, validate
from vmcoreos.guest.configvalues import CLOUD_CONFIG, DEFAULT_KIND, IGNITION, UserConfig
from vmcoreos.guest.validate import ERROR, WARNING, Finding
from vmcoreos.settings import ClusterSettings

# DHCP nodes with a cloud-config boot twice: first without etcd, so guest tools report the leased address,
# then with the membership written for that address (coreos-cloudinit applies guestinfo on every boot).
# Ignition applies its config on the first boot only, so Ignition nodes work out their address themselves
# when etcd starts (guest/leased.py); their membership cannot list addresses in advance, so it is discovery.
DHCP_IGNITION_MESSAGE = (
    "node.network.mode is dhcp with an Ignition config: Ignition reads its config once, before the lease is"
    " known, so the members cannot be listed in advance; set etcd.bootstrap: discovery (with etcd.discovery, or"
    " deploy --discovery-etcd URL), or use node.network.mode static"
)


def raise_if_errors(source: str, findings: list[Finding]) -> None:
    findings = sorted(set(findings), key=lambda f: (f.line, f.level, f.message))
    errors = validate.errors(findings)
    if not errors:
        return
    n = len(errors)
    raise ConfigError(
        f"node config {source} has {n} problem{'s' if n != 1 else ''}; fix {'them' if n != 1 else 'it'} and run again",
        findings=[str(f) for f in findings],
    )


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


def settings_findings(settings, kind, text, doc, located, source="node.yaml") -> list[Finding]:
    user = UserConfig(text, "", doc, kind, (), located)
    out: list[Finding] = []
    distro, net = settings.image.distro, settings.node.network
    if kind == IGNITION:
        out += ignition.checks_for_settings(doc, text, distro=distro, version=settings.image.version,
                                            static=net.mode == "static")
    elif distro == "fedora-coreos":
        out.append(Finding(1, ERROR, "Fedora CoreOS reads only Ignition configs (no coreos-cloudinit); write an"
                           f" Ignition config (start from the example at {examples.path('flatcar-ignition.json')}) or use image.distro flatcar"))
    etcd_kind = _config_kind(settings, user)
    refused = kind == CLOUD_CONFIG and _legacy_findings(doc, located, distro, etcd_kind, source, out)
    if net.mode == "dhcp" and kind == IGNITION:
        if distro == "coreos":
            out.append(Finding(0, ERROR, "node.network.mode dhcp with Ignition is supported on Flatcar and Fedora"
                               " CoreOS; on CoreOS Container Linux use a cloud-config or static addresses"))
        elif settings.etcd.bootstrap != "discovery":
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
            out += url_findings(user, address)
    return out


_GONE_UNITS = {"etcd2.service": "etcd2", "etcd.service": "etcd 0.4", "fleet.service": "fleet"}


def _legacy_findings(doc, located, distro, etcd_kind, source, out: list[Finding]) -> bool:
    """CoreOS-era etcd and fleet where they cannot run; each error carries the convert command. True if any."""
    before = len(out)

    def command() -> str:
        # Imported only for a refusal: convert loads ruamel.yaml (some 15 ms), which a deploy needs not.
        from vmcoreos.guest import convert

        return convert.command(source)

    def fix() -> str:
        return f"convert it: {command()}, then point node.config at the new file"

    def line(path) -> int:
        return located.line(path) if located else 0

    coreos = doc.get("coreos") if isinstance(doc.get("coreos"), dict) else {}
    if distro == "flatcar":
        for section in ("etcd2", "etcd"):
            if isinstance(coreos.get(section), dict):
                out.append(Finding(line(("coreos", section)), ERROR, f"Flatcar ships no {section}.service, so"
                                   f" coreos.{section} never runs there; its etcd is etcd-member.service; {fix()}"))
        if "fleet" in coreos:
            out.append(Finding(line(("coreos", "fleet")), ERROR, f"Flatcar ships no fleet, so coreos.fleet never"
                               f" runs there; its units become plain systemd units; {fix()}"))
        for i, unit in enumerate(coreos.get("units") or []):
            name = unit.get("name") if isinstance(unit, dict) else None
            if name in _GONE_UNITS and not unit.get("mask"):
                out.append(Finding(line(("coreos", "units", i, "name")), ERROR, f"unit {name} does not exist on"
                                   f" Flatcar ({_GONE_UNITS[name]} is not shipped), so deploy would report success"
                                   f" without it; {fix()}"))
    elif distro == "coreos" and etcd_kind == "etcd":
        # etcd 0.4 has no initial_cluster and no members API (v2 /members, v3 gateway): vmcoreos could neither
        # bootstrap a fixed set of members nor see them join, and CoreOS dropped etcd 0.4 long before its end.
        out.append(Finding(line(("coreos", "etcd")), ERROR, "coreos.etcd is etcd 0.4, which has no initial cluster"
                           " list and no members API, so vmcoreos can neither bootstrap nor check its members, and"
                           " late CoreOS images no longer ship it; use coreos.etcd2, or move to Flatcar (image.distro"
                           f" flatcar): {command()}"))
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


def url_findings(user: UserConfig, address: ipaddress.IPv4Interface | None) -> list[Finding]:
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
        ours = guestinfo.NETWORK_UNIT_PREFIX + "00:50:56"  # 00-<the node's MAC>.network
        if name.endswith(".network") and re.search(r"^\s*Address\s*=", content, re.MULTILINE) and name > ours:
            path = ("coreos", "units", i, "name")
            out.append(Finding(located.line(path) if located else 0, WARNING,
                               f"unit {name} sets Address=, but vmcoreos gives the node its address through"
                               " guestinfo.interface.0 (coreos-cloudinit writes 00-<the node's MAC>.network, which"
                               " systemd-networkd applies first); this unit only takes effect on another NIC"))
    return out
