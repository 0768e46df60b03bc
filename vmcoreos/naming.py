"""How vmcoreos names what it makes: node VMs, templates, the vSphere lock folder. Everything else asks here.

Names are half of how vmcoreos finds its VMs (the other half is the
vmcoreos.cluster mark), so one rule, in one place, must serve both the
name given at clone time and the pattern an inventory listing matches.
"""

from __future__ import annotations

import hashlib
import re

from vmcoreos.errors import ConfigError

# vCenter refuses entity names of 80 characters or more (InvalidName), and only at clone or import time.
MAX_ENTITY_NAME = 79
# A node's name is its hostname: one DNS label (RFC 1035) of at most 63 characters.
MAX_HOSTNAME = 63


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-{index:02d}"


def node_names(cluster: str, count: int) -> list[str]:
    return [node_name(cluster, i) for i in range(1, count + 1)]


def node_index(cluster: str, name: str) -> int | None:
    """The node number in a node's name, or None for a name that is not one of cluster's nodes."""
    match = re.fullmatch(re.escape(cluster) + r"-([0-9]{2,})", name)
    return int(match.group(1)) if match else None


def template_name(cluster: str, distro: str, version: str) -> str:
    """`<cluster>-template-<distro>-<version>`, or, when that is too long for vCenter, its first
    70 characters and a hash of the whole: the same inputs give the same name on every run and host.

    A name that fits is left as it always was, so templates imported before this rule are still found.
    """
    return _fit(f"{cluster}-template-{distro}-{version}")


def lock_folder_name(cluster: str) -> str:
    """The folder whose existence is the cluster's vSphere lock (vsphere/folderlock.py): one fixed name per
    cluster, so two runs creating it collide; prefixed, so it never reads as one of the cluster's nodes."""
    return _fit(f"vmcoreos-lock-{cluster}")


def _fit(full: str) -> str:
    """full, or, when vCenter would refuse it as too long, its first characters and a hash of the whole."""
    if len(full) <= MAX_ENTITY_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return full[: MAX_ENTITY_NAME - len(digest) - 1].rstrip("-.") + "-" + digest


def check_node_names(cluster: str, count: int) -> None:
    """Refuse, before any download, node names vCenter or the guest's hostname would refuse later."""
    longest = node_name(cluster, count)
    limit = min(MAX_ENTITY_NAME, MAX_HOSTNAME)
    if len(longest) > limit:
        raise ConfigError(
            f"node name {longest!r} is {len(longest)} characters; node names are hostnames (at most {limit}),"
            " so shorten the cluster name or lower the count"
        )


def named_like_ours(cluster: str, name: str) -> bool:
    """A node or template name of this cluster (whether the VM is really ours is the mark's call)."""
    return bool(re.fullmatch(re.escape(cluster) + r"-([0-9]{2,}|template-.+)", name))
