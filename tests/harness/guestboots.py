"""Configs and boots the guest simulator's tests share: the parser run in-process on guestinfo (boot_with,
ignition_boot), an etcd2 cloud-config, a minimal Ignition config, Fedora CoreOS's podman unit, and waiting for
what an end-to-end boot starts (stopping it: services.stop_process).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.parse

from tests.harness import guestsim as gs

NIC = gs.Nic(name="ens192", mac="00:50:56:aa:bb:cc")


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def gz_b64(text: str) -> str:
    return b64(gzip.compress(text.encode()))


def boot_with(extra: dict[str, str], enabled_before=()) -> gs.BootResult:
    """simulate_boot with these extraConfig keys; a DHCP lease is 127.0.200.10."""
    return gs.simulate_boot(extra, NIC, lease=lambda: "127.0.200.10", enabled_before=enabled_before)


ETCD2_BODY = """hostname: node1
coreos:
  etcd2:
    name: node1
    advertise_client_urls: http://$private_ipv4:2379
    listen_client_urls: http://0.0.0.0:2379
    initial_advertise_peer_urls: http://$private_ipv4:2380
    listen_peer_urls: http://$private_ipv4:2380
    initial_cluster: node1=http://$private_ipv4:2380
    initial_cluster_state: new
    strict_reconfig_check: true
    debug: false
    heartbeat_interval: 200
    election-timeout: 2000
  units:
    - name: etcd2.service
      command: start
"""
ETCD2_CONFIG = "#cloud-config\n" + ETCD2_BODY


def ignition(version="3.3.0", enabled=True, hostname_source="data:,ign-node%0A"):
    dropin = ("[Service]\nEnvironment=ETCD_NAME=ign-node\n"
              'Environment="ETCD_INITIAL_CLUSTER=ign-node=http://127.0.1.51:2380"\n')
    unit = {"name": "etcd-member.service", "dropins": [{"name": "20-etcd.conf", "contents": dropin}]}
    if enabled is not None:
        unit["enabled"] = enabled
    return json.dumps({
        "ignition": {"version": version},
        "storage": {"files": [{"path": "/etc/hostname", "contents": {"source": hostname_source}}]},
        "systemd": {"units": [unit]},
    })


KARGS = "ip=127.0.1.51::127.0.0.1:255.0.0.0:kargs-host:ens192:off nameserver=127.0.0.53"


def ignition_boot(config: str, kargs: str = KARGS) -> gs.BootResult:
    return boot_with({"guestinfo.ignition.config.data": b64(config),
                      "guestinfo.ignition.config.data.encoding": "base64",
                      "guestinfo.afterburn.initrd.network-kargs": kargs,
                      "guestinfo.hostname": "ignored-by-ignition"})


MEMBERSHIP = "ETCD_NAME=n1\nETCD_INITIAL_CLUSTER=n1=http://127.0.1.51:2380\n"
RUN = ("/usr/bin/podman run --name etcd-member --rm --network host --volume /var/lib/etcd:/var/lib/etcd:Z"
       " --env ETCD_DATA_DIR=/var/lib/etcd {opts} quay.io/coreos/etcd:v3.5.17 /usr/local/bin/etcd")


def unit_text(opts: str = "--env-file /etc/etcd.env", *, mkdir=True, install=True) -> str:
    return ("[Service]\n" + ("ExecStartPre=/usr/bin/mkdir -p /var/lib/etcd\n" if mkdir else "")
            + "ExecStart=" + RUN.format(opts=opts) + "\n" + ("[Install]\nWantedBy=multi-user.target\n" if install else ""))


def fcos_config(unit: str, *, env_file: str | None = MEMBERSHIP, dropin: str | None = None) -> str:
    files = [{"path": "/etc/hostname", "contents": {"source": "data:,n1%0A"}}]
    if env_file is not None:
        files.append({"path": "/etc/etcd.env", "contents": {"source": "data:," + urllib.parse.quote(env_file)}})
    member = {"name": "etcd-member.service", "enabled": True, "contents": unit}
    if dropin:
        member["dropins"] = [{"name": "90-env.conf", "contents": dropin}]
    return json.dumps({"ignition": {"version": "3.4.0"}, "storage": {"files": files},
                       "systemd": {"units": [member]}})


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
