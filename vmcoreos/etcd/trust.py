"""What vmcoreos accepts from etcd: member names it made, URLs that are http(s)://<IP>:<port>.

Whatever etcd answers may be another tenant's etcd behind a stale DHCP
address, or a member that named itself to inject unit lines: names go into
the next node's systemd drop-in and set the node count, URLs are where the
tool sends requests, so both are checked before either is used.
"""

from __future__ import annotations

import ipaddress
import re

from vmcoreos import naming
from vmcoreos.errors import EtcdError
from vmcoreos.etcd.view import ClusterView

# Node numbers above this are refused from etcd: a member named lab-99999999 must not set the node count.
MAX_NODE_INDEX = 999

_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):([0-9]{1,5})")


def url_host(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP literal of an http(s)://<IP>:<port> URL; None for anything else (names, paths, userinfo)."""
    match = _URL.fullmatch(url)
    if not match or not 0 < int(match.group(2)) < 65536:
        return None
    try:
        return ipaddress.ip_address(match.group(1).strip("[]"))
    except ValueError:
        return None


def same_host(url: str, ip: str | None) -> bool:
    """True when url's host is exactly the address ip (parsed, so 10.0.0.2 never matches 10.0.0.21)."""
    host = url_host(url)
    try:
        return host is not None and ip is not None and host == ipaddress.ip_address(ip)
    except ValueError:
        return False


def check_view(view: ClusterView, cluster: str, endpoint: str) -> ClusterView:
    """Refuse a member list with names or URLs vmcoreos would never have made.

    Only `<cluster>-NN` (NN at most MAX_NODE_INDEX) and http(s)://<IP>:<port>
    pass. A member added but not started yet has no name, which is fine.
    """
    for m in view.members:
        index = naming.node_index(cluster, m.name)
        if m.name and (index is None or index > MAX_NODE_INDEX):
            raise EtcdError(
                f"etcd at {endpoint} lists member {m.name!r}, which is not a {cluster}-NN node name (NN at most"
                f" {MAX_NODE_INDEX}); remove that member with etcdctl, or point the cluster file at this"
                " cluster's own etcd"
            )
        bad = [u for u in m.peer_urls + m.client_urls if url_host(u) is None]
        if bad:
            raise EtcdError(
                f"etcd at {endpoint} lists member {m.name or m.id!r} with URL {bad[0]!r}, not"
                " http(s)://<IP>:<port>; remove that member with etcdctl, then run again"
            )
    return view
