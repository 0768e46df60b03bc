"""The cluster file's shape as a pydantic model: every key, its type, bounds and default.

vmcoreos.clusterfile validates the YAML against this model (collecting every
finding with its line) and turns the result into ClusterSettings; the JSON
Schema shipped for editors (examples/cluster.schema.json) is generated from it.
Values stay as written here (strings, not addresses or paths): resolving them
is the parser's job, so the schema says what a user types.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema
from pydantic import field_validator, model_validator

from vmcoreos.errors import ConfigError
from vmcoreos.settings import CHANNELS, DISTROS, check_image

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$"


def _number_to_text(value: Any) -> Any:
    # YAML reads `version: 3033.2`, `datastore: 42` or `cluster: 101` as numbers; they are names, so take them as text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_number_to_text), WithJsonSchema({"type": ["string", "number"]})]


def _cluster_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError("must be lower-case letters, digits and '-' (it becomes host names); pick another")
    return value


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


def _address(value: str) -> str:
    try:
        parse_addresses(value)
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    return value


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


def _image(value: str) -> str:
    try:
        return check_image(value)
    except ConfigError as exc:
        raise ValueError(exc.message) from None


class KeyProblem(ValueError):
    """A section's check about one of its keys: pydantic places it on the section, the finding on the key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        # `node:` with nothing under it, or `count:` with no value, means "the default", as it always did.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class VSphere(Section):
    """Where the nodes go; each may be left out when the vCenter has only one, or set by govc's GOVC_* variables."""

    datacenter: Text | None = Field(None, description="datacenter name (default GOVC_DATACENTER)")
    cluster: Text | None = Field(None, description="compute cluster; its root resource pool is used"
                                 " (default from GOVC_RESOURCE_POOL)")
    datastore: Text | None = Field(None, description="datastore name (default GOVC_DATASTORE); the one-item form"
                                   " of vsphere.datastores")
    datastores: list[Text] | None = Field(None, min_length=1, description="datastores the etcd members are spread"
                                          " over, fewest members first; the template goes on the first")
    network: Text | None = Field(None, description="port group name (default GOVC_NETWORK, else 'VM Network')")
    folder: Text | None = Field(None, description="VM folder path under the datacenter (default GOVC_FOLDER)")
    resource_pool: Text | None = Field(None, description="resource pool path below the cluster's root pool"
                                       " (default: the root pool)")
    host: Text | None = Field(None, description="ESXi host for every clone and import (default: members are"
                              " spread over the cluster's usable hosts, one host each where there are enough)")

    @model_validator(mode="after")
    def _one_datastore_key(self) -> "VSphere":
        if self.datastores is None:
            return self
        if self.datastore is not None:
            raise KeyProblem("datastores", "is set together with vsphere.datastore; keep one: datastore is the"
                             " one-item form of datastores")
        if len(set(self.datastores)) != len(self.datastores):
            raise KeyProblem("datastores", "names a datastore twice; list each once")
        self.datastore = self.datastores[0]
        return self


class Image(Section):
    distro: Literal[DISTROS] = "flatcar"
    channel: Text = Field("stable", description="flatcar: stable, beta, alpha, lts; coreos: stable, beta, alpha;"
                          " fedora-coreos: stable, testing, next")
    version: Text = Field("current", description="'current' or a pinned version such as 4593.2.5")
    base_url: Text | None = Field(None, description="a mirror of the channel's release directory")
    ova: Text | None = Field(None, description="a local OVA (path relative to this file) or URL instead of a release")
    sig: Text | None = Field(None, description="the OVA's detached signature (default: the OVA's name + .sig)")
    trusted_keys: list[Text] = Field([], description="extra OpenPGP key files, [DISTRO=]FILE")
    allow_unsigned_version: bool = Field(False, description="accept a release version no signature covers")

    @model_validator(mode="after")
    def _channel_of_distro(self) -> "Image":
        if self.channel not in CHANNELS[self.distro]:
            raise KeyProblem("channel", f"{self.channel!r} is not a {self.distro} channel;"
                         f" use one of {', '.join(CHANNELS[self.distro])}")
        return self


class Network(Section):
    mode: Literal["static", "dhcp"] = "dhcp"
    # One address may be written without the list; a union would put pydantic's member names in error paths.
    addresses: Annotated[
        list[Annotated[Text, AfterValidator(_address)]],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}),
    ] = Field([], description="one per node: CIDR addresses or ranges like 10.0.0.20-10.0.0.29/24")
    gateway: Annotated[Text, AfterValidator(_ipv4)] | None = None
    dns: list[Annotated[Text, AfterValidator(_ipv4)]] = []

    @field_validator("addresses")
    @classmethod
    def _each_address_once(cls, value: list[str]) -> list[str]:
        seen: set = set()
        for item in value:
            for a in parse_addresses(item):
                if a.ip in seen:
                    raise ValueError(f"lists {a.ip} twice; every node needs its own address")
                seen.add(a.ip)
        return value

    @model_validator(mode="after")
    def _static_needs_addresses(self) -> "Network":
        if self.mode == "static" and not self.addresses:
            raise KeyProblem("addresses", "empty, but node.network.mode is static; list one address per node")
        return self


# What ESXi accepts for one VM, checked here because vSphere says no only at clone time, after the upload:
# vSphere 8 allows 768 vCPUs and 24 TiB per VM; memory goes in 4 MB steps.
MAX_CPUS = 768
MAX_MEMORY_MB = 24 << 20


class Node(Section):
    cpus: int = Field(2, ge=1, le=MAX_CPUS, description=f"virtual CPUs per node, 1 to {MAX_CPUS}")
    memory_mb: int = Field(2048, ge=256, le=MAX_MEMORY_MB, description="memory per node in MB, a multiple of 4")
    config: Text | None = Field(None, description="the node config: a cloud-config or an Ignition config (JSON)")
    network: Network = Field(default_factory=Network)
    linked_clone: bool = False

    @field_validator("memory_mb")
    @classmethod
    def _in_4_mb_steps(cls, value: int) -> int:
        if value % 4:
            fit = value - value % 4
            raise ValueError(f"{value} is not a multiple of 4, which ESXi refuses; use {fit} or {fit + 4}")
        return value


class Etcd(Section):
    bootstrap: Literal["static", "discovery"] = "static"
    discovery: Text | None = Field(None, description="a discovery URL, for bootstrap: discovery")
    client_port: int = Field(2379, ge=1, le=65535)
    peer_port: int = Field(2380, ge=1, le=65535)
    image: Annotated[Text, AfterValidator(_image)] | None = Field(
        None, description="etcd's image: ETCD_IMAGE for Flatcar's etcd-member.service (a registry mirror); on Fedora"
        " CoreOS the image vmcoreos's podman unit runs (default quay.io/coreos/etcd:v3.5.17, pinned by digest)"
    )
    scheme: Literal["http", "https"] | None = Field(None, description="default: https with ca_file, else http")
    ca_file: Text | None = Field(None, description="CA that signed etcd's client certificates")

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir")
        if base is not None and not resolve(base, value).is_file():
            raise ValueError(f"etcd.ca_file {resolve(base, value)} does not exist; fix the path in the cluster file")
        return value

    @model_validator(mode="after")
    def _ca_file_needs_https(self) -> "Etcd":
        if self.ca_file is not None and self.scheme == "http":
            raise KeyProblem("ca_file", "etcd.ca_file is set but etcd.scheme is http; set etcd.scheme: https or drop ca_file")
        return self


class Wait(Section):
    """How long each phase may take. Only joining has a fixed time; the clones and the upload before it
    are given up only when they stop making progress, since at real speed they take minutes."""

    timeout: float = Field(600.0, gt=0, description="seconds each node has to become a healthy etcd member,"
                           " counted from when it is cloned and powered on")
    task_stall: float = Field(600.0, gt=0, description="seconds a clone or import may show no progress in vCenter"
                              " (info.progress or state) before it is given up; full clones may take much longer")
    upload_stall: float = Field(300.0, gt=0, description="seconds the OVA upload to the ESXi host may move no"
                                " bytes before it is cut and started over")


class ClusterFile(Section):
    """A vmcoreos cluster file (`vmcoreos init` writes an example)."""

    model_config = ConfigDict(
        title="vmcoreos cluster file",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    cluster: Annotated[Text, AfterValidator(_cluster_name)] = Field(
        description="node VMs are named <cluster>-01, <cluster>-02, …", json_schema_extra={"pattern": NAME_PATTERN}
    )
    count: int = Field(3, ge=1, description="number of nodes")
    vsphere: VSphere = Field(default_factory=VSphere)
    image: Image = Field(default_factory=Image)
    node: Node = Field(default_factory=Node)
    etcd: Etcd = Field(default_factory=Etcd)
    wait: Wait = Field(default_factory=Wait)


def resolve(base: Path, value: str) -> Path:
    """A path from the cluster file: ~ expanded, relative to the file's directory."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


SCHEMA_FILE = Path(__file__).parent / "examples" / "cluster.schema.json"


def json_schema_text() -> str:
    """The shipped schema file's text; tests/test_clusterfile.py checks the file still equals it."""
    return json.dumps(ClusterFile.model_json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m vmcoreos.clusterfile_model: rewrite the shipped schema after a model change
    SCHEMA_FILE.write_text(json_schema_text())
