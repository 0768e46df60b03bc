"""What vmcoreos knows of one VM, and the ownership marks it reads: plain values, no pyVmomi.

The planners (cluster/plan.py, cluster/desired.py) decide from these alone,
so they stay pure functions that tests feed tables; vsphere/vms.py reads them
from vCenter and does the changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmcoreos.errors import OwnershipError

MARK_CLUSTER = "vmcoreos.cluster"
MARK_ROLE = "vmcoreos.role"  # "node" or "template"
MARK_DISTRO = "vmcoreos.distro"
MARK_VERSION = "vmcoreos.image_version"
MARK_SHA512 = "vmcoreos.image_sha512"
MARK_DIGEST = "vmcoreos.config_digest"
# When the image's signature was made (epoch seconds): a later image may not be signed before it.
MARK_SIGNED = "vmcoreos.image_signed"
# Per-section digests of the rendered config ("users=ab12…;write_files=…"): what changed, not only that it did.
MARK_SECTIONS = "vmcoreos.config_sections"
# The etcd cluster the node belongs to (hex ID): membership changes are refused against any other.
MARK_ETCD_CLUSTER_ID = "vmcoreos.etcd_cluster_id"


@dataclass
class VmInfo:
    ref: Any
    name: str
    template: bool
    power: str
    tools: str | None
    ip: str | None
    extra: dict[str, str] = field(default_factory=dict)
    instance_uuid: str | None = None
    # Hardware and where it runs, as vCenter reports them (None/() when not read): what the diff compares.
    cpus: int | None = None
    memory_mb: int | None = None
    networks: tuple[str, ...] = ()  # morefs of the networks its NICs are on
    host: Any = None  # the HostSystem it runs on (runtime.host)
    datastores: tuple = ()  # the Datastores its files are on (refs; a moref string in tests)

    @property
    def moref(self) -> str:
        return getattr(self.ref, "_moId", "") or ""

    @property
    def cluster(self) -> str | None:
        return self.extra.get(MARK_CLUSTER)

    @property
    def role(self) -> str | None:
        return self.extra.get(MARK_ROLE)

    def owned_by(self, cluster: str) -> bool:
        return self.cluster == cluster


def require_owned(vm: VmInfo, cluster: str, action: str) -> None:
    if not vm.owned_by(cluster):
        whose = f"cluster {vm.cluster!r}" if vm.cluster else "no vmcoreos cluster"
        raise OwnershipError(
            f"refusing to {action} VM {vm.name!r}: it belongs to {whose}, not {cluster!r};"
            " rename or move it, vmcoreos never touches VMs it did not create"
        )


def marks(cluster: str, role: str, **values: str | None) -> dict[str, str]:
    out = {MARK_CLUSTER: cluster, MARK_ROLE: role}
    keys = {"distro": MARK_DISTRO, "version": MARK_VERSION, "sha512": MARK_SHA512, "digest": MARK_DIGEST,
            "signed": MARK_SIGNED, "sections": MARK_SECTIONS}
    for key, value in values.items():
        if value is not None:
            out[keys[key]] = value
    return out
