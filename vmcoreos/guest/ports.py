"""What convert says about etcd's ports: the cluster file must name the ports the converted config uses, and
clients of the ports the old etcd served by default need a way to keep working."""

from __future__ import annotations

import re

from vmcoreos.guest.changes import NOTE, Change


def _note(path: str, message: str):
    return Change(0, NOTE, path, message)


def port_notes(env: dict[str, str]) -> list:
    """deploy builds member URLs and waits on the cluster file's ports, so they must be the config's."""
    out = []
    for var, key, default in (("ETCD_ADVERTISE_CLIENT_URLS", "client_port", 2379),
                              ("ETCD_INITIAL_ADVERTISE_PEER_URLS", "peer_port", 2380)):
        m = re.search(r":([0-9]+)(?:/|,|\Z)", env.get(var, ""))
        if m and int(m.group(1)) != default:
            out.append(_note(var, f"etcd uses port {m.group(1)}; set etcd.{key}: {m.group(1)} in the"
                              " cluster file"))
    return out


def default_port_notes(legacy: bool) -> list:
    """Ports the old etcd served without being told, which clients may still use: etcd 0.4 served clients on 4001
    and peers on 7001, etcd2 clients on 2379 and 4001; Flatcar's etcd serves 2379/2380 only."""
    if legacy:
        old = "etcd 0.4 served clients on port 4001 and peers on 7001"
    else:
        old = "etcd2 served clients on port 4001 as well as 2379"
    return [_note("etcd ports", f"{old}; etcd now serves 2379/2380. For clients that still use 4001,"
                   " either add a second client URL in the drop-in (Environment=\"ETCD_LISTEN_CLIENT_URLS="
                   "http://0.0.0.0:2379,http://0.0.0.0:4001\") or keep the old ports with etcd.client_port: 4001"
                   " and etcd.peer_port: 7001 in the cluster file")]
