"""Cloud-config: parse the user's template and merge one node's fields into it.

The merge adds what only the tool knows (hostname, etcd membership) and keeps
every key and unit the user wrote. It emits underscore keys only: current
Flatcar's coreos-cloudinit silently ignores hyphenated ones.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml

from vmcoreos.errors import ConfigError

HEADER = "#cloud-config"
MEMBER_UNIT = "etcd-member.service"
MEMBER_DROPIN = "90-vmcoreos-membership.conf"


# In a unit line `Environment="K=V"` a quote or backslash ends or escapes the value, % is a systemd
# specifier, and a newline starts a new directive (ExecStartPre=… runs as root): none may reach one.
_UNSAFE_IN_UNIT = re.compile(r'["\\%\x00-\x1f\x7f]')


def unit_value(key: str, value: object) -> str:
    """value as text for a systemd unit line under key; ConfigError if it could break out of that line."""
    text = str(value)
    bad = _UNSAFE_IN_UNIT.search(text) or _UNSAFE_IN_UNIT.search(str(key))
    if bad:
        raise ConfigError(
            f"{key} would be written into a systemd unit line but contains {bad.group()!r}; quotes, backslashes,"
            " % and control characters are refused there. Fix the value (cluster file, node config, or the etcd"
            " member it came from)"
        )
    return text


def environment_lines(env: dict[str, str]) -> str:
    """`Environment="K=V"` lines for a drop-in, each value checked by unit_value."""
    return "".join(f'Environment="{k}={unit_value(k, v)}"\n' for k, v in env.items())


def load(text: str) -> dict:
    """The document of a cloud-config that validate.check_cloud_config has already composed."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Unit files read far better as literal blocks than as one escaped line.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(doc: dict) -> str:
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return f"{HEADER}\n{body}"


@dataclass(frozen=True)
class Membership:
    """The etcd fields one node needs to form or join the cluster."""

    name: str
    client_url: str
    peer_url: str
    initial_cluster: str | None  # "n1=http://a:2380,n2=…"; None with discovery
    state: str  # "new" or "existing"
    token: str
    discovery: str | None = None
    listen_client_url: str | None = None
    listen_peer_url: str | None = None
    image: str | None = None  # etcd.image: ETCD_IMAGE for etcd-member.service

    def fields(self) -> dict[str, str]:
        out = {"name": self.name}
        if self.discovery and self.state == "new":
            out["discovery"] = self.discovery
        else:
            out["initial_cluster"] = self.initial_cluster or ""
            out["initial_cluster_state"] = self.state
            out["initial_cluster_token"] = self.token
        return out

    def legacy_fields(self) -> dict[str, str]:
        def hostport(url: str) -> str:
            return urlsplit(url).netloc

        return {
            "addr": hostport(self.client_url),
            "peer_addr": hostport(self.peer_url),
            "bind_addr": hostport(self.listen_client_url or self.client_url),
            "peer_bind_addr": hostport(self.listen_peer_url or self.peer_url),
        }

    def url_fields(self) -> dict[str, str]:
        return {
            "advertise_client_urls": self.client_url,
            "initial_advertise_peer_urls": self.peer_url,
            "listen_client_urls": self.listen_client_url or self.client_url,
            "listen_peer_urls": self.listen_peer_url or self.peer_url,
        }


def etcd_kind(doc: dict) -> str | None:
    """Which etcd the config runs: 'etcd2', 'etcd' (legacy 0.4), 'member' (Flatcar drop-in), or None."""
    coreos = doc.get("coreos") or {}
    if isinstance(coreos, dict):
        if isinstance(coreos.get("etcd2"), dict):
            return "etcd2"
        if isinstance(coreos.get("etcd"), dict):
            return "etcd"
        for unit in coreos.get("units") or []:
            if isinstance(unit, dict) and unit.get("name") == MEMBER_UNIT:
                return "member"
    return None


def merge_node(doc: dict, *, hostname: str, membership: Membership | None, default_kind: str) -> dict:
    """A copy of the user's config with this node's hostname and etcd fields."""
    out = copy.deepcopy(doc)
    out["hostname"] = hostname
    if membership is None:
        return out
    kind = etcd_kind(out) or default_kind
    coreos = out.setdefault("coreos", {})
    if kind in ("etcd2", "etcd"):
        section = coreos.setdefault(kind, {})
        _drop_hyphen_twins(section)
        if kind == "etcd":
            # etcd 0.4 names its addresses host:port (addr, peer_addr); the ports are the config's own,
            # which validation made sure equal etcd.client_port/peer_port.
            for key, value in membership.legacy_fields().items():
                section.setdefault(key, value)
        else:
            for key, value in membership.url_fields().items():
                section.setdefault(key, value)
        if membership.discovery:
            for key in ("initial_cluster", "initial_cluster_state", "initial_cluster_token"):
                section.pop(key, None)
        else:
            section.pop("discovery", None)
        section.update(membership.fields())
        # coreos-cloudinit writes every key of this section as an Environment="ETCD_…=…" line.
        for key, value in section.items():
            if isinstance(value, (str, int, float)):
                unit_value(f"coreos.{kind}.{key}", value)
    else:
        _merge_member_dropin(coreos, membership)
    return out


ETCD_UNITS = ("etcd-member.service", "etcd2.service", "etcd.service")


def without_etcd(doc: dict) -> dict:
    """The config with every etcd unit left stopped (its drop-ins stay): for a DHCP node's first boot."""
    out = copy.deepcopy(doc)
    for unit in (out.get("coreos") or {}).get("units") or []:
        if isinstance(unit, dict) and unit.get("name") in ETCD_UNITS:
            unit.pop("command", None)
            unit.pop("enable", None)
    return out


def _drop_hyphen_twins(section: dict) -> None:
    # A user's 'initial-cluster' would sit next to our 'initial_cluster' and confuse readers;
    # the guest ignores it anyway, and validation reports it before we get here.
    for key in [k for k in section if isinstance(k, str) and "-" in k]:
        if key.replace("-", "_") in section or key.replace("-", "_") in Membership.__dataclass_fields__:
            section.pop(key)


def dropin_env(content: str) -> dict[str, str]:
    """ETCD_* assignments in a systemd drop-in's Environment= lines."""
    env: dict[str, str] = {}
    for line in content.splitlines():
        line = line.strip()
        if not line.startswith("Environment="):
            continue
        for word in _split_env_words(line[len("Environment=") :]):
            key, sep, value = word.partition("=")
            if sep and key.startswith("ETCD_"):
                env[key] = value
    return env


def _split_env_words(text: str) -> list[str]:
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def user_member_env(doc: dict) -> dict[str, str]:
    """ETCD_* the user's own etcd-member.service unit and drop-ins set (ours excluded)."""
    coreos = doc.get("coreos") if isinstance(doc.get("coreos"), dict) else {}
    env: dict[str, str] = {}
    for unit in coreos.get("units") or []:
        if isinstance(unit, dict) and unit.get("name") == MEMBER_UNIT:
            env.update(dropin_env(str(unit.get("content") or "")))
            for d in unit.get("drop_ins") or []:
                if isinstance(d, dict) and d.get("name") != MEMBER_DROPIN:
                    env.update(dropin_env(str(d.get("content") or "")))
    return env


def member_env(membership: Membership, user_env: dict[str, str]) -> dict[str, str]:
    """Our drop-in's ETCD_* lines: URLs the user did not set, and always the membership fields."""
    env = {}
    for key, value in membership.url_fields().items():
        if "ETCD_" + key.upper() not in user_env:
            env["ETCD_" + key.upper()] = value
    for key, value in membership.fields().items():
        env["ETCD_" + key.upper()] = value
    if membership.image:
        env["ETCD_IMAGE"] = membership.image
    return env


def _merge_member_dropin(coreos: dict, membership: Membership) -> None:
    user_env = user_member_env({"coreos": coreos})
    units = coreos.setdefault("units", [])
    unit = next((u for u in units if isinstance(u, dict) and u.get("name") == MEMBER_UNIT), None)
    if unit is None:
        unit = {"name": MEMBER_UNIT, "command": "start"}
        units.append(unit)
    drop_ins = unit.setdefault("drop_ins", [])
    env = member_env(membership, user_env)
    ours = {"name": MEMBER_DROPIN, "content": "[Service]\n" + environment_lines(env)}
    unit["drop_ins"] = [d for d in drop_ins if not (isinstance(d, dict) and d.get("name") == MEMBER_DROPIN)] + [ours]
