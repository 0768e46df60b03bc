"""CoreOS Container Linux cloud-configs rewritten for Flatcar: text in, text and a report out.

Flatcar ships neither etcd2 nor fleet. Its etcd is `etcd-member.service`
(etcd 3.5 from a container image), configured by `ETCD_*` lines in a drop-in:
the same variables coreos-cloudinit generated from `coreos.etcd2`
(ETCD_<FIELD IN UPPER CASE>, CCI system/etcd2.go), so an etcd2 section maps
one to one. Everything the user wrote that Flatcar still understands (users,
files, other units, comments) is kept; each change is one report item.

`$private_ipv4` stays as written: coreos-cloudinit substitutes it in the whole
user-data text before parsing, drop-in contents included.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import LiteralScalarString

from vmcoreos.errors import ConfigError
from vmcoreos.guest import ports, staticnet, validate
from vmcoreos.guest.changes import ADDED, DROPPED, MAPPED, NOTE, REMOVED, RENAMED, Change
from vmcoreos.guest.schema import CLOUD_CONFIG, ETCD2, Field

MEMBER = "etcd-member.service"
DROPIN = "20-etcd.conf"
OLD_ETCD_UNITS = ("etcd2.service", "etcd.service")

# Keys vmcoreos writes for every node (90-vmcoreos-membership.conf wins over this drop-in).
_PER_NODE = ("name", "initial_cluster", "initial_cluster_state", "initial_cluster_token", "discovery")

# coreos.etcd2 fields etcd 3.5 (Flatcar's image) no longer takes as they are: key -> (ETCD_* lines, why).
_ETCD2_CHANGED = {
    "ca_file": ({"ETCD_TRUSTED_CA_FILE": None, "ETCD_CLIENT_CERT_AUTH": "true"},
                "etcd 3 has no --ca-file; its meaning was --trusted-ca-file with --client-cert-auth"),
    "peer_ca_file": ({"ETCD_PEER_TRUSTED_CA_FILE": None, "ETCD_PEER_CLIENT_CERT_AUTH": "true"},
                     "etcd 3 has no --peer-ca-file; its meaning was --peer-trusted-ca-file with"
                     " --peer-client-cert-auth"),
    "debug": ({"ETCD_LOG_LEVEL": "debug"}, "etcd 3.5 removed --debug; --log-level debug replaces it"),
    "log_package_levels": ({}, "etcd 3.5 removed --log-package-levels; use ETCD_LOG_LEVEL"),
}
_ETCD2_DEPRECATED = {
    k: "etcd 3.4 deprecated the v2 proxy and 3.6 removes it; run a full member or `etcd grpc-proxy`"
    for k in ("proxy", "proxy_dial_timeout", "proxy_failure_wait", "proxy_read_timeout", "proxy_refresh_interval",
              "proxy_write_timeout")
}

# coreos.etcd (etcd 0.4) fields with an etcd 3 equivalent: key -> (ETCD_* name, how the value changes).
_HOSTPORT = "url"  # 0.4 wrote host:port; etcd 3 wants a URL
_ETCD04_MAPPED = {
    "addr": ("ETCD_ADVERTISE_CLIENT_URLS", _HOSTPORT),
    "peer_addr": ("ETCD_INITIAL_ADVERTISE_PEER_URLS", _HOSTPORT),
    "bind_addr": ("ETCD_LISTEN_CLIENT_URLS", _HOSTPORT),
    "peer_bind_addr": ("ETCD_LISTEN_PEER_URLS", _HOSTPORT),
    "cert_file": ("ETCD_CERT_FILE", None),
    "key_file": ("ETCD_KEY_FILE", None),
    "ca_file": ("ETCD_TRUSTED_CA_FILE", None),
    "peer_cert_file": ("ETCD_PEER_CERT_FILE", None),
    "peer_key_file": ("ETCD_PEER_KEY_FILE", None),
    "peer_ca_file": ("ETCD_PEER_TRUSTED_CA_FILE", None),
    "cors": ("ETCD_CORS", None),
    "data_dir": ("ETCD_DATA_DIR", None),
    "snapshot_count": ("ETCD_SNAPSHOT_COUNT", None),
    "peer_heartbeat_interval": ("ETCD_HEARTBEAT_INTERVAL", None),
    "peer_election_timeout": ("ETCD_ELECTION_TIMEOUT", None),
}
_ETCD04_PEERS = "etcd 3 bootstraps from a named member list, which vmcoreos writes per node (ETCD_INITIAL_CLUSTER)"
_ETCD04_NO_EQUIVALENT = "etcd 3 has no equivalent setting"

FLEET_GONE = (
    "fleet is not shipped on Flatcar; run each fleet unit as a plain systemd unit in coreos.units"
    " (or under an orchestrator such as Kubernetes or Nomad)"
)
V2_API = (
    "etcd2 and etcd 0.4 served the v2 API; etcd 3.5 serves it only with ETCD_ENABLE_V2=true; set for v2 clients"
    " (fleet, old flannel, `etcdctl set` scripts): drop it once none remain"
)

@dataclass(frozen=True)
class Conversion:
    text: str
    changes: list[Change]


def _yaml() -> YAML:
    y = YAML()  # round trip: comments and key order survive
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    y.preserve_quotes = True
    return y


def to_flatcar(text: str, *, source: str = "the config") -> Conversion:
    """The config for Flatcar (etcd-member.service, no fleet) and what changed; ConfigError if it cannot be."""
    if text.split("\n", 1)[0].rstrip() != validate.HEADER:
        raise ConfigError(f'{source} is not a cloud-config (its first line is not "{validate.HEADER}");'
                          " only cloud-configs can be converted")
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: {getattr(exc, 'problem', None) or 'not valid YAML'}; fix the YAML"
                          " syntax and convert again") from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ConfigError(f"{source} must be a YAML mapping; see the node.yaml `vmcoreos init` writes")
    changes: list[Change] = []
    _underscore_keys(doc, CLOUD_CONFIG, (), changes)
    coreos = doc.get("coreos")
    if isinstance(coreos, CommentedMap):
        _convert_coreos(coreos, changes)
    out = _dump(doc)
    findings = validate.errors(validate.check_cloud_config(out)[0])
    if findings:
        # The errors come from the converted text; the input's own lines are what the user fixes.
        findings = [f for f in validate.errors(validate.check_cloud_config(text)[0]) if _own(f)] or findings
        raise ConfigError(f"{source} has problems conversion does not fix; fix them and convert again",
                          findings=[str(f) for f in findings] + [f"(once fixed, convert will) {c}" for c in changes])
    return Conversion(out, changes)


def _own(finding: validate.Finding) -> bool:
    """A finding convert does not fix itself (the CoreOS-era keys it converts are not among them)."""
    return "no name" in finding.message


def _dump(doc: CommentedMap) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    body = buf.getvalue()
    # The header is a comment to YAML; ruamel keeps it, but a config whose only content was removed loses it.
    body = body if body.endswith("\n") else body + "\n"  # a text file ends with one; `cat a b` needs it
    return body if body.startswith(validate.HEADER + "\n") else f"{validate.HEADER}\n{body}"


def _line(node, key) -> int:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return 0


def _item_line(seq, i: int) -> int:
    try:
        return seq.lc.item(i)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return 0


def _underscore_keys(node, schema: Field, path: tuple, changes: list[Change]) -> None:
    """Upstream coreos-cloudinit read 'advertise-client-urls' as 'advertise_client_urls'; Flatcar's ignores it."""
    if isinstance(node, CommentedMap) and schema.kind == "map":
        for pos, key in enumerate(list(node)):
            fixed = key.replace("-", "_") if isinstance(key, str) else key
            if fixed != key and fixed in schema.fields and fixed not in node:
                line = _line(node, key)
                node.insert(pos, fixed, node.pop(key))
                changes.append(Change(line, RENAMED, validate.dotted(path + (key,)),
                                      f"written '{fixed}': Flatcar's coreos-cloudinit ignores keys with '-'"))
                key = fixed
            if isinstance(key, str) and key in schema.fields:
                _underscore_keys(node[key], schema.fields[key], path + (key,), changes)
    elif isinstance(node, CommentedSeq) and schema.kind == "list":
        for i, item in enumerate(node):
            _underscore_keys(item, schema.item, path + (i,), changes)


def _convert_coreos(coreos: CommentedMap, changes: list[Change]) -> None:
    env: dict[str, str] = {}
    had_etcd = False
    if isinstance(coreos.get("etcd2"), dict):
        had_etcd = True
        line = _line(coreos, "etcd2")
        env.update(_etcd2_env(coreos["etcd2"], changes))
        del coreos["etcd2"]
        changes.append(Change(line, REMOVED, "coreos.etcd2", f"now the {MEMBER} drop-in {DROPIN} (ETCD_* lines,"
                              " as coreos-cloudinit wrote them for etcd2.service)"))
    if isinstance(coreos.get("etcd"), dict):
        had_etcd = True
        line = _line(coreos, "etcd")
        env.update(_etcd04_env(coreos["etcd"], changes))
        del coreos["etcd"]
        changes.append(Change(line, REMOVED, "coreos.etcd", f"etcd 0.4 settings now the {MEMBER} drop-in {DROPIN}"))
    if "fleet" in coreos:
        changes.append(Change(_line(coreos, "fleet"), REMOVED, "coreos.fleet", FLEET_GONE))
        del coreos["fleet"]
    units = coreos.get("units")
    legacy = isinstance(coreos.get("etcd"), dict) or _has_unit(units, "etcd.service")
    if isinstance(units, CommentedSeq):
        changes += staticnet.drop_static_units(units, _item_line)  # first: the lines are read by index
        had_etcd = _convert_units(units, changes) or had_etcd
    if had_etcd:
        env["ETCD_ENABLE_V2"] = "true"
        changes.append(Change(0, ADDED, f"{MEMBER} {DROPIN}", V2_API))
        explicit = {"ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS"} & set(env)
        changes += ports.port_notes(env) if explicit else ports.default_port_notes(legacy)
        _add_dropin(coreos, env)
    changes.sort(key=lambda c: (c.line == 0, c.line))


def _has_unit(units, name: str) -> bool:
    return isinstance(units, list) and any(isinstance(u, dict) and u.get("name") == name for u in units)


def _set_fields(section: dict, name: str):
    """(key, value, path, line) of each field that holds a value (coreos-cloudinit skipped empty ones)."""
    for key, value in section.items():
        if value is not None and value != "":
            yield key, value, f"coreos.{name}.{key}", _line(section, key)


def _etcd2_env(section: dict, changes: list[Change]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value, path, line in _set_fields(section, "etcd2"):
        if key in _PER_NODE:
            changes.append(_per_node(line, path, key))
            continue
        if key in _ETCD2_CHANGED:
            lines, why = _ETCD2_CHANGED[key]
            for var, fixed in lines.items():
                env[var] = _env_value(path, value if fixed is None else fixed)
            shown = ", ".join(lines) or "nothing"
            changes.append(Change(line, MAPPED if lines else DROPPED, path, f"{why} (written: {shown})"))
            continue
        var = "ETCD_" + key.upper()
        env[var] = _env_value(path, value)
        why = f"; {_ETCD2_DEPRECATED[key]}" if key in _ETCD2_DEPRECATED else ""
        changes.append(Change(line, MAPPED, path, f"{var}{why}"))
    return env


def _etcd04_env(section: dict, changes: list[Change]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value, path, line in _set_fields(section, "etcd"):
        if key in _PER_NODE:
            changes.append(_per_node(line, path, key))
        elif key in ("peers", "peers_file"):
            changes.append(Change(line, DROPPED, path, _ETCD04_PEERS))
        elif key in _ETCD04_MAPPED:
            var, how = _ETCD04_MAPPED[key]
            text = str(value)
            if how == _HOSTPORT and "://" not in text:
                text = "http://" + text
            env[var] = _env_value(path, text)
            if key in ("ca_file", "peer_ca_file"):
                auth = "ETCD_CLIENT_CERT_AUTH" if key == "ca_file" else "ETCD_PEER_CLIENT_CERT_AUTH"
                env[auth] = "true"
                var += f" and {auth}=true"
            changes.append(Change(line, MAPPED, path, var))
        elif key in ETCD2.fields:
            # 0.4's validator calls these "etcd2 options no longer work for etcd": 0.4 ignored them.
            changes.append(Change(line, DROPPED, path, "an etcd2 option etcd 0.4 ignored; not carried over"))
        else:
            changes.append(Change(line, DROPPED, path, _ETCD04_NO_EQUIVALENT))
    return env


def _per_node(line: int, path: str, key: str) -> Change:
    if key == "discovery":
        why = "vmcoreos sets it per node; for discovery set etcd.bootstrap: discovery and etcd.discovery in the" \
              " cluster file"
    else:
        why = "vmcoreos sets it per node from the cluster file"
    return Change(line, DROPPED, path, why)


def _env_value(path: str, value) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if any(c in text for c in '"\\\n'):
        raise ConfigError(f"{path} holds a quote, backslash or line break, which a systemd Environment= line"
                          " cannot carry as coreos-cloudinit wrote it; remove it and convert again")
    # coreos-cloudinit wrote the value raw; systemd would read a lone % as a specifier.
    return text.replace("%", "%%")


def _convert_units(units: CommentedSeq, changes: list[Change]) -> bool:
    """etcd2/etcd units become etcd-member.service, fleet.service goes; True if an etcd unit was there."""
    had_etcd = False
    member = next((u for u in units if isinstance(u, dict) and u.get("name") == MEMBER), None)
    for i in reversed(range(len(units))):
        unit = units[i]
        if not isinstance(unit, dict):
            continue
        name, path, line = unit.get("name"), f"coreos.units[{i}]", _item_line(units, i)
        if name == "fleet.service":
            del units[i]
            changes.append(Change(line, REMOVED, f"{path} fleet.service", FLEET_GONE))
        elif name in OLD_ETCD_UNITS:
            had_etcd = True
            if "content" in unit:
                del unit["content"]
                changes.append(Change(line, DROPPED, f"{path} {name} content", f"Flatcar's own {MEMBER} unit runs"
                                      " etcd; put settings in a drop-in"))
            if member is None:
                member = unit
                unit["name"] = MEMBER
                changes.append(Change(line, RENAMED, f"{path} {name}", f"now {MEMBER} (etcd 3.5 from a container"
                                      " image)"))
            else:
                for key in ("command", "enable", "mask", "runtime"):
                    if key in unit and key not in member:
                        member[key] = unit[key]
                member.setdefault("drop_ins", CommentedSeq()).extend(unit.get("drop_ins") or [])
                del units[i]
                changes.append(Change(line, REMOVED, f"{path} {name}", f"merged into the {MEMBER} entry"))
    for i, unit in enumerate(units):
        if isinstance(unit, dict):
            _rename_references(unit, f"coreos.units[{i}]", _item_line(units, i), changes)
    return had_etcd


_OLD_REF = re.compile(r"\betcd2?\.service\b")


def _rename_references(unit: dict, path: str, line: int, changes: list[Change]) -> None:
    """After=/Requires=etcd2.service in other units would wait on a unit Flatcar does not have."""
    texts = [(unit, "content")] + [(d, "content") for d in unit.get("drop_ins") or [] if isinstance(d, dict)]
    for holder, key in texts:
        value = holder.get(key)
        if isinstance(value, str) and _OLD_REF.search(value):
            fixed = _OLD_REF.sub(MEMBER, value)
            holder[key] = LiteralScalarString(fixed) if "\n" in fixed else fixed
            changes.append(Change(line, RENAMED, f"{path} {unit.get('name')}", f"references to etcd2.service/"
                                  f"etcd.service now name {MEMBER}"))
        if isinstance(value, str) and "fleet" in value and "X-Fleet" in value:
            changes.append(Change(line, NOTE, f"{path} {unit.get('name')}", "its [X-Fleet] section is fleet's;"
                                  " systemd ignores it, so the unit runs on every node that starts it"))


def _add_dropin(coreos: CommentedMap, env: dict[str, str]) -> None:
    units = coreos.get("units")
    if not isinstance(units, CommentedSeq):
        units = coreos["units"] = CommentedSeq()
    member = next((u for u in units if isinstance(u, dict) and u.get("name") == MEMBER), None)
    if member is None:
        member = CommentedMap([("name", MEMBER), ("command", "start")])
        units.insert(0, member)
    lines = ["[Service]"] + [f'Environment="{k}={v}"' for k, v in env.items()]
    drop_ins = member.get("drop_ins")
    if not isinstance(drop_ins, CommentedSeq):
        drop_ins = member["drop_ins"] = CommentedSeq()
    drop_ins.insert(0, CommentedMap([("name", DROPIN), ("content", LiteralScalarString("\n".join(lines) + "\n"))]))


def suggested_output(path: str) -> str:
    """node.yaml -> node-flatcar.yaml, next to the input."""
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        return path + "-flatcar"
    return f"{stem}-flatcar.{ext}"


def command(path: str) -> str:
    """The exact command that converts `path` (shown in refusals)."""
    import shlex

    return f"vmcoreos convert {shlex.quote(path)} --to flatcar -o {shlex.quote(suggested_output(path))}"
