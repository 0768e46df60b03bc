"""DHCP on Ignition nodes in one boot: the plan, and the node-side script run for real against a stand-in `ip`."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.parse

import pytest

from vmcoreos.guest import compose, leased, nodeconfig, podman
from vmcoreos.clusterfile import parse_cluster

DISCOVERY = "http://10.9.0.2:2379/v2/keys/_etcd/registry/abc"


def _plan(tmp_path, distro: str, doc: dict):
    (tmp_path / "node.ign").write_text(json.dumps(doc))
    settings = parse_cluster({"cluster": "lab", "count": 3, "image": {"distro": distro},
                              "etcd": {"bootstrap": "discovery", "discovery": DISCOVERY},
                              "node": {"config": "node.ign", "network": {"mode": "dhcp"}}}, base_dir=tmp_path)
    return compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)


def _files(doc) -> dict[str, str]:
    return {f["path"]: urllib.parse.unquote(f["contents"]["source"].removeprefix("data:,"))
            for f in doc["storage"]["files"]}


def test_flatcar_dhcp_ignition_is_one_config_with_the_address_step_in_the_dropin(tmp_path):
    nodes = _plan(tmp_path, "flatcar", {"ignition": {"version": "3.3.0"}})
    assert [n.address for n in nodes] == [None, None, None]
    doc = json.loads(nodes[0].config_text)
    assert "guestinfo.afterburn.initrd.network-kargs" not in nodes[0].guestinfo
    member = next(u for u in doc["systemd"]["units"] if u["name"] == "etcd-member.service")
    dropin = member["dropins"][0]["contents"]
    assert f"EnvironmentFile=-{leased.ADDRESS_ENV}\n" in dropin
    assert "ExecStartPre=/bin/sh /opt/bin/vmcoreos-etcd-address /run/vmcoreos/etcd-address.env http 2379 2380" in dropin
    assert f'Environment="ETCD_DISCOVERY={DISCOVERY}"' in dropin and "$private_ipv4" not in nodes[0].config_text
    assert "ETCD_ADVERTISE_CLIENT_URLS" not in dropin
    assert _files(doc)["/opt/bin/vmcoreos-etcd-address"] == leased.SCRIPT


def test_fcos_dhcp_passes_the_address_file_into_the_container(tmp_path):
    nodes = _plan(tmp_path, "fedora-coreos", {"ignition": {"version": "3.4.0"}})
    doc = json.loads(nodes[2].config_text)
    unit = next(u for u in doc["systemd"]["units"] if u["name"] == "etcd-member.service")["contents"]
    assert f"--env-file {leased.ADDRESS_ENV}" in unit and f"--env-file {podman.MEMBER_ENV}" in unit
    assert "ExecStartPre=/bin/sh /usr/local/bin/vmcoreos-etcd-address" in unit
    env = _files(doc)[podman.MEMBER_ENV]
    assert "ETCD_NAME=lab-03\n" in env and "ETCD_ADVERTISE" not in env


FAKE_IP = """#!/bin/sh
case "$*" in
  "-o link show") printf '1: lo: <LOOPBACK> mtu 65536\\\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\\n'
                  printf '2: ens192: <BROADCAST,UP> mtu 1500\\\\    link/ether 00:50:56:aa:00:01 brd ff:ff:ff:ff:ff:ff\\n'
                  printf '3: ens224: <BROADCAST,UP> mtu 1500\\\\    link/ether 00:50:56:aa:00:02 brd ff:ff:ff:ff:ff:ff\\n' ;;
  "-4 route show default") echo "default via 10.1.0.1 dev ens224 proto dhcp src 10.1.0.7 metric 100" ;;
  "-o -4 addr show dev ens192 scope global") echo "2: ens192    inet 10.0.0.9/24 brd 10.0.0.255 scope global dynamic ens192\\\\       valid_lft 3600sec" ;;
  "-o -4 addr show dev ens224 scope global") echo "3: ens224    inet 10.1.0.7/16 brd 10.1.255.255 scope global dynamic ens224" ;;
  *) exit 1 ;;
esac
"""


@pytest.mark.parametrize("mac, ip", [("00:50:56:AA:00:01", "10.0.0.9"), (None, "10.1.0.7")])
def test_the_script_finds_the_address_on_the_nic_with_that_mac_or_of_the_default_route(tmp_path, mac, ip):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ip").write_text(FAKE_IP)
    (bin_dir / "ip").chmod(0o755)
    script = tmp_path / "vmcoreos-etcd-address"
    script.write_text(leased.SCRIPT)
    out = tmp_path / "run" / "vmcoreos" / "etcd-address.env"
    args = ["/bin/sh", str(script), str(out), "https", "4001", "7001"] + ([mac] if mac else [])
    done = subprocess.run(args, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == textwrap.dedent(f"""\
        ETCD_ADVERTISE_CLIENT_URLS=https://{ip}:4001
        ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ip}:7001
        """)


def test_a_users_fcos_podman_unit_must_take_the_address_file_under_dhcp(tmp_path):
    from vmcoreos.errors import ConfigError

    mine = ("[Service]\nExecStart=/usr/bin/podman run --network host --env-file /etc/vmcoreos/etcd-member.env"
            " -v /var/lib/etcd:/var/lib/etcd:Z quay.io/coreos/etcd:v3.5.17\n[Install]\nWantedBy=multi-user.target\n")
    doc = {"ignition": {"version": "3.4.0"},
           "systemd": {"units": [{"name": "etcd-member.service", "enabled": True, "contents": mine}]}}
    with pytest.raises(ConfigError) as err:
        _plan(tmp_path, "fedora-coreos", doc)
    assert any(f"add --env-file {leased.ADDRESS_ENV}" in f for f in err.value.findings)
    ok = mine.replace("--env-file /etc/vmcoreos", f"--env-file {leased.ADDRESS_ENV} --env-file /etc/vmcoreos")
    doc["systemd"]["units"][0]["contents"] = ok
    assert _plan(tmp_path, "fedora-coreos", doc)[0].mac
