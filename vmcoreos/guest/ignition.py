"""Ignition configs: spec versions per distro, checks with line numbers, the per-node merge.

Ignition has no `$private_ipv4` and ignores guestinfo.hostname and the
guestinfo.interface keys, so everything that makes a node itself goes into
the config: /etc/hostname as a file, the network as a file the booted system
reads (systemd-networkd on Flatcar, NetworkManager on Fedora CoreOS, a
networkd unit on CoreOS CL), and etcd membership as an etcd-member.service
drop-in. The initramfs gets the static address from Afterburn's network kargs
(guestinfo.afterburn.initrd.network-kargs), see guestinfo.py.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse

import yaml

from vmcoreos.guest import leased, podman
from vmcoreos.guest.cloudconfig import environment_lines, unit_value
from vmcoreos.guest.validate import ERROR, WARNING, Finding

MEMBER_UNIT = "etcd-member.service"
MEMBER_DROPIN = "90-vmcoreos-membership.conf"
HOSTNAME_PATH = "/etc/hostname"
NETWORKD_FILE = "/etc/systemd/network/00-vmcoreos.network"
NM_FILE = "/etc/NetworkManager/system-connections/vmcoreos.nmconnection"
NETWORKD_UNIT = "00-vmcoreos.network"
# Paths vmcoreos writes per node; render shows these, and masks every other file's contents.
OWN_PATHS = (HOSTNAME_PATH, NETWORKD_FILE, NM_FILE, podman.MEMBER_ENV, *leased.SCRIPT_PATHS.values())

# Accepted spec versions (coreos-facts §4.4).
_V3 = tuple(f"3.{m}.0" for m in range(7)) + ("3.7.0-experimental",)
SPECS = {
    # Flatcar: Ignition 2.26 reads 3.0.0–3.6.0 and 3.7.0-experimental; 2.x is translated (patch 0004).
    "flatcar": ("2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0") + _V3,
    # Fedora CoreOS: upstream Ignition, spec 3 only.
    "fedora-coreos": _V3,
    # CoreOS Container Linux: Ignition v0.x, spec 2.3.0 at most.
    "coreos": ("2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0-experimental"),
}
FLATCAR_V3_FROM = 3185  # first Flatcar major with Ignition spec 3
FLATCAR_KARGS_FROM = 3248  # first Flatcar major that reads guestinfo.afterburn.initrd.network-kargs


def is_ignition(text: str) -> bool:
    """coreos-cloudinit's IsIgnitionConfig: JSON with ignitionVersion (int) or ignition.version (string)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    ign = doc.get("ignition")
    return isinstance(doc.get("ignitionVersion"), int) or (isinstance(ign, dict) and isinstance(ign.get("version"), str))


def looks_like_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def spec_major(doc: dict) -> int:
    version = (doc.get("ignition") or {}).get("version") if isinstance(doc.get("ignition"), dict) else None
    if not isinstance(version, str):
        return 1
    return int(version.split(".", 1)[0]) if version[:1].isdigit() else 0


# -- checking -------------------------------------------------------------------

_KEYS3 = {
    (): {"ignition", "kernelArguments", "passwd", "storage", "systemd"},
    ("ignition",): {"version", "config", "timeouts", "security", "proxy"},
    ("passwd",): {"users", "groups"},
    ("passwd", "users", "*"): {
        "name", "passwordHash", "sshAuthorizedKeys", "uid", "gecos", "homeDir", "noCreateHome", "primaryGroup",
        "groups", "noUserGroup", "noLogInit", "shell", "system", "shouldExist",
    },
    ("storage",): {"disks", "raid", "filesystems", "files", "directories", "links", "luks"},
    ("storage", "files", "*"): {"path", "overwrite", "user", "group", "mode", "contents", "append"},
    ("storage", "files", "*", "contents"): {"source", "compression", "httpHeaders", "verification"},
    ("systemd",): {"units"},
    ("systemd", "units", "*"): {"name", "enabled", "mask", "contents", "dropins"},
    ("systemd", "units", "*", "dropins", "*"): {"name", "contents"},
}
_KEYS2 = {
    **_KEYS3,
    (): {"ignition", "networkd", "passwd", "storage", "systemd"},
    ("ignition",): {"version", "config", "timeouts", "security"},
    ("networkd",): {"units"},
    ("networkd", "units", "*"): {"name", "contents", "dropins"},
    ("passwd", "users", "*"): _KEYS3[("passwd", "users", "*")] - {"shouldExist"} | {"create"},
    ("storage",): {"disks", "raid", "filesystems", "files", "directories", "links"},
    ("storage", "files", "*"): {"filesystem", "path", "overwrite", "user", "group", "mode", "contents", "append"},
    ("systemd", "units", "*"): {"name", "enable", "enabled", "mask", "contents", "dropins"},
}
_BUTANE = {"inline", "local"}


def _lines(text: str) -> dict:
    """path -> line of its key, read from the JSON text (YAML is a superset of JSON)."""
    try:
        root = yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                child = path + (k.value,)
                out.setdefault(child, k.start_mark.line + 1)
                walk(v, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out.setdefault(path + (i,), item.start_mark.line + 1)
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
    return out


def _dotted(path) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def check(text: str, distro: str, version: str | None) -> tuple[list[Finding], dict | None]:
    """Spec version against the distro, JSON syntax, unknown keys, Butane-isms; never quotes a value."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return [Finding(exc.lineno, ERROR, f"not valid JSON: {exc.msg}")], None
    if not isinstance(doc, dict):
        return [Finding(1, ERROR, "an Ignition config must be a JSON object")], None
    lines = _lines(text)
    out: list[Finding] = []
    spec = (doc.get("ignition") or {}).get("version") if isinstance(doc.get("ignition"), dict) else None
    accepted = SPECS[distro]
    if "ignitionVersion" in doc and spec is None:
        out.append(Finding(lines.get(("ignitionVersion",), 1), ERROR,
                           "Ignition spec 1 (ignitionVersion) cannot be merged per node; use spec"
                           f" {_best(distro)}"))
        return out, None
    if not isinstance(spec, str):
        out.append(Finding(lines.get(("ignition",), 1), ERROR, "ignition.version must be a string such as"
                           f" \"{_best(distro)}\""))
        return out, None
    if spec not in accepted:
        out.append(Finding(lines.get(("ignition", "version"), 1), ERROR,
                           f"Ignition spec {spec} cannot be read by {distro}; it reads {_ranges(accepted)}"))
        return out, None
    major = spec_major(doc)
    pinned = _pinned_major(version)
    if distro == "flatcar" and major == 3 and pinned is not None and pinned < FLATCAR_V3_FROM:
        out.append(Finding(lines.get(("ignition", "version"), 1), ERROR,
                           f"Flatcar {version} reads Ignition spec 2.x only (spec 3 from {FLATCAR_V3_FROM}.0.0 on)"))
    keys = _KEYS3 if major == 3 else _KEYS2
    _check_keys(doc, (), keys, lines, out)
    for n, line in enumerate(text.splitlines(), start=1):
        if re.search(r"\$(private|public)_ipv[46]", line):
            out.append(Finding(n, ERROR, "Ignition does not substitute $private_ipv4/$public_ipv4 (only"
                               " coreos-cloudinit does); leave the etcd URLs out and vmcoreos writes each node's"
                               " address"))
    return out, doc


def _check_keys(node, path, keys, lines, out) -> None:
    pattern = tuple("*" if isinstance(p, int) else p for p in path)
    if isinstance(node, dict):
        known = keys.get(pattern)
        for key, value in node.items():
            child = path + (key,)
            if known is not None and key not in known:
                line = lines.get(child, 0)
                if key in _BUTANE and pattern[-1:] == ("contents",):
                    out.append(Finding(line, ERROR, f"{_dotted(child)} is Butane syntax, not Ignition;"
                                       " transpile the file with `butane` first"))
                else:
                    out.append(Finding(line, ERROR, f"unrecognized key '{key}' at {_dotted(path)}; Ignition"
                                       " ignores it (\"Unused key\")"))
                continue
            _check_keys(value, child, keys, lines, out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_keys(item, path + (i,), keys, lines, out)


def _pinned_major(version: str | None) -> int | None:
    m = re.fullmatch(r"([0-9]+)\.[0-9]+\.[0-9]+", version or "")
    return int(m.group(1)) if m else None


def _best(distro: str) -> str:
    return {"flatcar": "3.3.0", "fedora-coreos": "3.4.0", "coreos": "2.3.0"}[distro]


def _ranges(accepted: tuple[str, ...]) -> str:
    stable = [v for v in accepted if "-" not in v]
    extra = [v for v in accepted if "-" in v]
    by_major: dict[str, list[str]] = {}
    for v in stable:
        by_major.setdefault(v.split(".")[0], []).append(v)
    parts = [f"{vs[0]} to {vs[-1]}" if len(vs) > 1 else vs[0] for vs in by_major.values()]
    return ", ".join(parts + extra)


def checks_for_settings(doc: dict, text: str, *, distro: str, version: str | None, static: bool) -> list[Finding]:
    """What depends on the cluster file: static networking support, etcd unit availability."""
    lines = _lines(text)
    out = []
    pinned = _pinned_major(version)
    if static and distro == "flatcar" and pinned is not None and pinned < FLATCAR_KARGS_FROM:
        out.append(Finding(0, ERROR, f"Flatcar {version} does not read guestinfo.afterburn.initrd.network-kargs"
                           f" (from {FLATCAR_KARGS_FROM}.0.0 on), so a static address cannot reach Ignition; use a"
                           " newer release or a cloud-config"))
    units = ((doc.get("systemd") or {}).get("units") or []) if isinstance(doc.get("systemd"), dict) else []
    member = next((u for u in units if isinstance(u, dict) and u.get("name") == MEMBER_UNIT), None)
    contents = str(member.get("contents") or "") if member else ""
    if distro == "fedora-coreos" and "podman" in contents and not static and not podman.passes_address(contents):
        line = lines.get(("systemd", "units", units.index(member), "contents"), 0)
        out.append(Finding(line, ERROR, f"{MEMBER_UNIT} runs podman but under DHCP hands the container no"
                           f" address: add --env-file {leased.ADDRESS_ENV} to its podman run (the node writes its"
                           " advertise URLs there when etcd starts), or leave the unit out and vmcoreos supplies one"))
    if distro == "fedora-coreos" and "podman" in contents and not podman.passes_membership(contents):
        line = lines.get(("systemd", "units", units.index(member), "contents"), 0)
        out.append(Finding(line, ERROR, f"{MEMBER_UNIT} runs podman but hands none of vmcoreos's membership to the"
                           " container (podman passes a variable in only with --env, --env-file or --env-host, never"
                           f" the unit's Environment=); add --env-file {podman.MEMBER_ENV} to its podman run, or"
                           " leave the unit out and vmcoreos supplies one"))
    for i, unit in enumerate(units):
        if isinstance(unit, dict) and unit.get("name") == MEMBER_UNIT and unit.get("mask"):
            out.append(Finding(lines.get(("systemd", "units", i, "mask"), 0), ERROR,
                               f"{MEMBER_UNIT} is masked, so etcd never starts"))
    files = ((doc.get("storage") or {}).get("files") or []) if isinstance(doc.get("storage"), dict) else []
    for i, f in enumerate(files):
        if isinstance(f, dict) and f.get("path") == HOSTNAME_PATH:
            out.append(Finding(lines.get(("storage", "files", i), 0), WARNING,
                               f"{HOSTNAME_PATH} is written per node by vmcoreos; this entry is replaced"))
    return out


# -- the per-node merge -------------------------------------------------------------


def _data_url(text: str) -> str:
    return "data:," + urllib.parse.quote(text, safe="")


def _file(major: int, path: str, text: str, mode: int) -> dict:
    entry = {"path": path, "mode": mode, "contents": {"source": _data_url(text)}}
    if major == 3:
        entry["overwrite"] = True
    else:
        entry = {"filesystem": "root", **entry}
    return entry


def networkd_unit(address, gateway, dns, mac: str) -> str:
    lines = ["[Match]", f"MACAddress={unit_value('MACAddress', mac)}", "", "[Network]",
             f"Address={unit_value('Address', address.with_prefixlen)}"]
    if gateway is not None:
        lines.append(f"Gateway={unit_value('Gateway', gateway)}")
    lines += [f"DNS={unit_value('DNS', d)}" for d in dns]
    return "\n".join(lines) + "\n"


def nm_keyfile(address, gateway, dns, mac: str) -> str:
    addr = address.with_prefixlen + (f",{gateway}" if gateway is not None else "")
    lines = [
        "[connection]", "id=vmcoreos", "type=ethernet", "", "[ethernet]", f"mac-address={unit_value('mac-address', mac)}",
        "", "[ipv4]", "method=manual", f"address1={unit_value('address1', addr)}",
    ]
    if dns:
        lines.append("dns=" + "".join(f"{unit_value('dns', d)};" for d in dns))
    return "\n".join(lines) + "\n"


def merge_node(
    doc: dict,
    *,
    distro: str,
    hostname: str,
    env: dict[str, str] | None,
    address=None,
    gateway=None,
    dns=(),
    mac: str = "",
    image: str | None = None,
    lease_step: str | None = None,
) -> dict:
    """A copy of the user's Ignition config with this node's hostname, network and etcd drop-in."""
    out = copy.deepcopy(doc)
    major = spec_major(out)
    storage = out.setdefault("storage", {})
    files = [f for f in storage.get("files") or [] if not (isinstance(f, dict) and f.get("path") in OWN_PATHS)]
    files.append(_file(major, HOSTNAME_PATH, hostname + "\n", 0o644))
    if address is not None:
        if distro == "fedora-coreos":
            files.append(_file(major, NM_FILE, nm_keyfile(address, gateway, dns, mac), 0o600))
        elif major == 3:
            files.append(_file(major, NETWORKD_FILE, networkd_unit(address, gateway, dns, mac), 0o644))
        else:
            networkd = out.setdefault("networkd", {})
            units = [u for u in networkd.get("units") or [] if not (isinstance(u, dict) and u.get("name") == NETWORKD_UNIT)]
            networkd["units"] = units + [{"name": NETWORKD_UNIT, "contents": networkd_unit(address, gateway, dns, mac)}]
    if lease_step is not None:
        # DHCP: the node writes its advertise URLs when etcd starts (guest/leased.py); env comes without them.
        files.append(_file(major, leased.SCRIPT_PATHS[distro], leased.SCRIPT, 0o755))
    if env is not None and distro == "fedora-coreos":
        files.append(_file(major, podman.MEMBER_ENV, podman.env_file(_container_env(out, env)), 0o644))
    storage["files"] = files
    if env is not None:
        _member_unit(out, distro=distro, env=env, image=image, lease_step=lease_step)
    return out


def _container_env(doc: dict, env: dict[str, str]) -> dict[str, str]:
    """What etcd's container gets from the env file: the user's ETCD_* (which a podman unit would not pass) and ours."""
    merged = {**user_env(doc), **env}
    merged.pop("ETCD_IMAGE", None)  # the unit's image, not etcd's setting
    return merged


def _member_unit(out: dict, *, distro: str, env: dict[str, str], image: str | None, lease_step: str | None) -> None:
    """Enable etcd-member.service with our drop-in; on Fedora CoreOS supply the unit unless the user wrote one."""
    systemd = out.setdefault("systemd", {})
    units = systemd.setdefault("units", [])
    unit = next((u for u in units if isinstance(u, dict) and u.get("name") == MEMBER_UNIT), None)
    if unit is None:
        unit = {"name": MEMBER_UNIT}
        units.append(unit)
    enable_key = "enable" if (out.get("ignition") or {}).get("version") == "2.0.0" else "enabled"
    unit.setdefault(enable_key, True)
    dropins = [d for d in unit.get("dropins") or [] if not (isinstance(d, dict) and d.get("name") == MEMBER_DROPIN)]
    step = f"EnvironmentFile=-{leased.ADDRESS_ENV}\nExecStartPre={lease_step}\n" if lease_step else ""
    if distro == "fedora-coreos" and not unit.get("contents"):
        # Ours passes the env files to the container; a drop-in's Environment= would reach only podman.
        leased_files = (leased.ADDRESS_ENV,) if lease_step else ()
        unit["contents"] = podman.member_unit(image, extra_env_files=leased_files,
                                              pre=(lease_step,) if lease_step else ())
    else:
        dropins.append({"name": MEMBER_DROPIN, "contents": "[Service]\n" + step + environment_lines(env)})
    if dropins:
        unit["dropins"] = dropins
    else:
        unit.pop("dropins", None)


def user_env(doc: dict) -> dict[str, str]:
    """ETCD_* the user's own etcd-member unit and drop-ins set (ours excluded)."""
    from vmcoreos.guest.cloudconfig import dropin_env

    units = ((doc.get("systemd") or {}).get("units") or []) if isinstance(doc.get("systemd"), dict) else []
    env: dict[str, str] = {}
    for unit in units:
        if isinstance(unit, dict) and unit.get("name") == MEMBER_UNIT:
            env.update(dropin_env(str(unit.get("contents") or "")))
            for d in unit.get("dropins") or []:
                if isinstance(d, dict) and d.get("name") != MEMBER_DROPIN:
                    env.update(dropin_env(str(d.get("contents") or "")))
    return env


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"
