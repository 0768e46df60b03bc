"""`make bench-peers`: vmcoreos deploy against Ansible's community.vmware.vmware_deploy_ovf, side by side.

The same signed OVA, 3 nodes, the same vcsim build on loopback, each run on a
fresh bed (vcsim and guest simulator):

- Ansible: a playbook looping `vmware_deploy_ovf` over 3 names, import and
  power-on only (no verification, no guestinfo, no wait for the guest), from
  its own venv (build/bench-peers-venv, made by `make bench-peers` from PyPI);
- vmcoreos: a fresh `deploy --count 3` (verification, upload, clones,
  guestinfo, power-on, wait until every node is a healthy etcd member).

Runs alternate (vmcoreos, Ansible, vmcoreos, ...) so a machine getting busier
favours neither; medians of --repeat. Target: vmcoreos >= 2.5x
faster. Prints a table, writes bench/peers.json; exits 1 on a miss only with
BENCH_STRICT=1.

    .venv/bin/python -m bench.peers [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from bench.bed import VSPHERE, Bed, Bench, MiB, Run, log, run_measured
from bench.measurements import summary
from bench.run import parse_args as bench_run_args
from tests.harness.ova_builder import build_ova
from tests.harness.services import PASSWORD, ROOT, USER
from tests.harness.signing import TestSigner
from vmcoreos.state import IMAGES_FILE

PEERS_VENV = ROOT / "build" / "bench-peers-venv"
RESULTS = ROOT / "bench" / "peers.json"
TARGET = 2.5  # Ansible's time over vmcoreos's, at least


def playbook(bed: Bed, ova: Path, names: list[str]) -> list[dict]:
    host, port = bed.vcsim.host_port
    task = {
        "name": "import the OVA and power the VM on",
        "community.vmware.vmware_deploy_ovf": {
            "hostname": host,
            "port": port,
            "username": USER,
            # From the environment, so the password is in no file the bench leaves behind.
            "password": "{{ lookup('env', 'BENCH_VSPHERE_PASSWORD') }}",
            # vcsim's certificate is self-signed; Ansible has no CA-file option for this module.
            "validate_certs": False,
            "datacenter": VSPHERE["datacenter"],
            "cluster": VSPHERE["cluster"],
            "datastore": VSPHERE["datastore"],
            "networks": {VSPHERE["network"]: VSPHERE["network"]},
            "disk_provisioning": "thin",
            "ovf": str(ova),
            "name": "{{ item }}",
            "power_on": True,
            "wait_for_ip_address": False,
        },
        "loop": names,
    }
    return [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [task]}]


def ansible_loop(bed: Bed, ova: Path, work: Path) -> Run:
    book = work / "deploy-ovf.yml"
    book.write_text(yaml.safe_dump(playbook(bed, ova, [f"peer-{i}" for i in (1, 2, 3)]), sort_keys=False))
    python = PEERS_VENV / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_", "ANSIBLE_"))}
    env.update(
        BENCH_VSPHERE_PASSWORD=PASSWORD,
        ANSIBLE_HOME=str(work / "ansible-home"),  # nothing of this run in ~/.ansible
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(work / "ansible-tmp"),  # "remote" is this machine: connection local
        ANSIBLE_PYTHON_INTERPRETER=str(python),  # the venv with pyvmomi runs the module
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{python.parent}:{env.get('PATH', '')}",
    )
    run = run_measured([str(PEERS_VENV / "bin" / "ansible-playbook"), "-i", "localhost,", str(book)], env, 900)
    if run.code != 0:
        raise RuntimeError(f"ansible-playbook exited with {run.code}: {(run.stdout + run.stderr).strip()[-3000:]}")
    uploads = len(bed.vcsim.stats().uploads())
    on = powered_on(bed, "peer-")
    if uploads != 3 or on != 3:
        raise RuntimeError(f"the Ansible loop made {uploads} uploads and {on} powered-on VMs, not 3 and 3")
    return run


def powered_on(bed: Bed, prefix: str) -> int:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = bed.vcsim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        return sum(1 for vm in view.view if vm.name.startswith(prefix) and vm.runtime.powerState == "poweredOn")
    finally:
        Disconnect(si)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="disk size of the OVA (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median counts (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON (bench/peers.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (PEERS_VENV / "bin" / "ansible-playbook").exists():
        sys.exit(f"bench: {PEERS_VENV}/bin/ansible-playbook is missing; run `make bench-peers`")

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    work = Path(tempfile.mkdtemp(prefix="vmcoreos-bench-peers-"))
    try:
        # bench.run's defaults for what deploy uses: linked clones, --parallel 4, etcd's own timings.
        bench = Bench.create(work, bench_run_args([]))
        log(f"building and signing a {args.size_mib} MiB OVA")
        with TestSigner.create(work / "signer") as signer:
            bench.key = signer.write_public_key(work / "key.asc")
            (work / "image").mkdir()
            ova = build_ova(work / "image" / "flatcar_production_vmware_ova.ova", disk_bytes=args.size_mib * MiB)
            signer.sign_detached(ova, ova.with_name(ova.name + ".sig"))
        # Both beds put vcsim on 443 of a loopback address of their own: vmware_deploy_ovf keeps
        # only the host of the lease's "https://*/nfc/..." URLs, so its uploads go to port 443.
        rows: dict[str, list[dict]] = {"vmcoreos": [], "ansible": []}
        for i in range(args.repeat):
            tag = f"({i + 1}/{args.repeat})"
            os.sync()
            # Fresh means never verified: the record of verified images (images/trust/known.py) the previous
            # repeat left would spare this one the verification the Ansible loop is compared with.
            (bench.work / "cache" / "state" / IMAGES_FILE).unlink(missing_ok=True)
            with Bed(work / f"vmcoreos-{i}", port=443) as bed:
                log(f"vmcoreos deploy --count 3, fresh {tag}")
                run = bench.deploy(bed, ova, 3, what="fresh deploy of 3", linked=True)
                rows["vmcoreos"].append({"seconds": round(run.seconds, 2), "peak_rss_mb": round(run.rss_mb, 1)})
            os.sync()
            with Bed(work / f"ansible-{i}", port=443) as bed:
                log(f"ansible-playbook looping vmware_deploy_ovf over 3 nodes {tag}")
                run = ansible_loop(bed, ova, work)
                rows["ansible"].append({"seconds": round(run.seconds, 2), "peak_rss_mb": round(run.rss_mb, 1)})
        out = {name: summary(runs) for name, runs in rows.items()}
        ratio = out["ansible"]["seconds"] / out["vmcoreos"]["seconds"]
        results = {
            "targets": {"ansible_loop_vs_vmcoreos_deploy_3": {
                "value": round(ratio, 2), "target": f">= {TARGET}", "pass": ratio >= TARGET}},
            **out,
            "ova_mib": round(ova.stat().st_size / MiB, 1),
            "versions": peer_versions(),
        }
        args.results.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{'':<34} {'median':>8}  runs")
        for name, label in (("vmcoreos", "vmcoreos deploy --count 3 (fresh)"),
                            ("ansible", "ansible vmware_deploy_ovf x 3")):
            print(f"{label:<34} {out[name]['seconds']:>6.2f} s  {', '.join(str(x) for x in out[name]['samples'])}")
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"vmcoreos is {ratio:.2f}x faster (target >= {TARGET}): {verdict}"
              f"  [{results['ova_mib']:g} MiB OVA; {results['versions']}]")
        print(f"wrote {args.results}")
        return 1 if ratio < TARGET and os.environ.get("BENCH_STRICT") else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def peer_versions() -> str:
    from importlib.metadata import distributions

    site = next((PEERS_VENV / "lib").glob("python*/site-packages"))
    found = {d.metadata["Name"].lower(): d.version for d in distributions(path=[str(site)])}
    manifest = site / "ansible_collections" / "community" / "vmware" / "MANIFEST.json"
    collection = json.loads(manifest.read_text())["collection_info"]["version"]
    return (f"ansible {found.get('ansible')}, ansible-core {found.get('ansible-core')},"
            f" community.vmware {collection}, pyvmomi {found.get('pyvmomi')}")


if __name__ == "__main__":
    sys.exit(main())
