"""Small helpers shared by end-to-end tests: cluster files and vSphere inventory reads."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

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
