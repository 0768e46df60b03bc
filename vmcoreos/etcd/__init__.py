"""Talking to the cluster's etcd.

- client.py: the HTTP edge (one session per run, the API prefix read once per endpoint from /version,
  bounded replies, TLS from etcd.ca_file), member list/add/remove, health, leader moves.
- trust.py: what is accepted from etcd (member names vmcoreos made, http(s)://<IP>:<port> URLs).
- membership.py: the decisions: when a node has joined, health of a view, quorum, the next leader.
- datacheck.py: one key put and read (the data check between the steps of a roll).
- leaselock.py: EtcdLock, the lease lock a run holds on the cluster's own etcd.

`from vmcoreos import etcd` is how the rest of vmcoreos calls it. A run carries its own `etcd.Client` (one
session, its TLS trust) in `run.members.client`; nothing here is swapped module-wide.
"""

from vmcoreos.etcd.client import (
    MAX_REPLY_BYTES,
    RECONFIG_PATIENCE,
    TIMEOUT,
    Client,
    EtcdBusy,
    v3_prefix,
)
from vmcoreos.etcd.datacheck import get_key, put_key
from vmcoreos.etcd.leaselock import LOCK_PREFIX, EtcdLock
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
    "check_removal", "check_view", "first_view", "get_key", "health", "join_state", "listed", "needs_new_leader",
    "next_leader", "probe_join", "put_key", "quorum", "same_host", "url_host", "v3_prefix",
]
