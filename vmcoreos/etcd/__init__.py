"""Talking to the cluster's etcd.

- client.py: the HTTP edge (one session per run, the API prefix read once per endpoint from /version,
  bounded replies, TLS from etcd.ca_file), member list/add/remove, health, leader moves.
- trust.py: what is accepted from etcd (member names vmcoreos made, http(s)://<IP>:<port> URLs).
- membership.py: the decisions: when a node has joined, health of a view, quorum, the next leader.
- keys.py: one key put and read (the data check between the steps of a roll).
- lock.py: EtcdLock, the lease lock a run holds on the cluster's own etcd.

`from vmcoreos import etcd` then `etcd.member_list(endpoint)` etc. is how the rest of vmcoreos calls it.
"""

from vmcoreos.etcd.client import (
    MAX_REPLY_BYTES,
    RECONFIG_PATIENCE,
    TIMEOUT,
    Client,
    EtcdBusy,
    default_client,
    healthy,
    member_add,
    member_list,
    member_remove,
    move_leader,
    use_ca,
    v3_prefix,
)
from vmcoreos.etcd.keys import get_key, put_key
from vmcoreos.etcd.lock import LOCK_PREFIX, EtcdLock
from vmcoreos.etcd.membership import (
    JoinState,
    check_removal,
    first_view,
    health,
    join_state,
    listed,
    needs_new_leader,
    next_leader,
    probe_join,
    quorum,
)
from vmcoreos.etcd.trust import MAX_NODE_INDEX, check_view, same_host, url_host
from vmcoreos.etcd.view import ClusterView, Member

__all__ = [
    "MAX_NODE_INDEX", "MAX_REPLY_BYTES", "RECONFIG_PATIENCE", "TIMEOUT", "LOCK_PREFIX",
    "Client", "ClusterView", "EtcdBusy", "EtcdLock", "JoinState", "Member",
    "check_removal", "check_view", "default_client", "first_view", "get_key", "put_key", "health", "healthy", "join_state", "listed",
    "member_add", "member_list", "member_remove", "move_leader", "needs_new_leader", "next_leader",
    "probe_join", "quorum", "same_host", "url_host", "use_ca", "v3_prefix",
]
