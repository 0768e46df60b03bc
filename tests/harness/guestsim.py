"""Guest simulator: plays booting Flatcar / CoreOS Container Linux VMs against vcsim.

vcsim (govmomi's vCenter simulator) models inventory and power state but runs
no guests, so an end-to-end test of vmcoreos could never see a node boot, read
its guestinfo or form an etcd cluster.  This module watches every VM in vcsim
and, when one with a CoreOS config powers on, does what the guest would do:

* read guestinfo the way Flatcar's coreos-cloudinit (and Ignition) read it,
  decode the user-data, derive the network metadata and substitutions;
* apply the parts that matter to a deployer (hostname, IP address, etcd);
* start a real etcd member for the node on its own loopback address;
* report VMware-tools state, IP address and hostname back to vcsim; with
  ``--strict-tools``, as real VMware Tools do (see ToolsReport).

It deliberately imports nothing from ``vmcoreos``: its decoding is written
from the upstream sources (flatcar/coreos-cloudinit) so that it catches the
tool's mistakes instead of sharing them.  Every failure the real guest would
hit is recorded in the node's JSON file under ``errors``.

Run from the repository root::

    python -m tests.harness.guestsim --url https://127.0.0.1:PORT/sdk \\
        --ca-file cert.pem --username user --password-env VCSIM_PASSWORD \\
        --state-dir DIR --dhcp-range 127.0.200.10-127.0.200.250

Layout of ``DIR``::

    ready                        written once the watcher sees every VM
    nodes/<vm name>.json         one record per booted node (see node_record)
    disks/<moref>-<uuid>/        the node's "disk": etcd data, files, state
    logs/<vm name>-<moref>.etcd.log
    leases.json                  DHCP leases, stable per VM while it exists

The pure model (decoding, metadata, cloud-config, Ignition, etcd derivation)
comes first and is unit-tested on its own; the vSphere watcher and the etcd
process supervisor follow.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import collections.abc
import ctypes
import fnmatch
import ipaddress
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

import yaml

log = logging.getLogger("guestsim")

FCOS = "fedora-coreos"  # the guest a VM of guestId fedora*Guest plays (the FCOS OVA's vmw:osType)

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class GuestError(ValueError):
    """Something the real guest would fail on; the message is what it logs."""


class DecodeError(GuestError):
    pass


class OvfEnvError(GuestError):
    pass


class MetadataError(GuestError):
    pass


class CloudConfigError(GuestError):
    pass


class IgnitionError(GuestError):
    pass


def _go_quote(value: str) -> str:
    """Go's %q, close enough for error messages."""
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------
# Content decoding (FCCI config/decode.go DecodeContent; Ignition is identical)
# ---------------------------------------------------------------------------

ENCODINGS = {
    "": "raw",
    "b64": "base64",
    "base64": "base64",
    "gz": "gzip",
    "gzip": "gzip",
    "gz+base64": "gzip+base64",
    "gzip+base64": "gzip+base64",
    "gz+b64": "gzip+base64",
    "gzip+b64": "gzip+base64",
}

_GZIP_MAGIC = b"\x1f\x8b"


def decode_content(content: str, encoding: str) -> bytes:
    """Decode a guestinfo value the way coreos-cloudinit does."""
    kind = ENCODINGS.get(encoding)
    if kind is None:
        raise DecodeError(f"Unsupported encoding {_go_quote(encoding)}")
    raw = content.encode("utf-8", "surrogateescape")
    if kind == "raw":
        return raw
    if kind == "base64":
        return _go_b64decode(raw)
    if kind == "gzip":
        return gunzip(raw, lenient=True)
    return gunzip(_go_b64decode(raw), lenient=True)


def _go_b64decode(raw: bytes) -> bytes:
    # Go's StdEncoding skips CR and LF but is otherwise strict: padding is
    # required and any other character is an error.
    cleaned = raw.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"Unable to decode base64: {_go_quote(str(exc))}") from None


def gunzip(data: bytes, lenient: bool) -> bytes:
    """Go's gzip.Reader, including multistream input.

    A bad header is always an error.  DecodeContent ignores the error of its
    body read (``buf.ReadFrom``), so with ``lenient`` a corrupt or truncated
    body yields whatever was decompressed before the damage; the top-level
    decompressIfGzip uses ReadAll and fails instead.
    """
    if len(data) < 10 or data[:2] != _GZIP_MAGIC or data[2] != 8:
        raise DecodeError('Unable to decode gzip: "gzip: invalid header"')
    out = bytearray()
    try:
        _gunzip_members(data, out)
    except DecodeError:
        if not lenient:
            raise
    return bytes(out)


def _gunzip_members(data: bytes, out: bytearray) -> None:
    # Fed in small chunks so that the output produced before a corrupt byte
    # survives the zlib error, as it does in Go.
    while data:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        for start in range(0, len(data), 256):
            try:
                out += inflater.decompress(data[start:start + 256])
            except zlib.error as exc:
                raise DecodeError(f"Unable to decode gzip: {_go_quote(str(exc))}") from None
            if inflater.eof:
                break
        if not inflater.eof:
            raise DecodeError('Unable to decode gzip: "unexpected EOF"')
        data = inflater.unused_data
        if data and data[:2] != _GZIP_MAGIC:
            raise DecodeError('Unable to decode gzip: "gzip: invalid header"')


def decompress_if_gzip(data: bytes) -> bytes:
    """coreos-cloudinit's main() gunzips any user-data starting with the gzip magic."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gunzip(data, lenient=False)
    except DecodeError as exc:
        raise DecodeError(f"Failed decompressing user-data from datasource: {exc}") from None


# ---------------------------------------------------------------------------
# guestinfo as the guest sees it
# ---------------------------------------------------------------------------

Reader = Callable[[str], str]


def extra_config_dict(pairs: Iterable[tuple[str, object]]) -> dict[str, str]:
    """extraConfig as a dict.  vcsim appends a re-written key instead of
    replacing it, so the last value wins; an empty value reads as unset."""
    values: dict[str, str] = {}
    for key, value in pairs:
        values[key] = "" if value is None else str(value)
    return values


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_ovf_environment(document: str) -> dict[str, str]:
    """PropertySection/Property key=value pairs, namespace-agnostic like
    vmw-ovflib's encoding/xml mapping.  A malformed document is fatal there
    (log.Fatalln), so it is an error here."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise OvfEnvError(f"cannot parse guestinfo.ovfenv: {exc}") from None
    props: dict[str, str] = {}
    for section in root:
        if _local(section.tag) != "PropertySection":
            continue
        for prop in section:
            if _local(prop.tag) != "Property":
                continue
            attrs = {_local(name): value for name, value in prop.attrib.items()}
            props[attrs.get("key", "")] = attrs.get("value", "")
    return props


class Guestinfo:
    """The guestinfo variables of one VM (extraConfig, ``guestinfo.`` prefixed)."""

    def __init__(self, extra: Mapping[str, str]):
        self.extra = dict(extra)
        self.ovfenv = self.extra.get("guestinfo.ovfenv", "")

    def direct(self, key: str) -> str:
        return self.extra.get("guestinfo." + key, "")

    def cloudinit_reader(self) -> Reader:
        """coreos-cloudinit reads ONLY the OVF environment when one exists
        (FCCI NewDatasource), ignoring plain guestinfo variables."""
        if not self.ovfenv:
            return self.direct
        props = parse_ovf_environment(self.ovfenv)
        return lambda key: props.get("guestinfo." + key, "")

    def ignition_reader(self) -> Reader:
        """Ignition prefers direct guestinfo and falls back to the OVF environment."""
        props: dict[str, str] = {}
        if self.ovfenv:
            try:
                props = parse_ovf_environment(self.ovfenv)
            except OvfEnvError:
                props = {}
        return lambda key: self.direct(key) or props.get("guestinfo." + key, "")


@dataclass
class RawUserData:
    key: str | None = None  # the guestinfo key the data came from
    encoding: str = ""
    data: bytes | None = b""  # None when reading or decoding failed
    error: str | None = None


def fetch_user_data(read: Reader, keys: tuple[str, ...] = ("ignition.config.data", "coreos.config.data")) -> RawUserData:
    """FCCI FetchUserdata: ignition.config.data first, then coreos.config.data;
    the encoding key is the one that belongs to the data key. Upstream Ignition
    (Fedora CoreOS) reads ignition.config.data only (coreos-facts §4.1)."""
    for key in keys:
        data = read(key)
        if not data:
            continue
        encoding = read(key + ".encoding")
        try:
            decoded = decode_content(data, encoding)
        except DecodeError as exc:
            return RawUserData("guestinfo." + key, encoding, None, str(exc))
        return RawUserData("guestinfo." + key, encoding, decoded)
    url = read("ignition.config.url") or read("coreos.config.url")
    if url:
        return RawUserData(None, "", None, f"config url {url} is not fetched by guestsim")
    return RawUserData()


# ---------------------------------------------------------------------------
# Network metadata (FCCI datasource/vmware/vmware.go, network/vmware.go)
# ---------------------------------------------------------------------------


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Go's net.ParseIP: no zones, no prefixes."""
    if "%" in text or "/" in text:
        raise ValueError(text)
    return ipaddress.ip_address(text)


def parse_cidr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Go's net.ParseCIDR, returning the address part.  Unlike Python's
    ip_interface it insists on an explicit numeric prefix length."""
    addr, sep, prefix = text.rpartition("/")
    if not sep or not prefix.isdigit() or not prefix.isascii():
        raise ValueError(text)
    ip = parse_ip(addr)
    if int(prefix) > ip.max_prefixlen:
        raise ValueError(text)
    return ip


_MAC_COLON = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2})*$")
_MAC_DOT = re.compile(r"^[0-9A-Fa-f]{4}(\.[0-9A-Fa-f]{4})+$")


def parse_mac(text: str) -> str:
    """Go's net.ParseMAC (6, 8 or 20 octets, ':' '-' or '.' separated)."""
    if _MAC_COLON.match(text):
        octets = re.split(r"[:-]", text)
    elif _MAC_DOT.match(text):
        octets = [g[i:i + 2] for g in text.split(".") for i in (0, 2)]
    else:
        raise ValueError(text)
    if len(octets) not in (6, 8, 20):
        raise ValueError(text)
    return ":".join(o.lower() for o in octets)


@dataclass
class Metadata:
    hostname: str = ""
    public_ipv4: str = ""
    private_ipv4: str = ""
    public_ipv6: str = ""
    private_ipv6: str = ""
    netconf: dict[str, str] = field(default_factory=dict)


def _role_slot(role: str, ip) -> str:
    v4 = ip.version == 4 or getattr(ip, "ipv4_mapped", None) is not None
    return f"{role}_ipv{4 if v4 else 6}"


def _ip_text(ip) -> str:
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def fetch_metadata(read: Reader) -> Metadata:
    """FetchMetadata: hostname, the raw network keys and the role addresses.
    Each index loop stops at the first missing index."""
    md = Metadata(hostname=read("hostname"))

    def save(key: str) -> str:
        value = read(key)
        if value:
            md.netconf[key] = value
        return value

    for prefix in ("dns.server", "dns.domain"):
        for i in itertools.count():
            if not save(f"{prefix}.{i}"):
                break
    found, i = True, 0
    while found:
        found = _fetch_interface(read, save, md, i)
        i += 1
    return md


def _fetch_interface(read: Reader, save: Callable[[str], str], md: Metadata, i: int) -> bool:
    found = False
    for key in ("name", "mac", "dhcp"):
        found = bool(save(f"interface.{i}.{key}")) or found
    role = read(f"interface.{i}.role")
    for a in itertools.count():
        address = save(f"interface.{i}.ip.{a}.address")
        if not address:
            break
        found = True
        try:
            ip = parse_cidr(address)
        except ValueError:
            raise MetadataError(f"invalid CIDR address: {address}") from None
        if role not in ("public", "private", ""):
            raise MetadataError(f"unrecognized role: {_go_quote(role)}")
        if role:
            setattr(md, _role_slot(role, ip), _ip_text(ip))
    for r in itertools.count():
        gateway = save(f"interface.{i}.route.{r}.gateway")
        destination = save(f"interface.{i}.route.{r}.destination")
        if not gateway and not destination:
            break
        found = True
    return found


@dataclass
class Interface:
    """One guestinfo.interface.<n> that produced a networkd unit."""

    index: int
    name: str = ""
    mac: str = ""
    dhcp: bool = False
    addresses: list[str] = field(default_factory=list)
    routes: list[dict[str, str]] = field(default_factory=list)

    @property
    def static(self) -> bool:
        return bool(self.addresses or self.routes)

    @property
    def filename(self) -> str:
        # network/interface.go Filename(): "%02x-%s" with name, else MAC.
        return f"00-{self.name or self.mac}.network"

    def matches(self, nic: "Nic") -> bool:
        """networkd [Match]: Name= is a list of globs, MACAddress= exact."""
        if self.name and not any(fnmatch.fnmatchcase(nic.name, g) for g in self.name.split()):
            return False
        return not self.mac or self.mac == nic.mac.lower()

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "mac": self.mac, "dhcp": self.dhcp,
                "addresses": self.addresses, "routes": self.routes, "unit": self.filename}


@dataclass
class Netconf:
    interfaces: list[Interface] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


def process_netconf(config: Mapping[str, str]) -> Netconf:
    """ProcessVMwareNetconf: validates the keys and builds the interfaces.
    Any error here makes coreos-cloudinit exit 1 before reading user-data."""
    out = Netconf()
    for i in itertools.count():
        server = config.get(f"dns.server.{i}")
        if server is None:
            break
        try:
            out.nameservers.append(str(parse_ip(server)))
        except ValueError:
            raise MetadataError(f"invalid nameserver: {_go_quote(server)}") from None
    for i in itertools.count():
        if f"dns.domain.{i}" not in config:
            break
        out.domains.append(config[f"dns.domain.{i}"])
    for i in itertools.count():
        iface = _netconf_interface(config, i)
        if not iface.static and not iface.dhcp:
            break
        out.interfaces.append(iface)
    return out


def _netconf_interface(config: Mapping[str, str], i: int) -> Interface:
    prefix = f"interface.{i}."
    iface = Interface(index=i, name=config.get(prefix + "name", ""))
    dhcp = config.get(prefix + "dhcp")
    if dhcp not in (None, "yes", "no"):
        raise MetadataError(f"invalid DHCP option: {_go_quote(dhcp)}")
    iface.dhcp = dhcp == "yes"
    for a in itertools.count():
        address = config.get(f"{prefix}ip.{a}.address")
        if address is None:
            break
        iface.addresses.append(address)  # already validated by fetch_metadata
    iface.routes = _netconf_routes(config, prefix)
    if prefix + "mac" in config:
        try:
            iface.mac = parse_mac(config[prefix + "mac"])
        except ValueError:
            raise MetadataError(f"error while parsing MAC address: address {config[prefix + 'mac']}: "
                                "invalid MAC address") from None
    return iface


def _netconf_routes(config: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    routes = []
    for r in itertools.count():
        gateway = config.get(f"{prefix}route.{r}.gateway")
        destination = config.get(f"{prefix}route.{r}.destination")
        if gateway is not None and destination is None:
            raise MetadataError("missing destination key")
        if gateway is None and destination is not None:
            raise MetadataError("missing gateway key")
        if gateway is None:
            return routes
        try:
            parse_ip(gateway)
        except ValueError:
            raise MetadataError(f"invalid gateway: {_go_quote(gateway)}") from None
        try:
            parse_cidr(destination)
        except ValueError:
            raise MetadataError(f"invalid CIDR address: {destination}") from None
        routes.append({"destination": destination, "gateway": gateway})
    return routes


@dataclass
class Nic:
    """The VM's first network card as the guest names it.  Flatcar uses
    predictable interface names; the first VMware NIC is ens192."""

    name: str = "ens192"
    mac: str = ""


def select_interface(interfaces: list[Interface], nic: Nic) -> Interface | None:
    """The unit networkd applies to the NIC: the first matching file in name
    order; two interfaces with the same file name overwrite each other."""
    by_file = {iface.filename: iface for iface in interfaces}
    for filename in sorted(by_file):
        if by_file[filename].matches(nic):
            return by_file[filename]
    return None


def static_ipv4(iface: Interface | None) -> str | None:
    for address in iface.addresses if iface else []:
        ip = parse_cidr(address)
        if ip.version == 4:
            return str(ip)
    return None


# ---------------------------------------------------------------------------
# $private_ipv4 / $public_ipv4 substitution (FCCI initialize/env.go)
# ---------------------------------------------------------------------------


def substitution_map(md: Metadata) -> dict[str, str]:
    # Flatcar's oem-cloudinit.service only loads /var/run/ignition.env, so the
    # COREOS_*_IPV4 environment fallback is empty: no role, no value.
    return {"$public_ipv4": md.public_ipv4, "$private_ipv4": md.private_ipv4,
            "$public_ipv6": md.public_ipv6, "$private_ipv6": md.private_ipv6}


def apply_substitutions(text: str, subs: Mapping[str, str]) -> str:
    """Environment.Apply, regex for regex.  Its ``([^\\\\]|^)`` consumes the
    character before ``$``, so back-to-back occurrences only get the first
    one replaced, exactly like the Go code."""
    for key, value in subs.items():
        pattern = re.escape(key)
        text = re.sub(r"([^\\]|^)" + pattern, lambda m: m.group(1) + value, text)
        text = re.sub(r"\\" + pattern, lambda m: key, text)
    return text


# ---------------------------------------------------------------------------
# User-data type detection (FCCI initialize/user_data.go, config/*.go)
# ---------------------------------------------------------------------------


def _json_field(obj: dict, name: str):
    """encoding/json matches field names exactly first, then case-insensitively."""
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    return None


def _strict_json(text: str):
    def reject(constant):
        raise ValueError(constant)
    return json.loads(text, parse_constant=reject)


def is_ignition_config(text: str) -> bool:
    """IsIgnitionConfig: JSON with ignitionVersion (int) or ignition.version
    (string); any type mismatch makes json.Unmarshal fail, hence False."""
    try:
        cfg = _strict_json(text)
    except ValueError:
        return False
    if not isinstance(cfg, dict):
        return False
    old = _json_field(cfg, "ignitionVersion")
    ign = _json_field(cfg, "ignition")
    if old is not None and (isinstance(old, bool) or not isinstance(old, int)):
        return False
    if ign is not None and not isinstance(ign, dict):
        return False
    version = _json_field(ign, "version") if ign else None
    if version is not None and not isinstance(version, str):
        return False
    return old is not None or version is not None


_MIME_HEADER = re.compile(r"^[!-9;-~]+:")


def is_multipart_mime(text: str) -> bool:
    """IsMultipartMime: a MIME header block ending in a blank line whose
    Content-Type mentions multipart/mixed."""
    content_type = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            return "multipart/mixed" in content_type
        if line[0] in " \t":
            continue
        if not _MIME_HEADER.match(line):
            return False
        name, _, value = line.partition(":")
        if name.lower() == "content-type":
            content_type = value.strip()
    return False


def detect_kind(text: str) -> str:
    if not text:
        return "none"
    header = text.split("\n", 1)[0]
    if header.startswith("#!"):
        return "script"
    if header.rstrip() == "#cloud-config":
        return "cloud-config"
    if is_ignition_config(text):
        return "ignition"
    if is_multipart_mime(text):
        return "multipart"
    return "unknown"


# ---------------------------------------------------------------------------
# YAML the way gopkg.in/yaml.v3 decodes it into CloudConfig
# ---------------------------------------------------------------------------


class _GoYamlLoader(yaml.SafeLoader):
    """A SafeLoader that keeps typed scalars as their source text (yaml.v3
    puts the literal text into a string field, so ``name: 010`` stays "010")
    and, like yaml.v3, rejects duplicate mapping keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, collections.abc.Hashable) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {_go_quote(str(key))} already defined",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _raw_scalar(loader, node):
    return loader.construct_scalar(node)


for _tag in ("bool", "int", "float", "timestamp"):
    _GoYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _raw_scalar)

_TRUE = {"true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE = {"false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}


def load_yaml(text: str):
    """The first YAML document (yaml.v3 Unmarshal ignores the rest)."""
    try:
        return next(iter(yaml.load_all(text, Loader=_GoYamlLoader)), None)
    except yaml.YAMLError as exc:
        raise CloudConfigError(f"yaml: {' '.join(str(exc).split())}") from None


def _yaml_kind(value) -> str:
    if isinstance(value, dict):
        return "!!map"
    if isinstance(value, list):
        return "!!seq"
    return "!!str"


class Fields:
    """Typed reads from one YAML mapping, like yaml.v3 decoding into a Go
    struct: unknown keys are skipped, so a hyphenated key is silently lost
    (Flatcar removed the hyphen-to-underscore mapping); a value of the wrong
    shape is a type error that fails the whole cloud-config."""

    def __init__(self, value, path: str, errors: list[str], warnings: list[str]):
        self.path, self.errors, self.warnings = path, errors, warnings
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._type_error(value, "struct", path)
            value = {}
        self.mapping = value

    def note_hyphenated(self, known: Iterable[str]) -> None:
        known = set(known)
        for key in self.mapping:
            if isinstance(key, str) and "-" in key and key.replace("-", "_") in known:
                self.warnings.append(f"ignored hyphenated key {self._at(key)}: Flatcar's "
                                     f"coreos-cloudinit only knows {key.replace('-', '_')}")

    def _at(self, key) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def _type_error(self, value, want: str, where: str) -> None:
        self.errors.append(f"cannot unmarshal {_yaml_kind(value)} into {want} ({where})")

    def str(self, key: str) -> str:
        value = self.mapping.get(key)
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            self._type_error(value, "string", self._at(key))
            return ""
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    def bool(self, key: str) -> bool:
        value = self.mapping.get(key)
        if value is None:
            return False
        if isinstance(value, str) and value in _TRUE | _FALSE:
            return value in _TRUE
        self._type_error(value, "bool", self._at(key))
        return False

    def int(self, key: str) -> int:
        value = self.mapping.get(key)
        if value is None:
            return 0
        try:
            return int(str(value), 0)
        except ValueError:
            pass
        try:
            return int(float(str(value)))
        except ValueError:
            self._type_error(value, "int", self._at(key))
            return 0

    def float(self, key: str) -> float:
        value = self.mapping.get(key)
        if value is None:
            return 0.0
        try:
            return float(str(value))
        except ValueError:
            self._type_error(value, "float64", self._at(key))
            return 0.0

    def map(self, key: str) -> "Fields":
        return Fields(self.mapping.get(key), self._at(key), self.errors, self.warnings)

    def list(self, key: str) -> list:
        value = self.mapping.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._type_error(value, "[]", self._at(key))
            return []
        return value

    def typed(self, key: str, kind: str):
        return getattr(self, kind)(key)


# ---------------------------------------------------------------------------
# Cloud-config schema subset (FCCI config/*.go)
# ---------------------------------------------------------------------------

_ETCD2_BOOL = {"client_cert_auth", "debug", "enable_pprof", "force_new_cluster",
               "peer_client_cert_auth", "strict_reconfig_check"}
_ETCD2_INT = {"election_timeout", "heartbeat_interval", "max_snapshots", "max_wals",
              "proxy_dial_timeout", "proxy_failure_wait", "proxy_read_timeout",
              "proxy_refresh_interval", "proxy_write_timeout", "snapshot_count"}
_ETCD2_KEYS = [
    "advertise_client_urls", "ca_file", "cert_file", "client_cert_auth", "cors", "data_dir",
    "debug", "discovery", "discovery_fallback", "discovery_srv", "discovery_proxy",
    "election_timeout", "enable_pprof", "force_new_cluster", "heartbeat_interval",
    "initial_advertise_peer_urls", "initial_cluster", "initial_cluster_state",
    "initial_cluster_token", "key_file", "listen_client_urls", "listen_peer_urls",
    "log_package_levels", "max_snapshots", "max_wals", "name", "peer_ca_file",
    "peer_cert_file", "peer_key_file", "peer_client_cert_auth", "peer_trusted_ca_file",
    "proxy", "proxy_dial_timeout", "proxy_failure_wait", "proxy_read_timeout",
    "proxy_refresh_interval", "proxy_write_timeout", "snapshot_count",
    "strict_reconfig_check", "trusted_ca_file", "wal_dir",
]
# (yaml key, env var, type): config/etcd2.go.  Every env var is ETCD_<KEY>.
ETCD2_FIELDS = [(k, "ETCD_" + k.upper(),
                 "bool" if k in _ETCD2_BOOL else "int" if k in _ETCD2_INT else "str")
                for k in _ETCD2_KEYS]

_ETCD_TYPES = {
    "cluster_active_size": "int", "cluster_remove_delay": "float",
    "cluster_sync_interval": "float", "election_timeout": "int", "force_new_cluster": "bool",
    "heartbeat_interval": "int", "http_read_timeout": "float", "http_write_timeout": "float",
    "max_result_buffer": "int", "max_retry_attempts": "int", "max_snapshots": "int",
    "max_wals": "int", "peer_election_timeout": "int", "peer_heartbeat_interval": "int",
    "retry_interval": "float", "snapshot": "bool", "snapshot_count": "int",
    "verbose": "bool", "very_verbose": "bool", "very_very_verbose": "bool",
}
_ETCD_KEYS = [
    "addr", "advertise_client_urls", "bind_addr", "ca_file", "cert_file",
    "cluster_active_size", "cluster_remove_delay", "cluster_sync_interval", "cors", "data_dir",
    "discovery", "discovery_fallback", "discovery_srv", "discovery_proxy", "election_timeout",
    "force_new_cluster", "graphite_host", "heartbeat_interval", "http_read_timeout",
    "http_write_timeout", "initial_advertise_peer_urls", "initial_cluster",
    "initial_cluster_state", "initial_cluster_token", "key_file", "listen_client_urls",
    "listen_peer_urls", "max_result_buffer", "max_retry_attempts", "max_snapshots", "max_wals",
    "name", "peer_addr", "peer_bind_addr", "peer_ca_file", "peer_cert_file",
    "peer_election_timeout", "peer_heartbeat_interval", "peer_key_file", "peers", "peers_file",
    "proxy", "retry_interval", "snapshot", "snapshot_count", "trace", "verbose",
    "very_verbose", "very_very_verbose",
]
# config/etcd.go (etcd 0.4): snapshot_count is the odd one out.
ETCD_FIELDS = [(k, "ETCD_SNAPSHOTCOUNT" if k == "snapshot_count" else "ETCD_" + k.upper(),
                _ETCD_TYPES.get(k, "str")) for k in _ETCD_KEYS]

_UNIT_KEYS = ["name", "mask", "enable", "runtime", "content", "command", "drop_ins"]
_COREOS_KEYS = ["etcd", "etcd2", "flannel", "fleet", "locksmith", "oem", "update", "units"]
_TOP_KEYS = ["ssh_authorized_keys", "coreos", "write_files", "hostname", "users",
             "manage_etc_hosts"]
_WRITE_FILE_KEYS = ["encoding", "content", "owner", "path", "permissions"]


def _go_value(value) -> str:
    """fmt's %v for the field types cloud-config uses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    return str(value)


def service_contents(values: Mapping[str, object], fields) -> str:
    """system/env.go serviceContents: one quoted Environment= per non-zero field."""
    lines = [f'Environment="{env}={_go_value(values[key])}"'
             for key, env, _ in fields if values.get(key)]
    return "[Service]\n" + "".join(line + "\n" for line in lines) if lines else ""


@dataclass
class Unit:
    name: str
    content: str = ""
    drop_ins: dict[str, str] = field(default_factory=dict)
    mask: bool = False
    enable: bool = False
    runtime: bool = False
    command: str = ""


@dataclass
class CloudConfig:
    hostname: str = ""
    units: list[Unit] = field(default_factory=list)
    etcd: dict[str, object] = field(default_factory=dict)
    etcd2: dict[str, object] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)  # the users it creates: name, groups


def parse_cloud_config(text: str) -> CloudConfig:
    """NewCloudConfig + Decode for the fields the simulator models."""
    doc = load_yaml(text)
    errors: list[str] = []
    cc = CloudConfig()
    top = Fields(doc, "", errors, cc.warnings)
    top.note_hyphenated(_TOP_KEYS)
    cc.hostname = top.str("hostname")
    coreos = top.map("coreos")
    coreos.note_hyphenated(_COREOS_KEYS)
    cc.etcd = _read_fields(coreos.map("etcd"), ETCD_FIELDS)
    cc.etcd2 = _read_fields(coreos.map("etcd2"), ETCD2_FIELDS)
    cc.units = [_read_unit(Fields(u, f"coreos.units[{i}]", errors, cc.warnings))
                for i, u in enumerate(coreos.list("units"))]
    cc.files = _read_write_files(top, errors, cc.warnings)
    cc.users = _read_users(top, errors, cc.warnings)
    if errors:
        raise CloudConfigError("yaml: unmarshal errors: " + "; ".join(errors))
    return cc


def _read_users(top: Fields, errors: list[str], warnings: list[str]) -> list[dict]:
    """users[]: name and groups (CCI config/user.go). initialize/config.go skips a user with no name, logging
    "User object has no 'name' field, skipping" (its groups and keys with it; -validate says nothing)."""
    out = []
    for i, item in enumerate(top.list("users")):
        user = Fields(item, f"users[{i}]", errors, warnings)
        name = user.str("name")
        if not name:
            warnings.append("User object has no 'name' field, skipping")
            continue
        out.append({"name": name, "groups": [str(g) for g in user.list("groups")]})
    return out


def _read_fields(section: Fields, fields) -> dict[str, object]:
    section.note_hyphenated(k for k, _, _ in fields)
    return {key: section.typed(key, kind) for key, _, kind in fields}


def _read_unit(unit: Fields) -> Unit:
    unit.note_hyphenated(_UNIT_KEYS)
    drop_ins = {}
    for i, raw in enumerate(unit.list("drop_ins")):
        drop_in = Fields(raw, f"{unit.path}.drop_ins[{i}]", unit.errors, unit.warnings)
        drop_ins[drop_in.str("name")] = drop_in.str("content")
    return Unit(name=unit.str("name"), content=unit.str("content"), drop_ins=drop_ins,
                mask=unit.bool("mask"), enable=unit.bool("enable"),
                runtime=unit.bool("runtime"), command=unit.str("command"))


def _read_write_files(top: Fields, errors: list[str], warnings: list[str]) -> dict[str, bytes]:
    files = {}
    for i, raw in enumerate(top.list("write_files")):
        entry = Fields(raw, f"write_files[{i}]", errors, warnings)
        entry.note_hyphenated(_WRITE_FILE_KEYS)
        path, encoding = entry.str("path"), entry.str("encoding")
        try:
            # CloudConfig.Decode: one undecodable file fails the whole config.
            files[path] = decode_content(entry.str("content"), encoding)
        except DecodeError as exc:
            errors.append(f"write_files[{i}]: {exc}")
    return files


def determine_hostname(metadata_hostname: str, user_data_hostname: str) -> str:
    """determineHostname: user-data wins; cut at the first '.'; max 63."""
    hostname = user_data_hostname or metadata_hostname
    return hostname.split(".")[0][:63]


# ---------------------------------------------------------------------------
# systemd: unit files, drop-ins, Environment=
# ---------------------------------------------------------------------------

_UNIT_FILE = re.compile(r"^/(?:etc|run)/systemd/system/([^/]+\.service)$")
_DROP_IN_FILE = re.compile(r"^/(?:etc|run)/systemd/system/([^/]+\.service)\.d/([^/]+\.conf)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VALID_COMMANDS = {"start", "stop", "restart", "reload", "try-restart", "reload-or-restart",
                  "reload-or-try-restart"}
STARTING_COMMANDS = {"start", "restart", "reload-or-restart"}
ETCD_UNITS = {"etcd-member.service": "etcd-member", "etcd2.service": "etcd2",
              "etcd.service": "etcd"}


@dataclass
class SystemdState:
    """The unit files and drop-ins written to the node, and what runs."""

    contents: dict[str, str] = field(default_factory=dict)
    drop_ins: dict[str, dict[str, str]] = field(default_factory=dict)
    # Masks live in /etc (persistent) or /run (runtime); unmasking a runtime
    # unit only clears the /run one.
    masked: set[tuple[str, bool]] = field(default_factory=set)
    enabled: set[str] = field(default_factory=set)  # persistent (/etc) enables
    running: str | None = None  # the etcd unit running (they Conflict= each other)

    def place_files(self, files: Mapping[str, bytes]) -> None:
        """Unit files and drop-ins written as plain files (write_files, Ignition storage)."""
        for path, data in files.items():
            text = data.decode("utf-8", "replace")
            if m := _UNIT_FILE.match(path):
                self.contents[m.group(1)] = text
            elif m := _DROP_IN_FILE.match(path):
                self.drop_ins.setdefault(m.group(1), {})[m.group(2)] = text

    def place_unit(self, unit: Unit) -> None:
        """processUnits: content, drop-ins (both name and content needed), mask, enable."""
        if unit.content:
            self.contents[unit.name] = unit.content
        for name, content in unit.drop_ins.items():
            if name and content:
                self.drop_ins.setdefault(unit.name, {})[name] = content
        if unit.mask:
            self.masked.add((unit.name, unit.runtime))
        elif unit.runtime:
            self.masked.discard((unit.name, True))
        if unit.enable and not unit.runtime:
            self.enabled.add(unit.name)

    def is_masked(self, unit: str) -> bool:
        return (unit, False) in self.masked or (unit, True) in self.masked

    def start(self, unit: str) -> None:
        if unit in ETCD_UNITS:
            self.running = unit

    def stop(self, unit: str) -> None:
        if self.running == unit:
            self.running = None


def run_unit_commands(state: SystemdState, units: list[Unit], errors: list[str]) -> None:
    """The actions of processUnits, in order; the first failure stops the rest."""
    for unit in units:
        if not unit.command:
            continue
        if unit.command not in VALID_COMMANDS:
            errors.append(f"Failed to run {_go_quote(unit.command)} on {_go_quote(unit.name)}: "
                          "unknown systemctl operation")
            return
        if unit.command in STARTING_COMMANDS and state.is_masked(unit.name):
            errors.append(f"Failed to start {unit.name}: Unit {unit.name} is masked.")
            return
        if unit.command in STARTING_COMMANDS:
            state.start(unit.name)
        elif unit.command == "stop":
            state.stop(unit.name)


def expand_specifiers(value: str, specifiers: Mapping[str, str]) -> str:
    """systemd % specifiers; an unknown one makes systemd drop the assignment."""
    def one(m: re.Match) -> str:
        char = m.group(1)
        if char == "%":
            return "%"
        if char not in specifiers:
            raise ValueError(f"unknown specifier %{char}")
        return specifiers[char]
    return re.sub(r"%(.)", one, value)


def _logical_lines(text: str) -> Iterable[str]:
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield (pending + line).strip()
        pending = ""
    if pending:
        yield pending.strip()


def service_assignments(text: str) -> list[tuple[str, str]]:
    """(key, value) of Environment= and EnvironmentFile= in [Service], in order."""
    section, out = "", []
    for line in _logical_lines(text):
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and section == "Service" and key.strip() in ("Environment", "EnvironmentFile"):
            out.append((key.strip(), value.strip()))
    return out


def split_environment(value: str, specifiers: Mapping[str, str],
                      warnings: list[str]) -> list[tuple[str, str]]:
    """One Environment= value: specifiers, then quoted words of NAME=VALUE."""
    try:
        words = shlex.split(expand_specifiers(value, specifiers))
    except ValueError as exc:
        warnings.append(f"ignored Environment={value}: {exc}")
        return []
    pairs = []
    for word in words:
        name, sep, val = word.partition("=")
        if not sep or not _ENV_NAME.match(name):
            warnings.append(f"ignored invalid environment assignment {word!r}")
            continue
        pairs.append((name, val))
    return pairs


def parse_env_file(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        name, sep, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if sep and _ENV_NAME.match(name.strip()):
            env[name.strip()] = value
    return env


def unit_environment(state: SystemdState, unit: str, base: Mapping[str, str],
                     specifiers: Mapping[str, str], files: Mapping[str, bytes],
                     warnings: list[str]) -> dict[str, str]:
    """The environment systemd gives the unit's ExecStart: the vendor unit
    (replaced entirely by a user unit file), then drop-ins in file-name order;
    EnvironmentFile= values override Environment= ones.  ``Environment=``
    with no value resets the list.  Raises GuestError for a missing
    mandatory EnvironmentFile (the unit then fails to start)."""
    env: dict[str, str] = {} if unit in state.contents else dict(base)
    env_files: list[str] = []
    texts = [state.contents.get(unit, "")]
    texts += [content for _, content in sorted(state.drop_ins.get(unit, {}).items())]
    for text in texts:
        for key, value in service_assignments(text):
            if key == "EnvironmentFile":
                env_files = env_files + [value] if value else []
            elif not value:
                env = {}
            else:
                env.update(split_environment(value, specifiers, warnings))
    for path in env_files:
        optional = path.startswith("-")
        path = path.lstrip("-")
        if path in files:
            env.update(parse_env_file(files[path].decode("utf-8", "replace")))
        elif not optional:
            raise GuestError(f"Failed to start {unit}: Failed to load environment files "
                             f"({path} does not exist)")
    return env


# ---------------------------------------------------------------------------
# etcd: which member runs, with which environment
# ---------------------------------------------------------------------------

# etcd 0.4 settings with no etcd 3 equivalent; translated or dropped.
_ETCD04_ONLY = {"ETCD_ADDR", "ETCD_BIND_ADDR", "ETCD_PEER_ADDR", "ETCD_PEER_BIND_ADDR",
                "ETCD_PEERS", "ETCD_PEERS_FILE", "ETCD_CLUSTER_ACTIVE_SIZE",
                "ETCD_CLUSTER_REMOVE_DELAY", "ETCD_CLUSTER_SYNC_INTERVAL", "ETCD_GRAPHITE_HOST",
                "ETCD_HTTP_READ_TIMEOUT", "ETCD_HTTP_WRITE_TIMEOUT", "ETCD_MAX_RESULT_BUFFER",
                "ETCD_MAX_RETRY_ATTEMPTS", "ETCD_PEER_ELECTION_TIMEOUT",
                "ETCD_PEER_HEARTBEAT_INTERVAL", "ETCD_RETRY_INTERVAL", "ETCD_SNAPSHOT",
                "ETCD_SNAPSHOTCOUNT", "ETCD_TRACE", "ETCD_VERBOSE", "ETCD_VERY_VERBOSE",
                "ETCD_VERY_VERY_VERBOSE", "ETCD_CA_FILE", "ETCD_PEER_CA_FILE"}


@dataclass
class EtcdPlan:
    kind: str  # "etcd2", "etcd-member" or "etcd" (the 0.4 schema)
    unit: str
    env: dict[str, str]  # as the guest would hand it to etcd


def base_unit_env(kind: str, hostname: str) -> dict[str, str]:
    """What the vendor unit sets.  The real units use ETCD_NAME=%m (the
    machine id); the simulator uses the hostname so that a config without
    ETCD_NAME still forms a readable cluster."""
    env = {"ETCD_NAME": hostname or "localhost"}
    # etcd2 and etcd 0.4 served the v2 API; etcd 3.4 needs it switched on.
    if kind in ("etcd2", "etcd"):
        env["ETCD_ENABLE_V2"] = "true"
    return env


def plan_etcd(state: SystemdState, hostname: str, machine_id: str,
              files: dict[str, bytes], warnings: list[str], links: "list[Link] | None" = None) -> EtcdPlan | None:
    """The etcd the node runs and its environment. ExecStartPre= scripts the config wrote run first, for
    real (run_pre_script), and what they write joins files: systemd reads EnvironmentFile= when each
    command starts, so etcd sees a file its own ExecStartPre= made."""
    unit = state.running
    if unit is None:
        return None
    kind = ETCD_UNITS[unit]
    specifiers = {"m": machine_id, "H": hostname, "l": hostname, "n": unit,
                  "N": unit.rsplit(".", 1)[0], "p": unit.rsplit(".", 1)[0], "i": "", "b": machine_id}
    env = unit_environment(state, unit, base_unit_env(kind, hostname), specifiers, files, warnings)
    for line in service_values(state, unit, "ExecStartPre"):
        files.update(run_pre_script(unit, exec_words(line, env), files, links or [], optional=line.startswith("-")))
    env = unit_environment(state, unit, base_unit_env(kind, hostname), specifiers, files, warnings)
    command = exec_start(state, unit, env)
    if command and os.path.basename(command[0]) == "podman":
        # etcd runs in a container: it gets what podman passes in, not the unit's environment.
        return EtcdPlan(kind=kind, unit=unit, env=podman_etcd_env(command, env, state, unit, files, warnings))
    env.setdefault("ETCD_NAME", hostname or "localhost")  # also under a replaced unit file
    if kind == "etcd":
        env = etcd04_to_etcd3(env, warnings)
    elif kind == "etcd-member":
        env = etcd_opts_to_env(env)
        _pull_etcd_image(env)
    if kind in ("etcd2", "etcd"):
        warnings.append(f"{unit} is not shipped on current Flatcar (use etcd-member.service)")
    return EtcdPlan(kind=kind, unit=unit, env=env)


def service_values(state: SystemdState, unit: str, key: str) -> list[str]:
    """Every value of one [Service] directive across the unit file and its drop-ins; an empty one resets."""
    values: list[str] = []
    texts = [state.contents.get(unit, "")]
    texts += [content for _, content in sorted(state.drop_ins.get(unit, {}).items())]
    for text in texts:
        section = ""
        for line in _logical_lines(text):
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            name, sep, value = line.partition("=")
            if sep and section == "Service" and name.strip() == key:
                values = values + [value.strip()] if value.strip() else []
    return values


def exec_words(line: str, env: Mapping[str, str]) -> list[str]:
    """One Exec*= line as systemd runs it: a leading -/@/+/! prefix dropped, ${VAR} and $VAR words expanded."""
    line = line.lstrip("-@+!:")
    words = shlex.split(line)
    out = []
    for word in words:
        if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):  # $VAR alone: split on whitespace, dropped if empty
            out += env.get(word[1:], "").split()
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return out


def exec_start(state: SystemdState, unit: str, env: Mapping[str, str]) -> list[str] | None:
    starts = service_values(state, unit, "ExecStart")
    return exec_words(starts[-1], env) if starts else None


@dataclass
class Link:
    """One of the node's network links as `ip` shows it: name, MAC, and its IPv4 address if it has one."""
    name: str
    mac: str
    ip: str | None = None
    prefix: int = 24


_SHELLS = {"/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash"}
_FAKE_IP = """#!{python}
# guestsim's `ip`: the node's links and addresses, in iproute2's -o (one line) formats.
import json, os, sys
links = json.loads(os.environ["GUESTSIM_LINKS"])
args = " ".join(sys.argv[1:])
if args == "-o link show":
    for i, l in enumerate(links, start=2):
        print(f"{{i}}: {{l['name']}}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT"
              f" group default qlen 1000\\\\    link/ether {{l['mac'].lower()}} brd ff:ff:ff:ff:ff:ff")
elif args == "-4 route show default":
    up = [l for l in links if l["ip"]]
    if up:
        print(f"default via {{up[0]['ip'].rsplit('.', 1)[0]}}.1 dev {{up[0]['name']}} proto dhcp src {{up[0]['ip']}}")
elif args.startswith("-o -4 addr show dev ") and args.endswith(" scope global"):
    name = args.split()[5]
    for i, l in enumerate(links, start=2):
        if l["name"] == name and l["ip"]:
            print(f"{{i}}: {{name}}    inet {{l['ip']}}/{{l['prefix']}} scope global dynamic {{name}}\\\\"
                  "       valid_lft 3600sec preferred_lft 3600sec")
    if not any(l["name"] == name for l in links):
        sys.exit('Device "' + name + '" does not exist.')
else:
    sys.exit("guestsim ip: not modelled: " + args)
"""


def run_pre_script(unit: str, words: list[str], files: Mapping[str, bytes], links: list[Link],
                   optional: bool = False, timeout: float = 5.0) -> dict[str, bytes]:
    """Run one ExecStartPre= whose program (or the script its shell runs) is a file the config wrote, as the
    node would: with /bin/sh, in a scratch root that stands for /, so absolute paths among its arguments
    land there, and with an `ip` that shows the node's links. Returns the files it wrote, by node path.
    Programs of the OS itself (mkdir, podman) are not run here; the podman model reads them."""
    import tempfile

    script, args = (words[1], words[2:]) if words[:1] and words[0] in _SHELLS and len(words) > 1 else \
        (words[0] if words else "", words[1:])
    if script not in files:
        return {}
    with tempfile.TemporaryDirectory(prefix="guestsim-pre-") as tmp:
        root, bin_dir = Path(tmp) / "root", Path(tmp) / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "ip"
        fake.write_text(_FAKE_IP.format(python=sys.executable))
        fake.chmod(0o755)
        target = root / script.lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(files[script])
        mapped = [str(root / a.lstrip("/")) if a.startswith("/") else a for a in args]
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin",
               "GUESTSIM_LINKS": json.dumps([link.__dict__ for link in links])}
        try:
            done = subprocess.run(["/bin/sh", str(target), *mapped], env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestError(f"Failed to start {unit}: ExecStartPre {script} did not finish in {timeout:g} s"
                             " (guestsim's bound; the real node waits as long as the script does)") from None
        if done.returncode != 0 and not optional:
            last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
            raise GuestError(f"Failed to start {unit}: ExecStartPre {script} exited {done.returncode}: {last}")
        return {"/" + p.relative_to(root).as_posix(): p.read_bytes()
                for p in root.rglob("*") if p.is_file() and p != target}


# podman run options that take a value (podman-run(1)); the rest used here are flags.
_PODMAN_VALUED = {"--name", "--network", "--net", "-v", "--volume", "-e", "--env", "--env-file", "--restart",
                  "-p", "--publish", "--pull", "--user", "-u", "--entrypoint", "--label", "-l", "--log-driver",
                  "--security-opt", "--cap-add", "--cap-drop", "-w", "--workdir", "--hostname", "-h", "--sdnotify",
                  "--stop-timeout", "--cgroups"}


def podman_etcd_env(command: list[str], unit_env: Mapping[str, str], state: SystemdState, unit: str,
                    files: Mapping[str, bytes], warnings: list[str]) -> dict[str, str]:
    """etcd's environment inside `podman run …`: only --env-host, --env-file and --env reach it (podman-run(1)),
    in that order of precedence; the unit's Environment= stays with podman. What would stop the real
    container (a missing --env-file or host directory, a data volume SELinux denies, no host network) is
    a GuestError."""
    if command[1:2] != ["run"]:
        raise GuestError(f"Failed to start {unit}: guestsim models only `podman run`")
    opts: list[tuple[str, str | None]] = []
    i = 2
    while i < len(command) and command[i].startswith("-"):
        name, sep, value = command[i].partition("=")
        if not sep and name in _PODMAN_VALUED:
            i += 1
            value = command[i] if i < len(command) else ""
        opts.append((name, value if (sep or name in _PODMAN_VALUED) else None))
        i += 1
    if i >= len(command):
        raise GuestError(f"Failed to start {unit}: podman run: requires at least 1 arg (the image)")
    image, argv = command[i], command[i + 1:]
    _pull_etcd_image({"ETCD_IMAGE": image})
    env: dict[str, str] = {}
    if any(name == "--env-host" for name, _ in opts):
        env.update(unit_env)
    for name, value in opts:
        if name == "--env-file":
            if value not in files:
                raise GuestError(f"Failed to start {unit}: podman: open {value}: no such file or directory")
            env.update(parse_podman_env_file(files[value].decode("utf-8", "replace")))
    for name, value in opts:
        if name in ("-e", "--env"):
            env.update(_podman_env_option(value or "", unit_env))
    networks = [value for name, value in opts if name in ("--network", "--net")]
    if networks[-1:] != ["host"]:
        raise GuestError(f"Failed to start {unit}: etcd's container is not on the host network, so no peer or"
                         " client reaches its ports (podman run --network host)")
    pre = [exec_words(line, unit_env) for line in service_values(state, unit, "ExecStartPre")]
    made = {w for words in pre if words[:1] in (["/usr/bin/mkdir"], ["mkdir"]) for w in words[1:]}
    data_dir = env.get("ETCD_DATA_DIR", "/default.etcd")
    on_volume = False
    for name, value in opts:
        if name not in ("-v", "--volume"):
            continue
        host, _, rest = (value or "").partition(":")
        target, _, options = rest.partition(":")
        if host.startswith("/") and host not in made:
            raise GuestError(f"Failed to start {unit}: podman: statfs {host}: no such file or directory")
        if data_dir == target or data_dir.startswith(target.rstrip("/") + "/"):
            on_volume = True
            if not {"z", "Z"} & set(options.split(",")):
                raise GuestError(f"{unit}: etcd: open {data_dir}: permission denied (SELinux: a volume without"
                                 " :z or :Z keeps the host's label, which the container may not write)")
    if not on_volume:
        warnings.append(f"{unit}: etcd's data dir {data_dir} is inside the container: it is lost at every restart")
    if argv and os.path.basename(argv[0]) == "etcd":
        env = etcd_opts_to_env({**env, "ETCD_OPTS": shlex.join(argv[1:])})
    return env


def _podman_env_option(value: str, unit_env: Mapping[str, str]) -> dict[str, str]:
    """One --env: NAME=VALUE; NAME (podman's own value, dropped if unset); PREFIX* (every match of podman's)."""
    name, sep, val = value.partition("=")
    if sep:
        return {name: val}
    if name.endswith("*"):
        return {k: v for k, v in unit_env.items() if k.startswith(name[:-1])}
    return {name: unit_env[name]} if name in unit_env else {}


def parse_podman_env_file(text: str) -> dict[str, str]:
    """podman's --env-file: KEY=VALUE lines taken literally (quotes stay part of the value), # comments."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            env[name.strip()] = value
    return env


# The ETCD_* variables etcd 0.4 reads (its config.go env tags) that etcd 3 takes under the same name.
_ETCD04_SAME = {"ETCD_NAME", "ETCD_DATA_DIR", "ETCD_DISCOVERY", "ETCD_CERT_FILE", "ETCD_KEY_FILE",
                "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE", "ETCD_CORS"}
# ... and those etcd 3 names differently.
_ETCD04_RENAMED = {"ETCD_SNAPSHOTCOUNT": "ETCD_SNAPSHOT_COUNT", "ETCD_PEER_HEARTBEAT_INTERVAL":
                   "ETCD_HEARTBEAT_INTERVAL", "ETCD_PEER_ELECTION_TIMEOUT": "ETCD_ELECTION_TIMEOUT",
                   "ETCD_CA_FILE": "ETCD_TRUSTED_CA_FILE", "ETCD_PEER_CA_FILE": "ETCD_PEER_TRUSTED_CA_FILE"}


def etcd04_to_etcd3(env: Mapping[str, str], warnings: list[str]) -> dict[str, str]:
    """Run a coreos.etcd (0.4) config on etcd 3 as etcd 0.4 would have run it.

    addr/peer_addr become the client/peer URLs (bind_addr/peer_bind_addr the
    listen side). etcd 0.4 reads only its own variables: the etcd2-style ones
    coreos-cloudinit also writes (ETCD_INITIAL_CLUSTER, ETCD_LISTEN_*, …) are
    ignored, as "etcd2 options no longer work for etcd" says. Without
    discovery or peers etcd 0.4 starts a new cluster of itself alone; a join
    through ``peers`` is not modelled and fails the unit, so nothing passes
    for a cluster that would not have formed."""
    addr = env.get("ETCD_ADDR", "127.0.0.1:4001")
    peer_addr = env.get("ETCD_PEER_ADDR", "127.0.0.1:7001")
    out = {
        "ETCD_ADVERTISE_CLIENT_URLS": "http://" + addr,
        "ETCD_LISTEN_CLIENT_URLS": "http://" + _bind_addr(env.get("ETCD_BIND_ADDR", ""), addr),
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://" + peer_addr,
        "ETCD_LISTEN_PEER_URLS": "http://" + _bind_addr(env.get("ETCD_PEER_BIND_ADDR", ""), peer_addr),
    }
    if env.get("ETCD_PEERS") or env.get("ETCD_PEERS_FILE"):
        raise GuestError("etcd 0.4 joins through peers are not modelled by guestsim: etcd.service not started")
    for key, value in env.items():
        if key in _ETCD04_SAME or key == "ETCD_ENABLE_V2":  # ENABLE_V2 is the simulator's own (base_unit_env)
            out[key] = value
        elif key in _ETCD04_RENAMED:
            out[_ETCD04_RENAMED[key]] = value
            if key.endswith("CA_FILE"):
                out["ETCD_PEER_CLIENT_CERT_AUTH" if "PEER" in key else "ETCD_CLIENT_CERT_AUTH"] = "true"
        elif key not in _ETCD04_ONLY:
            warnings.append(f"etcd 0.4 ignores {key} (etcd2 options no longer work for etcd)")
    if "ETCD_DISCOVERY" not in out:
        out["ETCD_INITIAL_CLUSTER"] = f"{out.get('ETCD_NAME', 'default')}={out['ETCD_INITIAL_ADVERTISE_PEER_URLS']}"
    return out


def _bind_addr(bind: str, advertised: str) -> str:
    # etcd 0.4: the listen host defaults to the advertised one; a bind
    # address without a port takes the advertised port.
    if not bind:
        return advertised
    if ":" in bind.rsplit("]", 1)[-1]:
        return bind
    return f"{bind}:{advertised.rsplit(':', 1)[-1]}"


def _pull_etcd_image(env: Mapping[str, str]) -> None:
    """etcd-wrapper pulls ${ETCD_IMAGE:-$ETCD_IMAGE_URL:$ETCD_IMAGE_TAG} on first start; a registry the node
    cannot reach means etcd never runs.  The simulator has no registry, so a host under .invalid (RFC 2606:
    never resolves) stands for an unreachable one."""
    image = env.get("ETCD_IMAGE") or env.get("ETCD_IMAGE_URL", "quay.io/coreos/etcd")
    host = image.split("/", 1)[0].split(":", 1)[0] if "/" in image else ""
    if host.endswith(".invalid"):
        raise GuestError(f"Failed to start etcd-member.service: docker pull {image}: dial tcp: lookup {host}:"
                         " no such host")


def etcd_opts_to_env(env: Mapping[str, str]) -> dict[str, str]:
    """etcd-member runs ``etcd-wrapper $ETCD_OPTS``: flags there win over
    the same ETCD_* variables, so fold them into the environment."""
    out = {k: v for k, v in env.items() if k != "ETCD_OPTS"}
    words = shlex.split(env.get("ETCD_OPTS", ""))
    i = 0
    while i < len(words):
        word = words[i].lstrip("-")
        name, sep, value = word.partition("=")
        if not sep:
            has_value = i + 1 < len(words) and not words[i + 1].startswith("-")
            value = words[i + 1] if has_value else "true"
            i += has_value
        out["ETCD_" + name.upper().replace("-", "_")] = value
        i += 1
    return out


# ---------------------------------------------------------------------------
# Ignition (a minimal model: hostname, files, units) and Afterburn kargs
# ---------------------------------------------------------------------------


@dataclass
class IgnitionConfig:
    version: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        data = self.files.get("/etc/hostname", b"")
        return data.decode("utf-8", "replace").strip().split("\n")[0].strip()


def ignition_version_supported(version: str) -> bool:
    """Flatcar's Ignition: spec 2.0.0-2.4.0 (translated) and 3.0.0-3.6.0,
    plus 3.7.0-experimental."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(-experimental)?", version)
    if not m:
        return False
    major, minor, patch, experimental = int(m[1]), int(m[2]), int(m[3]), bool(m[4])
    if patch != 0:
        return False
    if major == 2:
        return minor <= 4 and not experimental
    if major == 3:
        return (minor <= 6 and not experimental) or (minor == 7 and experimental)
    return False


def decode_data_url(url: str) -> bytes:
    """RFC 2397 ``data:[<mediatype>][;base64],<data>``."""
    if not url.startswith("data:") or "," not in url:
        raise IgnitionError(f"unsupported file source {url[:40]!r} (only data: URLs are modelled)")
    meta, _, payload = url[5:].partition(",")
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(urllib.parse.unquote(payload), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IgnitionError(f"invalid base64 data URL: {exc}") from None
    return urllib.parse.unquote_to_bytes(payload)


def parse_ignition(text: str, distro: str = "flatcar") -> IgnitionConfig:
    """Files with data: sources and systemd units (contents, drop-ins,
    enabled/enable, mask) of an Ignition 2.x/3.x config.  A wrongly shaped
    section makes Ignition reject the whole config. Fedora CoreOS's upstream
    Ignition takes spec 3 only (coreos-facts §4.4)."""
    cfg = _strict_json(text)
    version = _json_field(_json_field(cfg, "ignition") or {}, "version")
    if version is None:
        raise IgnitionError("Ignition spec 1 (ignitionVersion) is not modelled by guestsim")
    if not ignition_version_supported(version) or (distro == FCOS and not version.startswith("3.")):
        raise IgnitionError(f"unsupported config version {_go_quote(version)}")
    ign = IgnitionConfig(version=version)
    storage = _typed(cfg, "storage", dict, {})
    for entry in _typed(storage, "files", list, []):
        _ignition_file(ign, _checked(entry, dict, "storage.files[]"))
    systemd = _typed(cfg, "systemd", dict, {})
    for entry in _typed(systemd, "units", list, []):
        ign.units.append(_ignition_unit(_checked(entry, dict, "systemd.units[]")))
    return ign


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _checked(value, kind: type, where: str):
    if not isinstance(value, kind):
        raise IgnitionError(f"config is not valid: {where} must be {_JSON_TYPES[kind]}")
    return value


def _typed(obj: dict, key: str, kind: type, default):
    value = _json_field(obj, key)
    return default if value is None else _checked(value, kind, key)


def _ignition_file(ign: IgnitionConfig, entry: dict) -> None:
    path = _typed(entry, "path", str, "")
    contents = _typed(entry, "contents", dict, {})
    source = _typed(contents, "source", str, None)
    if source is None:
        ign.files[path] = b""
        return
    try:
        data = decode_data_url(source)
        if _typed(contents, "compression", str, "") == "gzip":
            data = gunzip(data, lenient=False)
    except IgnitionError as exc:
        ign.warnings.append(f"storage.files {path}: {exc}")
        return
    except DecodeError as exc:
        raise IgnitionError(f"storage.files {path}: {exc}") from None
    ign.files[path] = data


def _ignition_unit(entry: dict) -> Unit:
    drop_ins = {}
    for dropin in _typed(entry, "dropins", list, []):
        dropin = _checked(dropin, dict, "dropins[]")
        drop_ins[_typed(dropin, "name", str, "")] = _typed(dropin, "contents", str, "")
    enabled = _typed(entry, "enabled", bool, None)
    if enabled is None:
        enabled = _typed(entry, "enable", bool, False)  # spec 2.x's deprecated spelling
    return Unit(name=_typed(entry, "name", str, ""), content=_typed(entry, "contents", str, ""),
                drop_ins=drop_ins, mask=_typed(entry, "mask", bool, False), enable=enabled)


@dataclass
class KargsNetwork:
    ip: str
    gateway: str = ""
    netmask: str = ""
    hostname: str = ""
    interface: str = ""
    mac: str = ""  # from ifname=<interface>:<mac>, which names the NIC with that MAC <interface>

    def applies_to(self, nic: "Nic") -> bool:
        """Whether the ip= karg configures this NIC: no interface named, the NIC's own name, or the name
        ifname= gave the NIC with this MAC (dracut and systemd-network-generator)."""
        if not self.interface:
            return True
        if self.mac:
            return self.mac == nic.mac.lower()
        return self.interface == nic.name


def parse_network_kargs(kargs: str) -> KargsNetwork | None:
    """The first static dracut ``ip=<ip>:[peer]:<gw>:<netmask>:<hostname>:<iface>:none|off``
    of guestinfo.afterburn.initrd.network-kargs, with the MAC an ``ifname=<iface>:<mac>`` gives
    that interface; None for DHCP forms."""
    ifnames = {}
    for word in kargs.split():
        if word.startswith("ifname="):
            name, sep, mac = word[len("ifname="):].partition(":")
            if not sep:
                raise GuestError(f"invalid ifname= karg {word!r} (want ifname=<interface>:<MAC>)")
            try:
                ifnames[name] = parse_mac(mac).lower()
            except ValueError:
                raise GuestError(f"invalid MAC in {word!r}") from None
    for word in kargs.split():
        if not word.startswith("ip="):
            continue
        parts = word[3:].split(":")
        if len(parts) < 7:
            continue  # ip=dhcp, ip=<iface>:dhcp, ...
        if parts[6] not in ("none", "off"):
            continue
        try:
            ip = str(parse_ip(parts[0]))
        except ValueError:
            raise GuestError(f"invalid client IP in network kargs: {parts[0]!r}") from None
        return KargsNetwork(ip=ip, gateway=parts[2], netmask=parts[3], hostname=parts[4],
                            interface=parts[5], mac=ifnames.get(parts[5], ""))
    return None


# ---------------------------------------------------------------------------
# One boot, end to end (pure: no vSphere, no processes)
# ---------------------------------------------------------------------------


@dataclass
class BootResult:
    datasource: str = "guestinfo"
    data_key: str | None = None
    encoding: str = ""
    user_data: str | None = None
    config_kind: str = "none"
    applied: bool = False
    hostname: str = "localhost"
    ip: str | None = None
    ip_source: str = "dhcp"
    network: dict = field(default_factory=dict)
    substitutions: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    etcd: EtcdPlan | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    enabled_units: set[str] = field(default_factory=set)
    links: list = field(default_factory=list)  # the node's links as `ip` shows them (Link), first NIC first
    distro: str = "flatcar"  # or FCOS: upstream Ignition only, no coreos-cloudinit, no vendor etcd-member
    users: list = field(default_factory=list)  # the users coreos-cloudinit created (name, groups)


def is_coreos_vm(extra: Mapping[str, str]) -> bool:
    keys = ("guestinfo.coreos.config.data", "guestinfo.ignition.config.data")
    return any(k in extra for k in keys) or bool(extra.get("guestinfo.ovfenv"))


def simulate_boot(extra: Mapping[str, str], nic: Nic, lease: Callable[[], str],
                  enabled_before: Iterable[str] = (), machine_id: str = "",
                  provisioned: Mapping[str, object] | None = None,
                  more_nics: Iterable[Nic] = (), lease_for: Callable[[Nic], str] | None = None,
                  distro: str = "flatcar") -> BootResult:
    """What a Flatcar node makes of its guestinfo: Ignition runs first in the
    initramfs and only acts on Ignition JSON; anything else is left to
    coreos-cloudinit (oem-cloudinit.service).

    provisioned: what Ignition applied on the first boot (provisioned_by_ignition). Ignition runs on
    the first boot only: a later boot starts what that boot left on the disk and reads no guestinfo,
    whatever it says now; Afterburn's kargs too apply to the first boot only (the address stays the
    one its network file names)."""
    result = BootResult(distro=distro)
    guestinfo = Guestinfo(extra)
    more_nics = list(more_nics)
    try:
        return _simulate_boot(result, guestinfo, extra, nic, lease, enabled_before, machine_id, provisioned)
    finally:
        _other_links(result, guestinfo, more_nics, lease_for)


def _simulate_boot(result, guestinfo, extra, nic, lease, enabled_before, machine_id, provisioned) -> BootResult:
    if provisioned is not None:
        result.config_kind, result.datasource = "ignition", "disk (Ignition ran on the first boot)"
        _boot_ignition(result, Guestinfo({}), str(provisioned["config"]), nic, lease, machine_id,
                       static_ip=provisioned.get("ip"))
        return result
    fcos = result.distro == FCOS
    raw = fetch_user_data(guestinfo.ignition_reader(), ("ignition.config.data",) if fcos else
                          ("ignition.config.data", "coreos.config.data"))
    text = _user_data_text(raw)
    if text and (detect_kind(text) == "ignition" or fcos):
        _record_user_data(result, raw, text)
        _boot_ignition(result, guestinfo, text, nic, lease, machine_id)
    elif fcos:  # no config at all: Ignition applies nothing, and there is no coreos-cloudinit to try
        result.datasource, result.ip = "ignition", lease()
        result.links = [Link(nic.name, nic.mac, result.ip)]
    else:
        _boot_cloudinit(result, guestinfo, raw, nic, lease, set(enabled_before), machine_id)
    if result.hostname == "":
        result.hostname = "localhost"
    return result


def _other_links(result: BootResult, guestinfo: Guestinfo, nics: list[Nic],
                 lease_for: Callable[[Nic], str] | None) -> None:
    """The VM's other NICs: the static address goes wherever the config's match says (networkd applies a
    .network to every link it matches; dracut's ip= to the interface it names), every other NIC takes
    Flatcar's default DHCP. One address on two links is the guest's error: neither link works."""
    if not nics:
        return
    kargs = None
    if result.datasource == "ignition":
        try:
            kargs = parse_network_kargs(guestinfo.direct("afterburn.initrd.network-kargs"))
        except GuestError:
            kargs = None
    interfaces = []
    if result.datasource in ("guestinfo", "ovfenv"):
        try:
            interfaces = process_netconf(fetch_metadata(guestinfo.cloudinit_reader()).netconf).interfaces
        except (OvfEnvError, MetadataError):
            interfaces = []
    for nic in nics:
        iface = select_interface(interfaces, nic)
        if iface is not None and iface.static:
            ip = static_ipv4(iface)
        elif kargs is not None and kargs.applies_to(nic):
            ip = kargs.ip
        else:
            ip = lease_for(nic) if lease_for else None
        result.links.append(Link(nic.name, nic.mac, ip))
    seen: dict[str, str] = {}
    for link in result.links:
        if link.ip and link.ip in seen:
            result.errors.append(f"address {link.ip} is on both {seen[link.ip]} and {link.name}: a network config"
                                 " that matches more than one NIC (e.g. Name=e*) gives each the same address")
        elif link.ip:
            seen[link.ip] = link.name


def _user_data_text(raw: RawUserData) -> str | None:
    if raw.data is None:
        return None
    try:
        return decompress_if_gzip(raw.data).decode("utf-8", "replace")
    except DecodeError:
        return None


def _record_user_data(result: BootResult, raw: RawUserData, text: str | None) -> None:
    result.data_key, result.encoding = raw.key, raw.encoding
    result.user_data = text
    result.config_kind = detect_kind(text) if text is not None else "undecodable"


def provisioned_by_ignition(result: BootResult) -> dict | None:
    """What a later boot keeps of an Ignition first boot (its config, as applied to the disk; a static address)."""
    if result.datasource != "ignition" or not result.applied:
        return None
    return {"config": result.user_data, "ip": result.ip if result.ip_source == "afterburn-kargs" else None}


def _boot_ignition(result: BootResult, guestinfo: Guestinfo, text: str, nic: Nic,
                   lease: Callable[[], str], machine_id: str, static_ip: object = None) -> None:
    if static_ip is not None or result.datasource.startswith("disk"):
        result.ip = str(static_ip) if static_ip else lease()
        result.ip_source = "static" if static_ip else "dhcp"
        result.links = [Link(nic.name, nic.mac, result.ip)]
        _apply_ignition(result, text, machine_id, kargs=None)
        return
    result.datasource = "ignition"
    kargs = None
    try:
        kargs = parse_network_kargs(guestinfo.direct("afterburn.initrd.network-kargs"))
    except GuestError as exc:
        result.errors.append(str(exc))
    if kargs and kargs.applies_to(nic):
        result.ip, result.ip_source = kargs.ip, "afterburn-kargs"
        result.network = {"kargs": kargs.__dict__, "nic": nic.__dict__}
    else:
        result.ip = lease()
        result.network = {"nic": nic.__dict__}
    result.links = [Link(nic.name, nic.mac, result.ip)]
    _apply_ignition(result, text, machine_id, kargs)


def _apply_ignition(result: BootResult, text: str, machine_id: str, kargs: KargsNetwork | None) -> None:
    try:
        ign = parse_ignition(text, result.distro)
    except (GuestError, ValueError) as exc:
        # Real Ignition stops the boot here; the node is kept up (DHCP, tools)
        # so that the failure is visible in its record.
        result.errors.append(f"Ignition failed: {exc}")
        return
    result.warnings += ign.warnings
    result.hostname = (ign.hostname or (kargs.hostname if kargs else "")).split(".")[0][:63]
    result.files = ign.files
    _apply_ignition_units(result, ign, machine_id)


def _apply_ignition_units(result: BootResult, ign: IgnitionConfig, machine_id: str) -> None:
    state = SystemdState()
    state.place_files(ign.files)
    for unit in ign.units:
        state.place_unit(unit)
    # Ignition only enables units; enabled ones start on this very first boot.
    for unit in ign.units:
        if unit.name in ETCD_UNITS and unit.enable and not unit.mask:
            if result.distro == FCOS and unit.name not in state.contents:
                # Fedora CoreOS ships no etcd unit: enabling one that nothing defines fails.
                result.errors.append(f"Failed to enable unit: Unit file {unit.name} does not exist.")
                continue
            if unit.name in state.contents and "[Install]" not in state.contents[unit.name]:
                # systemctl preset/enable: "The unit files have no installation config"; nothing starts it.
                result.warnings.append(f"{unit.name} is enabled but has no [Install] section: it does not start")
                continue
            state.start(unit.name)
        elif unit.name in ETCD_UNITS and unit.drop_ins and not unit.enable:
            result.warnings.append(f"{unit.name} is configured but not enabled: it will not start")
    result.enabled_units = set(state.enabled)
    result.applied = True
    _plan(result, state, machine_id)


def _plan(result: BootResult, state: SystemdState, machine_id: str) -> None:
    files = dict(result.files)
    try:
        result.etcd = plan_etcd(state, result.hostname, machine_id, files, result.warnings, result.links)
        result.files = files  # with what ExecStartPre= scripts wrote (/run/…)
    except GuestError as exc:
        result.errors.append(str(exc))


def _boot_cloudinit(result: BootResult, guestinfo: Guestinfo, raw: RawUserData, nic: Nic,
                    lease: Callable[[], str], enabled_before: set[str], machine_id: str) -> None:
    result.datasource = "ovfenv" if guestinfo.ovfenv else "guestinfo"
    try:
        read = guestinfo.cloudinit_reader()
        md = fetch_metadata(read)
        netconf = process_netconf(md.netconf)
    except (OvfEnvError, MetadataError) as exc:
        # coreos-cloudinit exits 1 before networking, hostname and user-data;
        # the NIC keeps Flatcar's default DHCP.
        result.errors.append(f"Failed fetching meta-data from datasource: {exc}")
        result.ip = lease()
        _record_user_data(result, raw, _user_data_text(raw))
        return
    if guestinfo.ovfenv:
        raw = fetch_user_data(read)
    _network(result, md, netconf, nic, lease)
    result.substitutions = substitution_map(md)
    text = _checked_user_data(result, raw)
    cc = _cloud_config(result, text)
    result.hostname = determine_hostname(md.hostname, cc.hostname if cc else "")
    if cc is not None:
        _apply_cloud_config(result, cc, enabled_before, machine_id)


def _network(result: BootResult, md: Metadata, netconf: Netconf, nic: Nic,
             lease: Callable[[], str]) -> None:
    iface = select_interface(netconf.interfaces, nic)
    result.network = {
        "hostname": md.hostname, "public_ipv4": md.public_ipv4, "private_ipv4": md.private_ipv4,
        "public_ipv6": md.public_ipv6, "private_ipv6": md.private_ipv6,
        "dns_servers": netconf.nameservers, "dns_domains": netconf.domains,
        "interfaces": [i.to_json() for i in netconf.interfaces], "nic": nic.__dict__,
        "matched_interface": iface.index if iface else None,
    }
    if netconf.interfaces and iface is None:
        result.warnings.append(f"no guestinfo.interface matches NIC {nic.name} ({nic.mac}): "
                               "it falls back to DHCP")
    if iface is not None and iface.static:
        result.ip, result.ip_source = static_ipv4(iface), "static"
        if result.ip is None:
            result.errors.append(f"interface {iface.index} is static but has no IPv4 address")
    else:
        result.ip = lease()
    result.links = [Link(nic.name, nic.mac, result.ip)]


def _checked_user_data(result: BootResult, raw: RawUserData) -> str:
    if raw.error:
        result.errors.append(f"Failed fetching user-data from datasource: {raw.error}")
        _record_user_data(result, raw, None)
        return ""
    try:
        text = decompress_if_gzip(raw.data or b"").decode("utf-8", "replace")
    except DecodeError as exc:
        result.errors.append(str(exc))
        _record_user_data(result, raw, None)
        return ""
    _record_user_data(result, raw, text)
    return text


def _cloud_config(result: BootResult, text: str) -> CloudConfig | None:
    kind = detect_kind(text)
    if kind == "cloud-config":
        try:
            cc = parse_cloud_config(apply_substitutions(text, result.substitutions))
        except CloudConfigError as exc:
            result.errors.append(f"Failed to parse user-data: {exc}")
            return None
        result.warnings += cc.warnings
        return cc
    if kind == "unknown":
        result.errors.append("Unrecognized user-data format")
    elif kind == "multipart":
        result.errors.append("multipart MIME user-data is not modelled by guestsim")
    elif kind == "script":
        result.warnings.append("user-data script is not executed by guestsim")
    elif kind == "ignition":
        result.warnings.append("Detected an Ignition config. Exiting...")
    return None


def _apply_cloud_config(result: BootResult, cc: CloudConfig, enabled_before: set[str],
                        machine_id: str) -> None:
    """Apply(): files first, then units (user units, then the generated
    etcd/etcd2 drop-ins), then the unit commands."""
    result.users = cc.users
    units = cc.units + [
        Unit("etcd.service", runtime=True,
             drop_ins={"20-cloudinit.conf": service_contents(cc.etcd, ETCD_FIELDS)}),
        Unit("etcd2.service", runtime=True,
             drop_ins={"20-cloudinit.conf": service_contents(cc.etcd2, ETCD2_FIELDS)}),
    ]
    units = [u for u in units if u.name]  # "Skipping unit without name"
    state = SystemdState(enabled=set(enabled_before))
    state.place_files(cc.files)
    for unit in units:
        state.place_unit(unit)
    # Units enabled on an earlier boot start with the system, before cloudinit.
    for unit in sorted(enabled_before & set(ETCD_UNITS)):
        if not state.is_masked(unit):
            state.start(unit)
    for unit in units:
        if unit.name in ETCD_UNITS and unit.enable and not unit.command and unit.name not in enabled_before:
            result.warnings.append(f"{unit.name} is only enabled: it starts from the next boot on")
    run_unit_commands(state, units, result.errors)
    result.files = cc.files
    result.enabled_units = set(state.enabled)
    result.applied = True
    _plan(result, state, machine_id)


# ---------------------------------------------------------------------------
# Running a node's etcd on this machine
# ---------------------------------------------------------------------------

_ANY_HOSTS = {"0.0.0.0", "::", ""}
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_LISTEN_KEYS = ("ETCD_LISTEN_CLIENT_URLS", "ETCD_LISTEN_PEER_URLS", "ETCD_LISTEN_METRICS_URLS")


def loopback_alias(node_ip: str) -> str:
    """Each simulated node needs a private "localhost": all nodes share this
    machine's loopback, so 127.0.0.1:2379 could only belong to one of them.
    It is derived from the node IP and is deliberately NOT the node IP, so a
    member that listens on localhost only stays unreachable from outside."""
    octets = node_ip.split(".")
    if len(octets) == 4:
        return f"127.254.{octets[2]}.{octets[3]}"
    return "127.254.255.254"


def rewrite_listen_urls(urls: str, node_ip: str) -> str:
    """Wildcard hosts become the node IP (a real node owns 0.0.0.0 alone),
    loopback hosts become the node's private loopback alias.  Any other IP
    is not this node's: etcd would fail to bind it, which GuestError says."""
    return ",".join(_rewrite_listen_url(url.strip(), node_ip) for url in urls.split(","))


def _rewrite_listen_url(url: str, node_ip: str) -> str:
    if "://" not in url:
        return url  # etcd itself rejects it, as on a real node
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return url
    host = (parts.hostname or "").lower()
    if host in _ANY_HOSTS:
        host = node_ip
    elif host in _LOOPBACK_HOSTS:
        host = loopback_alias(node_ip)
    elif host != node_ip and _is_ip(host):
        raise GuestError(f"etcd cannot listen on {url}: {host} is not an address "
                         f"of this node ({node_ip})")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def localize_etcd_env(env: Mapping[str, str], node_ip: str, disk: Path) -> dict[str, str]:
    """The environment etcd actually gets on this machine: data on the node's
    disk, listen URLs on the node's own addresses, files from the node's root."""
    out = dict(env)
    # etcd's built-in defaults are localhost URLs; made explicit so they can
    # be moved to the node's loopback alias.  Setting listen-client-urls
    # explicitly makes etcd demand advertise-client-urls, so its default too.
    if "ETCD_LISTEN_CLIENT_URLS" not in out:
        out["ETCD_LISTEN_CLIENT_URLS"] = "http://localhost:2379"
        out.setdefault("ETCD_ADVERTISE_CLIENT_URLS", "http://localhost:2379")
    out.setdefault("ETCD_LISTEN_PEER_URLS", "http://localhost:2380")
    for key in _LISTEN_KEYS:
        if key in out:
            out[key] = rewrite_listen_urls(out[key], node_ip)
    out["ETCD_DATA_DIR"] = str(disk / "etcd")
    if "ETCD_WAL_DIR" in out:
        out["ETCD_WAL_DIR"] = str(disk / "etcd-wal")
    for key, value in env.items():
        if key.endswith("_FILE") and value.startswith("/"):
            out[key] = str(disk / "root" / value.lstrip("/"))
    return out


# Looked up once in the parent: the child of a multi-threaded fork must not
# take the dynamic loader's locks.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervising thread (and
    # so the simulator) dies without cleaning up, the kernel kills etcd.
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EtcdSupervisor:
    """One node's etcd, kept running like systemd's Restart=on-failure with
    RestartSec=10s (etcd-member.service) until stop() is called."""

    def __init__(self, binary: str, env: Mapping[str, str], log_path: Path, label: str,
                 restart_sec: float = 10.0):
        self.binary, self.env, self.log_path, self.label = binary, dict(env), log_path, label
        self.restart_sec = restart_sec
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._started = threading.Event()
        self._stopping = False
        self._proc: subprocess.Popen | None = None
        self.error: str | None = None
        # The thread that forks must outlive etcd (PR_SET_PDEATHSIG is per
        # thread), so this thread spawns and waits for every incarnation.
        self._thread = threading.Thread(target=self._run, name=f"etcd-{label}", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _spawn(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"--- guestsim: starting etcd for {self.label} at "
                      f"{datetime.now(timezone.utc).isoformat()}\n".encode())
            out.flush()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env}
            return subprocess.Popen([self.binary], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    break
                try:
                    self._proc = self._spawn()
                except OSError as exc:
                    self.error = f"cannot start {self.binary}: {exc}"
                    log.info("%s: %s", self.label, self.error)
                    break
                finally:
                    self._started.set()
            code = self._proc.wait()
            if self._stopping:
                break
            log.info("%s: etcd (pid %s) exited with %s; restarting in %ss",
                     self.label, self._proc.pid, code, self.restart_sec)
            if self._wake.wait(self.restart_sec):
                break
        self._started.set()

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self._proc and self._proc.poll() is None:
                self._proc.send_signal(signum)

    def request_stop(self, kill: bool = False) -> None:
        """SIGTERM, as systemd stops the unit; kill: SIGKILL, for a bed going away."""
        with self._lock:
            self._stopping = True
            self._wake.set()
            if self._proc and self._proc.poll() is None:
                if kill:
                    self._proc.kill()
                    return
                self._proc.terminate()
                # A suspended (SIGSTOPped) etcd only acts on SIGTERM once resumed.
                self._proc.send_signal(signal.SIGCONT)

    def wait_stopped(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive() and self._proc:
            self._proc.kill()
            self._thread.join()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.wait_stopped(timeout)


# ---------------------------------------------------------------------------
# DHCP leases
# ---------------------------------------------------------------------------


class LeasePool:
    """Addresses from --dhcp-range, one per VM, kept while the VM exists."""

    def __init__(self, spec: str, path: Path):
        first, sep, last = spec.partition("-")
        if not sep:
            raise ValueError(f"--dhcp-range must be FIRST-LAST, got {spec!r}")
        self.first, self.last = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        if self.first > self.last:
            raise ValueError(f"empty --dhcp-range {spec!r}")
        self.path = path
        self._lock = threading.Lock()
        self._leases: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def lease(self, key: str, in_use: Iterable[str] = ()) -> str:
        with self._lock:
            if key not in self._leases:
                self._leases[key] = self._free(set(in_use))
                _write_json(self.path, self._leases)
            return self._leases[key]

    def _free(self, in_use: set[str]) -> str:
        taken = set(self._leases.values()) | in_use
        for value in range(int(self.first), int(self.last) + 1):
            address = str(ipaddress.IPv4Address(value))
            if address not in taken:
                return address
        raise GuestError("DHCP range exhausted")

    def release(self, key: str) -> None:
        """The VM's lease and its other NICs' (<key>/<MAC>)."""
        with self._lock:
            gone = [k for k in self._leases if k == key or k.startswith(key + "/")]
            for k in gone:
                del self._leases[k]
            if gone:
                _write_json(self.path, self._leases)


def _write_json(path: Path, obj) -> None:
    """Atomically, so a test never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# vSphere side
# ---------------------------------------------------------------------------


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace("\0", "_") or "_"


class SerialWorker:
    """Runs one VM's events in order on its own thread, so a slow boot or a
    stopping etcd never holds up the watcher or another VM."""

    def __init__(self, name: str):
        self._cond = threading.Condition()
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, action: Callable[[], None]) -> None:
        with self._cond:
            self._pending.append(action)
            self._cond.notify_all()

    def close(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def superseded(self, timeout: float) -> bool:
        """Wait up to timeout; True as soon as a newer event is queued."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: self._pending or self._closed, timeout))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                action = self._pending.popleft()
            try:
                action()
            except Exception as exc:  # one VM's failure never stops the others
                log.error("%s: %s: %s", self._thread.name, type(exc).__name__, _one_line(exc))


# VMware Tools' "primary" address is not the node's: while the network comes
# up it is IPv6 link-local, and on a node that runs containers an overlay
# interface's. guest.net lists every NIC; the VM's first NIC has deviceConfigId
# 4000, interfaces the guest made itself have -1.
FIRST_NIC_ID = 4000
# What predictable naming calls a VM's second, third and fourth vmxnet3 NIC (their PCI slots; the first is
# ens192). The names differ by hardware version, which is why configs match NICs by MAC.
MORE_NIC_NAMES = ("ens224", "ens256", "ens161")
DOCKER0 = "172.17.0.1"


def link_local(mac: str) -> str:
    """The EUI-64 fe80:: address a guest gives the NIC with this MAC."""
    octets = [int(part, 16) for part in mac.split(":")] if mac else [0, 0x50, 0x56, 0, 0, 1]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + eui)))


def flannel_address(node_ip: str) -> str:
    """A flannel.1-style 10.1.x.0 address, x from the node's last octet."""
    return f"10.1.{node_ip.rsplit('.', 1)[-1]}.0"


def _nic(device_id: int, mac: str, network: str, addresses: list[tuple[str, int]]) -> dict:
    """One guest.net entry, field names as in the vSphere API (vim.vm.GuestInfo.NicInfo)."""
    return {"network": network, "macAddress": mac, "connected": True, "deviceConfigId": device_id,
            "ipAddress": [a for a, _ in addresses],
            "ipConfig": {"ipAddress": [{"ipAddress": a, "prefixLength": p, "state": "preferred"}
                                       for a, p in addresses]}}


@dataclass
class ToolsReport:
    """What VMware Tools tells vCenter at one moment: guest.ipAddress and guest.net."""
    ip: str
    net: list[dict]
    seconds: float  # how long this report stands before the next


def tools_reports(node_ip: str | None, mac: str, network: str, link_local_seconds: float,
                  overlay_seconds: float, more: Iterable[tuple[str, str | None]] = ()) -> list[ToolsReport]:
    """The reports of a booting node, in order, as real VMware Tools give them:
    fe80:: alone while the network comes up; then every interface (the node's own
    address on the first NIC, docker0, flannel.1) with the flannel address as the
    primary for a while; then the node's own address as the primary.
    more: the VM's other NICs, (MAC, address), as deviceConfigId 4001, 4002, …"""
    ll = link_local(mac)
    first = _nic(FIRST_NIC_ID, mac, network, [(ll, 64)])
    if node_ip is None:
        return [ToolsReport(ll, [first], 0.0)]
    flannel = flannel_address(node_ip)
    others = [_nic(FIRST_NIC_ID + i, m, network, ([(ip, 24)] if ip else []) + [(link_local(m), 64)])
              for i, (m, ip) in enumerate(more, start=1)]
    net = [_nic(FIRST_NIC_ID, mac, network, [(node_ip, 24), (ll, 64)]), *others,
           _nic(-1, "02:42:ac:11:00:01", "", [(DOCKER0, 16)]),
           _nic(-1, "7a:1c:00:00:00:01", "", [(flannel, 32)])]
    return [ToolsReport(ll, [first], link_local_seconds), ToolsReport(flannel, net, overlay_seconds),
            ToolsReport(node_ip, net, 0.0)]


@dataclass
class VmFacts:
    name: str
    power: str
    template: bool
    extra: dict[str, str]
    instance_uuid: str
    mac: str
    network: str = ""
    more_macs: list = field(default_factory=list)  # the VM's other NICs, by device key
    distro: str = "flatcar"


@dataclass
class VmState:
    moref: str
    name: str = ""
    power: str = ""
    template: bool = False
    worker: SerialWorker | None = None
    # Touched only on the VM's worker thread:
    disk_key: str | None = None
    etcd: EtcdSupervisor | None = None
    record: dict | None = None
    record_path: Path | None = None
    tools_ip: str | None = None  # the last address and guest.net reported while running
    tools_net: list[dict] | None = None


WATCHED = ["name", "runtime.powerState", "config.extraConfig", "config.template"]


class GuestSimulator:
    """Plays the guests of every CoreOS VM in one vCenter (vcsim).

    The watcher thread only tracks names and power states; each VM's guest
    life cycle (boot, power-off, suspend, destroy) runs on that VM's own
    SerialWorker, and etcd processes are owned by EtcdSupervisors.
    """

    def __init__(self, si, state_dir: Path, dhcp_range: str, boot_delay: float = 0.0,
                 etcd_binary: str = "/usr/bin/etcd", nic_name: str = "ens192",
                 restart_sec: float = 10.0, strict_tools: bool = False,
                 link_local_seconds: float = 1.0, overlay_seconds: float = 3.0):
        self.si, self.state_dir = si, Path(state_dir)
        self.strict_tools = strict_tools
        self.link_local_seconds, self.overlay_seconds = link_local_seconds, overlay_seconds
        self.boot_delay, self.etcd_binary = boot_delay, etcd_binary
        self.nic_name, self.restart_sec = nic_name, restart_sec
        self.leases = LeasePool(dhcp_range, self.state_dir / "leases.json")
        self.vms: dict[str, VmState] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._etcds: set[EtcdSupervisor] = set()
        self._local = threading.local()
        for sub in ("nodes", "disks", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.state_dir / "ready").unlink(missing_ok=True)  # from an earlier run

    # -- watching -----------------------------------------------------------

    def watch(self, stop: threading.Event) -> None:
        """Follow every VM through one PropertyCollector filter on a
        ContainerView.  Returns when stop is set; raises when vCenter is lost."""
        from pyVmomi import vmodl

        pc = self._collector()
        self._create_filter(pc)
        version = ""
        # A long poll, not a sleep: it returns as soon as anything changes.
        # Capped because a dead connection must be noticed.
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=5)
        while not stop.is_set():
            update = pc.WaitForUpdatesEx(version, options)
            if update is not None:
                version = update.version
                for filter_update in update.filterSet or []:
                    for object_update in filter_update.objectSet or []:
                        self._on_object_update(object_update)
            ready = self.state_dir / "ready"
            if not ready.exists():
                # vcsim only starts collecting changes during the first call.
                ready.write_text(f"{os.getpid()}\n")
                log.info("watching %d VMs", len(self.vms))

    def _collector(self):
        # Never the session's default PropertyCollector: vcsim shares it per
        # session, so concurrent waits on it steal each other's updates.
        content = self.si.RetrieveContent()
        return content.propertyCollector.CreatePropertyCollector()

    def _create_filter(self, pc) -> None:
        from pyVmomi import vim, vmodl

        content = self.si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        pcq = vmodl.query.PropertyCollector
        spec = pcq.FilterSpec(
            objectSet=[pcq.ObjectSpec(obj=view, skip=True, selectSet=[
                pcq.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)])],
            propSet=[pcq.PropertySpec(type=vim.VirtualMachine, pathSet=WATCHED)])
        pc.CreateFilter(spec, partialUpdates=False)

    def _on_object_update(self, update) -> None:
        moref = update.obj._moId
        if update.kind == "leave":
            vm = self.vms.pop(moref, None)
            if vm is not None:
                self._submit(vm, lambda: self._destroyed(vm))
                vm.worker.close()
            return
        vm = self.vms.setdefault(moref, VmState(moref))
        before = vm.power
        for change in update.changeSet or []:
            self._apply_change(vm, change)
        if not vm.template:
            self._power_transition(vm, before, vm.power)

    @staticmethod
    def _apply_change(vm: VmState, change) -> None:
        value = None if change.op in ("remove", "indirectRemove") else change.val
        if change.name == "name":
            vm.name = value or vm.name
        elif change.name == "runtime.powerState":
            vm.power = str(value or "")
        elif change.name == "config.template":
            vm.template = bool(value)

    def _power_transition(self, vm: VmState, before: str, after: str) -> None:
        if before == after:
            return
        if after == "poweredOn":
            action = self._resumed if before == "suspended" else self._booted
        elif after == "suspended":
            action = self._suspended
        elif before:
            action = self._powered_off
        else:
            return
        self._submit(vm, lambda: action(vm))

    def _submit(self, vm: VmState, action: Callable[[], None]) -> None:
        if vm.worker is None:
            vm.worker = SerialWorker(f"vm-{vm.name or vm.moref}")
        vm.worker.submit(action)

    # -- guest life cycle (each runs on the VM's worker thread) -----------

    def _booted(self, vm: VmState) -> None:
        if self.boot_delay and vm.worker.superseded(self.boot_delay):
            log.info("%s: power state changed during boot delay; boot abandoned", vm.name)
            return
        facts = self._facts(vm.moref)
        if facts is None or facts.power != "poweredOn" or facts.template or self._stopping:
            return
        if not is_coreos_vm(facts.extra):
            log.info("%s: no CoreOS config in extraConfig; ignored", facts.name)
            return
        self._stop_etcd(vm)  # a reset without a visible power-off
        self._boot(vm, facts)

    def _boot(self, vm: VmState, facts: VmFacts) -> None:
        vm.name = facts.name
        vm.disk_key = f"{vm.moref}-{facts.instance_uuid}" if facts.instance_uuid else vm.moref
        disk = self.state_dir / "disks" / vm.disk_key
        disk_state = _read_json(disk / "state.json") or {"boots": 0, "enabled_units": []}
        result = simulate_boot(facts.extra, Nic(self.nic_name, facts.mac),
                               lease=lambda: self._lease(vm), enabled_before=disk_state["enabled_units"],
                               machine_id=facts.instance_uuid.replace("-", ""),
                               provisioned=disk_state.get("ignition"),
                               more_nics=[Nic(name, mac) for name, mac in zip(MORE_NIC_NAMES, facts.more_macs)],
                               lease_for=lambda nic: self._lease(vm, nic.mac), distro=facts.distro)
        disk_state = {"boots": disk_state["boots"] + 1, "enabled_units": sorted(result.enabled_units),
                      "ignition": disk_state.get("ignition") or provisioned_by_ignition(result)}
        _write_json(disk / "state.json", disk_state)
        _materialize(disk / "root", result.files)
        log.info("%s: booted (%s, %s) ip=%s hostname=%s errors=%d", facts.name, result.config_kind,
                 result.datasource, result.ip, result.hostname, len(result.errors))
        for error in result.errors:
            log.info("%s: guest error: %s", facts.name, _one_line(error))
        more = [(link.mac, link.ip) for link in result.links[1:]]
        reports = (tools_reports(result.ip, facts.mac, facts.network, self.link_local_seconds,
                                 self.overlay_seconds, more) if self.strict_tools else [])
        if reports:
            self._report(vm, running=True, ip=reports[0].ip, hostname=result.hostname, net=reports[0].net)
        else:
            self._report(vm, running=True, ip=result.ip, hostname=result.hostname)
        etcd = self._start_etcd(vm, result, disk)
        vm.record = node_record(vm, facts, result, etcd, disk_state["boots"])
        self._write_record(vm)
        for before, report in zip(reports, reports[1:]):
            if vm.worker.superseded(before.seconds):
                return  # powered off or reset meanwhile: that event reports now
            self._report(vm, running=True, ip=report.ip, hostname=result.hostname, net=report.net)

    def _start_etcd(self, vm: VmState, result: BootResult, disk: Path) -> dict | None:
        if result.etcd is None:
            return None
        info = {"kind": result.etcd.kind, "unit": result.etcd.unit, "env": result.etcd.env,
                "effective_env": None, "pid": None, "data_dir": str(disk / "etcd"),
                "log": str(self.state_dir / "logs" / f"{_safe_name(vm.name)}-{vm.moref}.etcd.log")}
        try:
            if result.ip is None:
                raise GuestError("the node has no IPv4 address")
            env = localize_etcd_env(result.etcd.env, result.ip, disk)
        except GuestError as exc:
            result.errors.append(str(exc))
            log.info("%s: etcd not started: %s", vm.name, _one_line(exc))
            return info
        info["effective_env"] = env
        supervisor = EtcdSupervisor(self.etcd_binary, env, Path(info["log"]), vm.name,
                                    self.restart_sec)
        with self._lock:
            if self._stopping:
                return info
            self._etcds.add(supervisor)
            supervisor.start()
        vm.etcd = supervisor
        info["pid"] = supervisor.pid
        if supervisor.error:
            result.errors.append(supervisor.error)
        log.info("%s: started %s (pid %s) on %s", vm.name, result.etcd.unit, supervisor.pid,
                 env.get("ETCD_LISTEN_CLIENT_URLS"))
        return info

    def _powered_off(self, vm: VmState) -> None:
        if vm.record is None:
            return
        self._stop_etcd(vm)
        self._report(vm, running=False)
        vm.record.update(power_state="poweredOff", tools="guestToolsNotRunning")
        if vm.record.get("etcd"):
            vm.record["etcd"]["pid"] = None
        self._write_record(vm)
        log.info("%s: powered off", vm.name)

    def _suspended(self, vm: VmState) -> None:
        # A suspended guest is frozen, not shut down.
        if vm.etcd:
            vm.etcd.send_signal(signal.SIGSTOP)
        if vm.record is not None:
            self._report(vm, running=False)
            log.info("%s: suspended", vm.name)

    def _resumed(self, vm: VmState) -> None:
        if vm.etcd:
            vm.etcd.send_signal(signal.SIGCONT)
        if vm.record is not None:
            self._report(vm, running=True, ip=vm.tools_ip or vm.record["ip"], hostname=vm.record["hostname"],
                         net=vm.tools_net)
            log.info("%s: resumed", vm.name)

    def _destroyed(self, vm: VmState) -> None:
        self._stop_etcd(vm)
        if vm.disk_key:
            shutil.rmtree(self.state_dir / "disks" / vm.disk_key, ignore_errors=True)
            self.leases.release(vm.disk_key)
        if vm.record_path:
            vm.record_path.unlink(missing_ok=True)
        if vm.record is not None:
            log.info("%s: destroyed; disk wiped", vm.name)

    def _stop_etcd(self, vm: VmState) -> None:
        if vm.etcd is None:
            return
        vm.etcd.stop()
        with self._lock:
            self._etcds.discard(vm.etcd)
        log.info("%s: stopped etcd (pid %s)", vm.name, vm.etcd.pid)
        vm.etcd = None

    def _lease(self, vm: VmState, mac: str | None = None) -> str:
        """The VM's lease; a NIC past the first has its own (key <disk>/<MAC>)."""
        in_use = [v.record["ip"] for v in list(self.vms.values()) if v.record and v.record.get("ip")]
        return self.leases.lease(f"{vm.disk_key}/{mac}" if mac else vm.disk_key, in_use)

    def _write_record(self, vm: VmState) -> None:
        path = self.state_dir / "nodes" / (_safe_name(vm.record["name"]) + ".json")
        if vm.record_path and vm.record_path != path:
            vm.record_path.unlink(missing_ok=True)
        vm.record_path = path
        _write_json(path, vm.record)

    # -- talking to vCenter -------------------------------------------------

    def _worker_collector(self):
        if getattr(self._local, "pc", None) is None:
            self._local.pc = self._collector()
        return self._local.pc

    def _facts(self, moref: str) -> VmFacts | None:
        """A fresh read at boot: vcsim emits no update when ReconfigVM_Task
        changes extraConfig, so the watched copy may be stale."""
        from pyVmomi import vim, vmodl

        pcq = vmodl.query.PropertyCollector
        paths = ["name", "runtime.powerState", "config.template", "config.extraConfig",
                 "config.instanceUuid", "config.hardware.device", "config.guestId"]
        spec = pcq.FilterSpec(objectSet=[pcq.ObjectSpec(obj=vim.VirtualMachine(moref, self.si._stub))],
                              propSet=[pcq.PropertySpec(type=vim.VirtualMachine, pathSet=paths)])
        try:
            result = self._worker_collector().RetrievePropertiesEx([spec], pcq.RetrieveOptions())
        except vmodl.MethodFault as exc:
            log.info("%s: gone before it booted (%s)", moref, type(exc).__name__)
            return None
        if not result or not result.objects:
            return None
        props = {p.name: p.val for p in result.objects[0].propSet}
        nics = sorted((d for d in props.get("config.hardware.device") or []
                       if isinstance(d, vim.vm.device.VirtualEthernetCard)), key=lambda d: d.key)
        return VmFacts(
            name=props.get("name", moref), power=str(props.get("runtime.powerState", "")),
            template=bool(props.get("config.template")),
            extra=extra_config_dict((o.key, o.value) for o in props.get("config.extraConfig") or []),
            instance_uuid=props.get("config.instanceUuid") or "",
            mac=(nics[0].macAddress or "") if nics else "",
            network=(getattr(nics[0].backing, "deviceName", None) or "") if nics else "",
            more_macs=[n.macAddress or "" for n in nics[1:]],
            distro=FCOS if str(props.get("config.guestId") or "").startswith("fedora") else "flatcar")

    def _report(self, vm: VmState, running: bool, ip: str | None = None,
                hostname: str | None = None, net: list[dict] | None = None) -> None:
        """What VMware tools tell vCenter.  vcsim applies SET.<path> extraConfig
        keys to the VM's properties instead of storing them; our build reads
        SET.guest.net as JSON (a list of NicInfo)."""
        from pyVim.task import WaitForTask
        from pyVmomi import vim, vmodl

        if running:
            vm.tools_ip, vm.tools_net = ip, net
        tools = "guestToolsRunning" if running else "guestToolsNotRunning"
        values = {"SET.guest.toolsRunningStatus": tools,
                  "SET.summary.guest.toolsRunningStatus": tools,
                  "SET.guest.guestState": "running" if running else "notRunning",
                  # An empty value unsets it, as vCenter does when tools stop.
                  "SET.guest.ipAddress": (ip or "") if running else ""}
        if running and hostname:
            values["SET.guest.hostName"] = hostname
        if self.strict_tools:
            # After guest.ipAddress, which vcsim copies into guest.net[0].
            values["SET.guest.net"] = json.dumps(net or []) if running else ""
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v)
                                              for k, v in values.items()])
        try:
            task = vim.VirtualMachine(vm.moref, self.si._stub).ReconfigVM_Task(spec)
            WaitForTask(task, pc=self._worker_collector())
        except vmodl.MethodFault as exc:
            log.info("%s: could not report guest state: %s", vm.name, type(exc).__name__)

    # -- shutting down ------------------------------------------------------

    def shutdown(self) -> None:
        """Kill every etcd this simulator started; no new ones start after.

        Killed, not stopped: nothing reads these members again (their disks go with the test's
        directory), and a last member whose peers are gone takes about 7 s over a graceful stop.
        """
        with self._lock:
            self._stopping = True
            etcds = list(self._etcds)
            self._etcds.clear()
        for etcd in etcds:
            etcd.request_stop(kill=True)
        for etcd in etcds:
            etcd.wait_stopped()
        if etcds:
            log.info("stopped %d etcd members", len(etcds))


def node_record(vm: VmState, facts: VmFacts, result: BootResult, etcd: dict | None,
                boots: int) -> dict:
    """The contents of nodes/<vm name>.json, written at every boot and
    updated at power-off (power_state, tools, etcd.pid):

    name, moref, instance_uuid       the VM
    power_state, tools, boot_count, booted_at
    ip, ip_source                    "static", "dhcp" or "afterburn-kargs"
    hostname                         as the guest set it ("localhost" if none)
    datasource                       "guestinfo", "ovfenv" or "ignition"
    data_key, encoding               which guestinfo key held the user-data
    config_kind                      cloud-config, script, ignition, multipart,
                                     unknown, none, undecodable
    user_data                        the decoded text, before substitution
    applied                          whether the user-data was applied
    network                          metadata, interfaces, DNS, NIC, match
    substitutions                    $private_ipv4 & co. as substituted
    errors, warnings                 what the real guest would fail on / notice
    etcd                             null, or kind, unit, env (as configured),
                                     effective_env (as run here), pid (of the
                                     first start; restarts are logged), data_dir, log
    """
    return {
        "name": facts.name,
        "moref": vm.moref,
        "instance_uuid": facts.instance_uuid,
        "power_state": "poweredOn",
        "tools": "guestToolsRunning",
        "boot_count": boots,
        "booted_at": datetime.now(timezone.utc).isoformat(),
        "ip": result.ip,
        "ip_source": result.ip_source,
        "links": [link.__dict__ for link in result.links],
        "users": result.users,
        "distro": result.distro,
        "hostname": result.hostname,
        "datasource": result.datasource,
        "data_key": result.data_key,
        "encoding": result.encoding,
        "config_kind": result.config_kind,
        "user_data": result.user_data,
        "applied": result.applied,
        "network": result.network,
        "substitutions": result.substitutions,
        "errors": result.errors,
        "warnings": result.warnings,
        "etcd": etcd,
    }


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _materialize(root: Path, files: Mapping[str, bytes]) -> None:
    """Files the config wrote, under the node's root, so ETCD_*_FILE paths resolve."""
    for path, data in files.items():
        if not path.startswith("/") or ".." in Path(path).parts:
            continue
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.guestsim",
                                     description="Play booting CoreOS/Flatcar guests against vcsim.")
    parser.add_argument("--url", required=True, help="SDK URL, e.g. https://127.0.0.1:8989/sdk")
    parser.add_argument("--ca-file", required=True, help="PEM certificate to trust")
    parser.add_argument("--username", required=True)
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    secret.add_argument("--password")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--dhcp-range", required=True, metavar="FIRST-LAST")
    parser.add_argument("--boot-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--etcd-binary", default="/usr/bin/etcd")
    parser.add_argument("--nic-name", default="ens192",
                        help="the guest's name for the VM's first NIC (default ens192)")
    parser.add_argument("--strict-tools", action="store_true",
                        help="report addresses as real VMware Tools do: fe80:: first, then several NICs")
    parser.add_argument("--link-local-seconds", type=float, default=1.0, metavar="SECONDS",
                        help="with --strict-tools: how long fe80:: is the only address (default 1)")
    parser.add_argument("--overlay-seconds", type=float, default=3.0, metavar="SECONDS",
                        help="with --strict-tools: how long flannel's address is the primary (default 3)")
    return parser.parse_args(argv)


def connect(url: str, ca_file: str, username: str, password: str):
    from pyVim.connect import SmartConnect

    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=ca_file)
    return SmartConnect(host=parts.hostname, port=parts.port or 443, user=username, pwd=password,
                        path=parts.path or "/sdk", sslContext=context)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s guestsim: %(message)s")
    password = os.environ.get(args.password_env, "") if args.password_env else args.password
    try:
        si = connect(args.url, args.ca_file, args.username, password)
        sim = GuestSimulator(si, args.state_dir, args.dhcp_range, args.boot_delay,
                             args.etcd_binary, args.nic_name, strict_tools=args.strict_tools,
                             link_local_seconds=args.link_local_seconds, overlay_seconds=args.overlay_seconds)
    except Exception as exc:
        print(f"guestsim: cannot start: {_one_line(exc)}", file=sys.stderr)
        return 2
    stop = threading.Event()
    failure: list[str] = []

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch():
        try:
            sim.watch(stop)
        except Exception as exc:
            failure.append(f"lost vCenter: {type(exc).__name__}: {_one_line(exc)}")
        finally:
            stop.set()

    # The watcher blocks inside WaitForUpdatesEx; the main thread stays free
    # to take signals and to clean up.
    threading.Thread(target=watch, name="watcher", daemon=True).start()
    while not stop.wait(3600):
        pass
    sim.shutdown()
    if failure:
        print(f"guestsim: {failure[0]}", file=sys.stderr)
        return 1
    log.info("stopped by signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
