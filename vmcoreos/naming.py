"""How vmcoreos names what it makes: node VMs and templates. Everything else asks here.

Names are half of how vmcoreos finds its VMs (the other half is the
vmcoreos.cluster mark), so one rule, in one place, must serve both the
name given at clone time and the pattern an inventory listing matches.
"""

from __future__ import annotations

import re


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-{index:02d}"


def node_names(cluster: str, count: int) -> list[str]:
    return [node_name(cluster, i) for i in range(1, count + 1)]


def node_index(cluster: str, name: str) -> int | None:
    """The node number in a node's name, or None for a name that is not one of cluster's nodes."""
    match = re.fullmatch(re.escape(cluster) + r"-(\d{2,})", name)
    return int(match.group(1)) if match else None


def template_name(cluster: str, distro: str, version: str) -> str:
    return f"{cluster}-template-{distro}-{version}"


def named_like_ours(cluster: str, name: str) -> bool:
    """A node or template name of this cluster (whether the VM is really ours is the mark's call)."""
    return bool(re.fullmatch(re.escape(cluster) + r"-(\d{2,}|template-.+)", name))
