"""Small helpers shared by end-to-end tests: cluster files, image flags, deploys, vSphere inventory reads and
the checks that three nodes joined."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import requests
import yaml


def write_cluster(path: Path, subnet: str, *, name: str = "lab", count: int = 3, config: str | None = None,
                  extra: dict | None = None) -> Path:
    data = {
        "cluster": name,
        "count": count,
        "vsphere": {"datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0", "network": "VM Network"},
        "node": {"cpus": 1, "memory_mb": 512, "network": {"mode": "static", "addresses": [f"{subnet}.11-{subnet}.40/8"]}},
        "etcd": {"bootstrap": "static"},
        "wait": {"timeout": 60},
    }
    if config:
        data["node"]["config"] = config
    for key, value in (extra or {}).items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.__setitem__(key, value)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def inventory(vcsim) -> dict[str, dict]:
    """name -> {template, power, extra, cpus, memory_mb, networks} for every VM in the simulator."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        out = {}
        for vm in view.view:
            try:
                extra = {o.key: o.value for o in (vm.config.extraConfig or [])}
                out[vm.name] = {"template": vm.config.template, "power": vm.runtime.powerState, "extra": extra,
                                "cpus": vm.config.hardware.numCPU, "memory_mb": vm.config.hardware.memoryMB,
                                "networks": sorted(n.name for n in vm.network)}
            except vim.ManagedObjectNotFound:
                continue  # deleted while we were listing
        view.Destroy()
        return out
    finally:
        Disconnect(si)


@contextlib.contextmanager
def api_vm(vcsim, name: str) -> Iterator:
    """The first VM called name anywhere in the simulator, on an API session of its own for the block."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.name == name)
        view.Destroy()
        yield vm
    finally:
        Disconnect(si)


def plant_vm(vcsim, name: str, extra: dict | None = None, *, folder: str | None = None, template: bool = False) -> str:
    """A VM the tool did not create, made straight through the API (in a new subfolder of the VM folder if
    folder is given, a template if asked): what another vCenter user could plant. Returns its moref."""
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    with api_vm(vcsim, "DC0_H0_VM0") as src:
        target = src.parent.CreateFolder(folder) if folder else src.parent
        config = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in (extra or {}).items()])
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), config=config, template=template)
        task = src.CloneVM_Task(folder=target, name=name, spec=spec)
        WaitForTask(task)
        return task.info.result._moId


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def deploy_three(cli, cluster, signed_ova, vcsim, *extra):
    """`deploy --count 3 --json` of the given OVA, trusting its key."""
    return cli(
        ["deploy", "-c", str(cluster), "--count", "3", "--ova", str(signed_ova["ova"]),
         "--trusted-key", str(signed_ova["key"]), "--json", *extra],
        env=vcsim.env(),
    )


def member_list(endpoint: str) -> dict[str, dict]:
    """The members an etcd endpoint lists (v3 gateway), by name."""
    listing = requests.post(f"{endpoint}/v3/cluster/member/list", json={}, timeout=5).json()
    return {m.get("name", ""): m for m in listing["members"]}


def assert_three_joined(subnet, port=2379, peer_port=2380):
    """lab-01..03 at .11-.13 of the subnet are healthy members with exactly those URLs; the member list."""
    ips = {f"lab-0{i}": f"{subnet}.1{i}" for i in (1, 2, 3)}
    members = member_list(f"http://{ips['lab-01']}:{port}")
    assert sorted(members) == ["lab-01", "lab-02", "lab-03"]
    for name, ip in ips.items():
        assert members[name]["clientURLs"] == [f"http://{ip}:{port}"]
        assert members[name]["peerURLs"] == [f"http://{ip}:{peer_port}"]
        assert requests.get(f"http://{ip}:{port}/health", timeout=5).json()["health"] == "true"
    return members


def assert_guests_ok(guestsim, kind: str):
    """Each of lab-01..03 read its config of that kind without an error and took its name."""
    for name in ("lab-01", "lab-02", "lab-03"):
        node = guestsim.node(name)
        assert node["errors"] == [], node["errors"]
        assert node["config_kind"] == kind and node["hostname"] == name


def image_args(ova):
    """The flags that deploy a signed test OVA with its own signature and key."""
    return ["--ova", str(ova["ova"]), "--sig", str(ova["sig"]), "--trusted-key", str(ova["key"])]


# Fedora CoreOS: the build the test stream names, and a config that only adds a user.
FCOS_VERSION = "43.20261115.3.0"
USER_ONLY = {"ignition": {"version": "3.4.0"},
             "passwd": {"users": [{"name": "ops", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@lab"]}]}}


def fcos_cluster(tmp_path, subnet, server, signer, *, network=None, etcd=None) -> Path:
    """A cluster file for Fedora CoreOS from the test stream on server, trusting the test key; node.ign adds a user."""
    key = signer.write_public_key(tmp_path / "fedora-test-key.asc")
    (tmp_path / "node.ign").write_text(json.dumps(USER_ONLY, indent=2))
    # The local server is http; the official stream is https and needs no allow_unsigned_version.
    image = {"distro": "fedora-coreos", "channel": "stable", "base_url": f"{server.url}/streams/",
             "trusted_keys": [f"fedora-coreos={key}"], "allow_unsigned_version": True}
    extra = {"image": image}
    if etcd:
        extra["etcd"] = etcd
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.ign", extra=extra)
    if network:
        import yaml

        data = yaml.safe_load(cluster.read_text())
        data["node"]["network"] = network
        cluster.write_text(yaml.safe_dump(data, sort_keys=False))
    return cluster
