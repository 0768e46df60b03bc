"""The guest simulator as a subprocess against the simulator, booting a node with a real etcd
(tests/harness/guestsim.py; its units are tests/harness/test_guestsim.py)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from tests.harness.guestboots import b64, ETCD2_CONFIG, gz_b64, wait_for
from tests.harness.services import stop_process


REPO = Path(__file__).resolve().parents[2]
VCSIM = REPO / "build" / "vcsim"


@pytest.fixture
def vcsim(tmp_path):
    work = tmp_path / "vcsim"
    work.mkdir()
    log = open(work / "vcsim.log", "wb")
    proc = subprocess.Popen([str(VCSIM), "-listen", "127.0.0.1:0", "-cert-out", str(work / "cert.pem"),
                             "-info-out", str(work / "info")], stdout=log, stderr=subprocess.STDOUT)
    try:
        info = wait_for(lambda: (work / "info").exists() or proc.poll() is not None, 20, "vcsim")
        assert proc.poll() is None, (work / "vcsim.log").read_text()
        assert info
        values = dict(line.split("=", 1) for line in (work / "info").read_text().split())
        yield {"url": values["url"], "cert": str(work / "cert.pem")}
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture
def guestsim(vcsim, tmp_path, subnet):
    state = tmp_path / "state"
    stderr = open(tmp_path / "guestsim.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.guestsim", "--url", vcsim["url"], "--ca-file", vcsim["cert"],
         "--username", "user", "--password-env", "GUESTSIM_TEST_PASSWORD", "--state-dir", str(state),
         "--dhcp-range", f"{subnet}.10-{subnet}.250"],
        cwd=REPO, env={**os.environ, "GUESTSIM_TEST_PASSWORD": "pass"},
        stdout=subprocess.DEVNULL, stderr=stderr)
    children: set[psutil.Process] = set()
    try:
        wait_for(lambda: (state / "ready").exists() or proc.poll() is not None, 20, "guestsim ready")
        assert proc.poll() is None, (tmp_path / "guestsim.log").read_text()
        yield {"state": state, "proc": proc, "children": children}
    finally:
        try:
            children.update(psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        code = stop_process(proc, timeout=15)
        for child in children:  # only if guestsim failed to clean up after itself
            if child.is_running():
                child.kill()
        stderr.close()
        assert code == 0, (tmp_path / "guestsim.log").read_text()


def free_loopback_ip() -> str:
    """A 127.0.1.x whose etcd ports are free right now."""
    for last in range(100, 250):
        ip = f"127.0.1.{last}"
        try:
            for port in (2379, 2380):
                with socket.socket() as sock:
                    sock.bind((ip, port))
        except OSError:
            continue
        return ip
    raise AssertionError("no free 127.0.1.x address for etcd")


def connect(vcsim):
    from pyVim.connect import SmartConnect

    parts = urlsplit(vcsim["url"])
    return SmartConnect(host=parts.hostname, port=parts.port, user="user", pwd="pass",
                        sslContext=ssl.create_default_context(cafile=vcsim["cert"]))


def clone(si, name: str, extra: dict[str, str]):
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    source = next(vm for vm in view.view if vm.name == "DC0_H0_VM0")
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), config=vim.vm.ConfigSpec(
        extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in extra.items()]))
    task = source.CloneVM_Task(folder=source.parent, name=name, spec=spec)
    WaitForTask(task)
    return task.info.result


def etcd_health(ip: str):
    try:
        response = requests.get(f"http://{ip}:2379/health", timeout=1)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def test_guest_simulator_boots_a_node_with_a_real_etcd(guestsim, vcsim, subnet):
    from pyVim.task import WaitForTask

    ip = free_loopback_ip()
    user_data = ETCD2_CONFIG.replace("$private_ipv4", ip).replace("node1", "sim1")
    si = connect(vcsim)
    node = clone(si, "sim1", {
        "guestinfo.coreos.config.data": gz_b64(user_data),
        "guestinfo.coreos.config.data.encoding": "gzip+base64",
        "guestinfo.interface.0.name": "ens192",
        "guestinfo.interface.0.ip.0.address": f"{ip}/8",
    })
    broken = clone(si, "broken1", {"guestinfo.coreos.config.data": b64(user_data),
                                   "guestinfo.coreos.config.data.encoding": "x"})
    WaitForTask(node.PowerOnVM_Task())
    WaitForTask(broken.PowerOnVM_Task())

    wait_for(lambda: node.guest.toolsRunningStatus == "guestToolsRunning", 15, "tools running")
    assert node.guest.ipAddress == ip and node.guest.hostName == "sim1"
    assert wait_for(lambda: etcd_health(ip), 15, "etcd health") == {"health": "true"}

    record_path = guestsim["state"] / "nodes" / "sim1.json"
    record = json.loads(record_path.read_text())
    assert record["user_data"] == user_data and record["encoding"] == "gzip+base64"
    assert record["config_kind"] == "cloud-config" and record["errors"] == []
    pid, data_dir = record["etcd"]["pid"], Path(record["etcd"]["data_dir"])
    etcd = psutil.Process(pid)
    guestsim["children"].add(etcd)
    assert etcd.cmdline()[0] == "/usr/bin/etcd" and data_dir.is_dir()

    # Rejected user-data: the VM still boots, with a lease and no etcd.
    wait_for(lambda: broken.guest.toolsRunningStatus == "guestToolsRunning", 15, "broken tools")
    assert broken.guest.ipAddress == f"{subnet}.10"
    broken_record = json.loads((guestsim["state"] / "nodes" / "broken1.json").read_text())
    assert any('Unsupported encoding "x"' in e for e in broken_record["errors"])
    assert broken_record["etcd"] is None

    WaitForTask(node.PowerOffVM_Task())
    wait_for(lambda: node.guest.toolsRunningStatus == "guestToolsNotRunning", 15, "tools stopped")
    assert not etcd.is_running() and data_dir.is_dir()  # the disk survives a power-off
    WaitForTask(node.Destroy_Task())
    wait_for(lambda: not record_path.exists(), 15, "node record removed")
    assert not data_dir.exists() and not data_dir.parent.exists()
    assert etcd_health(ip) is None
    WaitForTask(broken.PowerOffVM_Task())
    WaitForTask(broken.Destroy_Task())
