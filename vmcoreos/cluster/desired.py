"""One desired state, one diff: what the cluster file asks of every node, and how a node differs from it.

Pure: a node is a VmInfo (its marks and the hardware vCenter reported), the
wish is a Desired plus the node's rendered NodeConfig. Each difference is a
reason a person can read ("cpus 2 → 4"), and says whether a reconfigure can
fix it (CPUs, memory) or the node needs replacing (image, config, network,
datastore: a clone is the only way vmcoreos changes those, since the guest
applies its config at first boot).

Not compared, and why: the disk size (the cluster file has no setting for
it; every node gets the template's disk), the folder (only VMs directly in
vsphere.folder are listed as nodes, so a node elsewhere is not the cluster's),
the host (the placement planner decides it). The etcd settings fixed at
bootstrap (ports, scheme, token, how the cluster was bootstrapped) are part of
the rendered config, so a change to them shows as a config change of the
section that carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.guest.sections import changed_sections, config_sections
from vmcoreos.guest.sections import sections_mark as _mark
from vmcoreos.vsphere.vminfo import MARK_DIGEST, MARK_DISTRO, MARK_SECTIONS, MARK_VERSION, VmInfo

_RELEASE = re.compile(r"[0-9]+(\.[0-9]+)*")  # ASCII digits only: \d takes other scripts' digits


@dataclass(frozen=True)
class Desired:
    """What every node should be, apart from its own rendered config."""

    distro: str
    version: str | None  # the image release or build nodes should run; None: not compared
    cpus: int
    memory_mb: int
    network: str | None = None  # the port group's moref; None: not compared
    network_name: str = ""
    datastores: tuple[str, ...] = ()  # morefs of vsphere.datastores (placement spreads nodes over them); (): not compared
    datastore_names: str = ""  # how the reason names them
    names: dict[str, str] = field(default_factory=dict, compare=False)  # moref -> name, for the reasons


@dataclass(frozen=True)
class Drift:
    replace: tuple[str, ...] = ()  # reasons only a new node fixes
    reconfigure: tuple[str, ...] = ()  # reasons a reconfigure fixes

    @property
    def action(self) -> str | None:
        return "replace" if self.replace else "reconfigure" if self.reconfigure else None

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.replace + self.reconfigure

    def __str__(self) -> str:
        return "; ".join(self.reasons)


def pinned_version(settings) -> str | None:
    """The release the cluster file pins (image.version), which deploy holds nodes to; None for a channel's
    current release or a local OVA (rolling onto new releases is rebuild's, from cron)."""
    image = settings.image
    return None if image.ova or image.version in (None, "", "current") else image.version


def runs_older(vm: VmInfo, distro: str, version: str) -> bool:
    """True when the node should move to the target image (distro, version).

    Release versions (4593.2.5) only move forward, so a channel that briefly
    serves an older release never triggers a downgrade; local builds have no
    order, so any different build counts.
    """
    current = vm.extra.get(MARK_VERSION)
    if current is None:
        return True
    if current == version:
        return False
    if vm.extra.get(MARK_DISTRO) != distro:
        return True
    if _RELEASE.fullmatch(current) and _RELEASE.fullmatch(version):
        return tuple(map(int, current.split("."))) < tuple(map(int, version.split(".")))
    return True


def drift(vm: VmInfo, config: NodeConfig, want: Desired) -> Drift:
    """How vm differs from what the cluster file asks of it, as reasons; an empty Drift when it does not."""
    replace: list[str] = []
    if want.version is not None and runs_older(vm, want.distro, want.version):
        current = vm.extra.get(MARK_VERSION) or "an unrecorded image"
        replace.append(f"image {current} → {want.version}")
    mark = vm.extra.get(MARK_SECTIONS)
    if mark:
        # Compared section by section, without the membership fixed at bootstrap (it changes with each scale).
        changed = changed_sections(mark, sections(config))
        if changed:
            replace.append(f"config changed ({', '.join(changed)})")
    elif vm.extra.get(MARK_DIGEST) != config.digest:  # a node made before the sections mark: the whole digest
        replace.append("config changed")
    if want.network is not None and vm.networks and want.network not in vm.networks:
        was = ", ".join(want.names.get(n, n) for n in vm.networks)
        replace.append(f"network {was} → {want.network_name or want.network}")
    on = [_moref(d) for d in vm.datastores]
    if want.datastores and on and not set(on) & set(want.datastores):
        was = ", ".join(want.names.get(d, d) for d in on)
        replace.append(f"datastore {was} → {want.datastore_names or ', '.join(want.datastores)}")
    reconfigure: list[str] = []
    if vm.cpus is not None and vm.cpus != want.cpus:
        reconfigure.append(f"cpus {vm.cpus} → {want.cpus}")
    if vm.memory_mb is not None and vm.memory_mb != want.memory_mb:
        reconfigure.append(f"memory {vm.memory_mb} → {want.memory_mb} MB")
    return Drift(tuple(replace), tuple(reconfigure))


def _moref(ref) -> str:
    return getattr(ref, "_moId", None) or str(ref)


# -- which part of a config changed ------------------------------------------------------------


def sections(config: NodeConfig) -> tuple[tuple[str, str], ...]:
    """The config's section digests (compose computes them without the bootstrap-only membership)."""
    return config.sections or config_sections(config.config_text, config.guestinfo, config.kind)


def sections_mark(config: NodeConfig) -> str:
    """What a node's MARK_SECTIONS records for this config."""
    return _mark(sections(config))
