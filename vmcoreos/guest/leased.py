"""DHCP on Ignition nodes, in one boot: the node works out its leased address when etcd starts.

Ignition applies its config once, on the first boot, before any lease is known,
so the config cannot carry the node's address. Instead etcd's unit runs a small
script first (ExecStartPre=) that finds the node's IPv4 address on its NIC (by
MAC address when vmcoreos knows it, else the NIC of the default route) and
writes etcd's advertise URLs into ADDRESS_ENV, which etcd then reads: on
Flatcar through the unit's EnvironmentFile=, on Fedora CoreOS through podman's
--env-file. Membership needs no addresses in advance: the cluster bootstraps
through discovery (etcd.bootstrap: discovery, or deploy --discovery-etcd).
"""

from __future__ import annotations

import shlex

from vmcoreos.guest.cloudconfig import unit_value

ADDRESS_ENV = "/run/vmcoreos/etcd-address.env"
# Where the script lives: a writable place each distro runs programs from (Flatcar's /usr is read-only).
SCRIPT_PATHS = {"flatcar": "/opt/bin/vmcoreos-etcd-address", "fedora-coreos": "/usr/local/bin/vmcoreos-etcd-address"}
# The advertise URLs come from the script; a planned value would name no address at all.
ADVERTISE_KEYS = ("ETCD_ADVERTISE_CLIENT_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS")

SCRIPT = r"""#!/bin/sh
# vmcoreos: etcd's advertise URLs for the IPv4 address this node leased, written before etcd starts.
# usage: vmcoreos-etcd-address OUT SCHEME CLIENT_PORT PEER_PORT [MAC [NAME LIVE_PEERS]]
# With NAME (a node joining a running cluster), also ETCD_INITIAL_CLUSTER: the live peers and this node.
set -eu
out=$1 scheme=$2 client=$3 peer=$4 mac=$(printf '%s' "${5:-}" | tr 'A-F' 'a-f') name=${6:-} live=${7:-}
tries=0
while :; do
  if [ -n "$mac" ]; then
    dev=$(ip -o link show | awk -v m="link/ether $mac " 'index(tolower($0), m) { sub(/:$/, "", $2); sub(/@.*/, "", $2); print $2; exit }')
  else
    dev=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
  fi
  addr=""
  if [ -n "$dev" ]; then
    addr=$(ip -o -4 addr show dev "$dev" scope global | awk '{ split($4, a, "/"); print a[1]; exit }')
  fi
  [ -n "$addr" ] && break
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then
    echo "vmcoreos-etcd-address: no IPv4 address on ${mac:-the default route's NIC} after 120 s" >&2
    exit 1
  fi
  sleep 1
done
mkdir -p "$(dirname "$out")"
printf 'ETCD_ADVERTISE_CLIENT_URLS=%s://%s:%s\nETCD_INITIAL_ADVERTISE_PEER_URLS=http://%s:%s\n' \
  "$scheme" "$addr" "$client" "$addr" "$peer" > "$out.tmp"
if [ -n "$name" ]; then
  printf 'ETCD_INITIAL_CLUSTER=%s%s=http://%s:%s\n' "${live:+$live,}" "$name" "$addr" "$peer" >> "$out.tmp"
fi
mv "$out.tmp" "$out"
"""


def supported(distro: str) -> bool:
    return distro in SCRIPT_PATHS


def command(distro: str, *, scheme: str, client_port: int, peer_port: int, mac: str | None = None,
            joining: tuple[str, str] | None = None) -> str:
    """The ExecStartPre= command line that writes ADDRESS_ENV.

    joining: (this node's name, the live peers as name=URL,…) for a node joining a running cluster; its own
    entry in ETCD_INITIAL_CLUSTER needs its address, so the script adds it.
    """
    words = ["/bin/sh", SCRIPT_PATHS[distro], ADDRESS_ENV, scheme, str(client_port), str(peer_port)]
    if mac or joining:
        words.append(mac or "")
    if joining:
        words += list(joining)
    return unit_value("ExecStartPre", shlex.join(words))


def joining(name: str, initial_cluster: str) -> tuple[str, str]:
    """(name, the live peers) from a planned initial cluster whose own entry has no address yet."""
    live = [p for p in initial_cluster.split(",") if p and not p.startswith(name + "=")]
    return name, ",".join(live)


def without_advertise(env: dict[str, str], *, joining: bool = False) -> dict[str, str]:
    """The planned env without what the script writes (the advertise URLs; a joiner's initial cluster)."""
    drop = ADVERTISE_KEYS + (("ETCD_INITIAL_CLUSTER",) if joining else ())
    return {k: v for k, v in env.items() if k not in drop}
