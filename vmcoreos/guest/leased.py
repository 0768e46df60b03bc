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
# usage: vmcoreos-etcd-address OUT SCHEME CLIENT_PORT PEER_PORT [MAC]
set -eu
out=$1 scheme=$2 client=$3 peer=$4 mac=$(printf '%s' "${5:-}" | tr 'A-F' 'a-f')
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
mv "$out.tmp" "$out"
"""


def supported(distro: str) -> bool:
    return distro in SCRIPT_PATHS


def command(distro: str, *, scheme: str, client_port: int, peer_port: int, mac: str | None = None) -> str:
    """The ExecStartPre= command line that writes ADDRESS_ENV."""
    words = ["/bin/sh", SCRIPT_PATHS[distro], ADDRESS_ENV, scheme, str(client_port), str(peer_port)]
    if mac:
        words.append(mac)
    return unit_value("ExecStartPre", shlex.join(words))


def without_advertise(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ADVERTISE_KEYS}
