"""The bench's measurements, one function per part of the performance table (bench/run.py runs them):
memory and upload throughput against curl, deploy at scale and requests per node, the large image
against gpgv, and fetch + verification (bench/fetch_rss.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench.bed import Bed, Bench, MiB, Run, VSPHERE, evict, log, resident_bytes, run_measured
from tests.harness.services import ROOT, Vcsim
from vmcoreos.state import IMAGES_FILE


# -- 1 + 2: memory, and upload throughput against curl ----------------------------


def disk_member(ova: Path, dest: Path) -> Path:
    """The OVA's vmdk, byte for byte, as a file curl can send."""
    with tarfile.open(ova) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".vmdk"))
        with tar.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 4 * MiB)
    return dest


def curl_upload(vcsim: Vcsim, ova: Path, disk: Path) -> dict:
    """PUT the disk with curl into a fresh NFC lease for the same OVF; the lease is then removed."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.connect()  # pyvmomi's own User-Agent: these calls are not counted as vmcoreos's
    try:
        content = si.RetrieveContent()
        dc = next(e for e in content.rootFolder.childEntity if e.name == VSPHERE["datacenter"])
        compute = next(c for c in dc.hostFolder.childEntity if c.name == VSPHERE["cluster"])
        datastore = next(d for d in dc.datastore if d.name == VSPHERE["datastore"])
        network = next(n for n in dc.network if n.name == VSPHERE["network"])
        with tarfile.open(ova) as tar:
            ovf = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".ovf"))).read().decode()
        params = vim.OvfManager.CreateImportSpecParams(
            entityName="bench-curl", diskProvisioning="thin",
            networkMapping=[vim.OvfManager.NetworkMapping(name=VSPHERE["network"], network=network)],
        )
        result = content.ovfManager.CreateImportSpec(ovf, compute.resourcePool, datastore, params)
        if result.error:
            raise RuntimeError(f"CreateImportSpec: {result.error[0].localizedMessage}")
        lease = compute.resourcePool.ImportVApp(result.importSpec, folder=dc.vmFolder)
        deadline = time.monotonic() + 60
        while lease.state not in ("ready", "error"):
            if time.monotonic() > deadline:
                raise RuntimeError("the NFC lease for curl did not get ready")
            time.sleep(0.05)
        if lease.state == "error":
            raise RuntimeError(f"the NFC lease for curl failed: {lease.error}")
        entity = lease.info.entity  # the lease object goes away once it completes
        host, port = vcsim.host_port
        url = next(d.url for d in lease.info.deviceUrl if d.importKey == result.fileItem[0].deviceId)
        url = url.replace("://*/", f"://{host}:{port}/").replace("://*:", f"://{host}:")
        try:
            start = time.perf_counter()
            proc = subprocess.run(
                ["curl", "--silent", "--show-error", "--fail", "--cacert", str(vcsim.cert), "-X", "PUT",
                 "-T", str(disk), "-H", "Content-Type: application/x-vnd.vmware-streamVmdk",
                 "-o", "/dev/null", "-w", "%{speed_upload}", url],
                capture_output=True, text=True, timeout=600, check=False,
            )
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"curl -T failed ({proc.returncode}): {proc.stderr.strip()}")
            lease.HttpNfcLeaseComplete()
        except BaseException:
            lease.HttpNfcLeaseAbort()
            raise
        finally:
            from pyVim.task import WaitForTask

            WaitForTask(entity.Destroy_Task())
        return {"wall_seconds": round(seconds, 3), "curl_speed_upload_mb_per_s": round(float(proc.stdout) / 1e6, 1)}
    finally:
        Disconnect(si)


def measure_memory_and_upload(bench: Bench, small: Path, big: Path, disk: Path) -> dict:
    out: dict = {}
    with Bed(bench.work / "rss-small") as bed:
        log(f"deploy --count 1 with the {small.stat().st_size // MiB} MiB OVA (peak RSS)")
        run = bench.deploy(bed, small, 1, what="small-OVA deploy")
        out["small"] = {"ova_mib": round(small.stat().st_size / MiB, 1), "peak_rss_mb": round(run.rss_mb, 1),
                        "seconds": round(run.seconds, 2)}
    with Bed(bench.work / "rss-big") as bed:
        # curl goes before and after vmcoreos, into fresh leases on the same vcsim, so that a
        # machine getting busier or quieter during the run favours neither.
        log("curl -T of the OVA's disk into a fresh NFC lease")
        curl = [curl_upload(bed.vcsim, big, disk)]
        log(f"deploy --count 1 with the {big.stat().st_size // MiB} MiB OVA (peak RSS, upload throughput)")
        run = bench.deploy(bed, big, 1, what="large-OVA deploy")
        log("curl -T of the OVA's disk into a fresh NFC lease, again")
        curl.append(curl_upload(bed.vcsim, big, disk))
        uploads = bed.vcsim.stats().uploads()
        if len(uploads) != 3 or not uploads[0]["agent"].startswith("curl/"):
            raise RuntimeError(f"expected curl, vmcoreos, curl uploads; vcsim saw {uploads}")
        out["big"] = {"ova_mib": round(big.stat().st_size / MiB, 1), "peak_rss_mb": round(run.rss_mb, 1),
                      "seconds": round(run.seconds, 2)}
        curl_rates = [_throughput(uploads[0]), _throughput(uploads[2])]
        out["upload"] = {
            "vmcoreos": _throughput(uploads[1]),
            "curl": [dict(rate, **c) for rate, c in zip(curl_rates, curl)],
            "curl_mean_mb_per_s": round(sum(r["mb_per_s"] for r in curl_rates) / 2, 1),
        }
    return out


def _throughput(upload: dict) -> dict:
    return {"bytes": upload["bytes"], "seconds": round(upload["seconds"], 3),
            "mb_per_s": round(upload["bytes"] / upload["seconds"] / 1e6, 1), "agent": upload["agent"]}


# -- 3 + 4 + 6: deploy at scale, requests per node, the no-op re-run ---------------------


def measure_scaling(bench: Bench, ova: Path, counts: list[int]) -> dict:
    out: dict = {"no_template": {}, "template_present": {}}
    for n in counts:
        samples = []
        for i in range(bench.args.repeat):
            with Bed(bench.work / f"cold-{n}-{i}") as bed:
                log(f"deploy --count {n}, no template yet ({i + 1}/{bench.args.repeat})")
                samples.append(measured_deploy(bench, bed, ova, n, template_present=False))
        out["no_template"][n] = summary(samples)
        samples = []
        for i in range(bench.args.repeat):
            with Bed(bench.work / f"warm-{n}-{i}") as bed:
                log(f"deploy --count {n}, template present ({i + 1}/{bench.args.repeat})")
                # The template comes from a 1-node deploy whose node is then destroyed,
                # and the measured run gets a fresh guest simulator on a fresh subnet.
                bench.deploy(bed, ova, 1, what="template import", linked=bench.linked)
                bench.destroy_nodes(bed)
                bed.new_guests()
                samples.append(measured_deploy(bench, bed, ova, n, template_present=True))
        out["template_present"][n] = summary(samples)
    return out


def measured_deploy(bench: Bench, bed: Bed, ova: Path, n: int, *, template_present: bool) -> dict:
    before = bed.vcsim.stats()
    run = bench.deploy(bed, ova, n, what=f"deploy of {n}", linked=bench.linked)
    delta = bed.vcsim.stats().since(before)
    clones = delta.soap.get("CloneVM_Task", 0)
    if clones != n or bool(delta.uploads) == template_present:
        raise RuntimeError(f"deploy of {n} (template present: {template_present}) made {clones} clones"
                           f" and {len(delta.uploads)} uploads")
    return {
        "seconds": round(run.seconds, 2),
        # Where the time went, from the tool's own progress lines.
        "phases": {
            "nodes_cloned_and_on": run.at("waiting for guest tools"),
            "first_member_healthy": run.at("healthy etcd member"),
            "all_joined": round(run.seconds, 2),
        },
        "peak_rss_mb": round(run.rss_mb, 1),
        "soap_requests": delta.requests,
        "soap_requests_per_node": round(delta.requests / n, 1),
        "tasks": delta.tasks,
        "uploads": len(delta.uploads),
        "methods": dict(sorted(delta.soap.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def summary(samples: list[dict]) -> dict:
    """The median run (by wall time), with every run's wall time."""
    ranked = sorted(samples, key=lambda s: s["seconds"])
    return dict(ranked[(len(ranked) - 1) // 2], samples=[s["seconds"] for s in samples])


# -- 6: the large image: fresh deploy, template kept, no-op re-run, each against gpgv ------


def gpgv_alone(bench: Bench, ova: Path, *, cold: bool = False) -> Run:
    """gpgv on the file, as a user would check it by hand: the yardstick of the image figures.

    cold: the file dropped from the page cache first, the yardstick of the runs that start so.
    """
    if cold:
        evict(ova)
    os.sync()  # no writeback of earlier files competing with it
    run = run_measured(["gpgv", "--keyring", str(bench.keyring), f"{ova}.sig", str(ova)],
                       dict(bench.env, GNUPGHOME=str(bench.work / "signer")), timeout=600)
    if run.code != 0:
        raise RuntimeError(f"gpgv alone exited with {run.code}: {run.stderr.strip()}")
    return run


def image_run(bench: Bench, bed: Bed, ova: Path, what: str, *, cold: bool) -> dict:
    """One deploy --count 3 with its wall time, what vCenter saw and what it read.

    cold: the image is dropped from the page cache first, so its resident bytes afterwards are
    the image bytes the run read. Only for the runs whose target is 0 bytes read: there a cold
    cache costs nothing unless the image is read, which is what the figure is there to catch.
    """
    if cold:
        evict(ova)
    os.sync()
    before = bed.vcsim.stats()
    run = bench.deploy(bed, ova, 3, what=what, linked=bench.linked)
    delta = bed.vcsim.stats().since(before)
    size = ova.stat().st_size
    return {
        "seconds": round(run.seconds, 2),
        "image_bytes_read": resident_bytes(ova) if cold else None,
        "rchar_mib": round(run.io.get("rchar", 0) / MiB, 1),
        "rchar_per_image_size": round(run.io.get("rchar", 0) / size, 2),
        "read_bytes_mib": round(run.io.get("read_bytes", 0) / MiB, 1),
        "peak_rss_mb": round(run.rss_mb, 1),
        "uploads": len(delta.uploads),
        "tasks": delta.tasks,
        "soap_requests": delta.requests,
        "timeline": [f"{t:6.2f} {line}" for t, line in run.events[:60]],  # where the time went
    }


def measure_image(bench: Bench, ova: Path) -> dict:
    """The issue's image figures with one large OVA, each repeat on a fresh bed, gpgv timed in each."""
    rows: dict[str, list[dict]] = {"gpgv": [], "gpgv_cold": [], "fresh": [], "template_kept": [], "noop": []}
    mib = ova.stat().st_size // MiB
    for i in range(bench.args.repeat):
        tag = f"({i + 1}/{bench.args.repeat})"
        for name, cold in (("gpgv", False), ("gpgv_cold", True)):
            log(f"gpgv alone on the {mib} MiB OVA{', not in the page cache' if cold else ''} {tag}")
            run = gpgv_alone(bench, ova, cold=cold)
            rows[name].append({"seconds": round(run.seconds, 2), "peak_rss_mb": round(run.rss_mb, 1)})
        # Fresh means never verified: the record of verified images (images/trust/known.py) the previous
        # repeat left would spare this one the verification it is here to time.
        (bench.work / "cache" / "state" / IMAGES_FILE).unlink(missing_ok=True)
        with Bed(bench.work / f"image-{i}") as bed:
            log(f"fresh deploy --count 3 with the {mib} MiB OVA {tag}")
            rows["fresh"].append(image_run(bench, bed, ova, "fresh deploy of 3", cold=False))
            bench.destroy_nodes(bed)
            bed.new_guests()
            log(f"deploy --count 3 with the template kept, image not in the page cache {tag}")
            rows["template_kept"].append(image_run(bench, bed, ova, "template-kept deploy of 3", cold=True))
            log(f"deploy --count 3 again on the healthy cluster, a no-op {tag}")
            rows["noop"].append(image_run(bench, bed, ova, "no-op re-run", cold=True))
    out = {name: summary(runs) for name, runs in rows.items()}
    # What the no-op run reads (Python's modules, the cluster file, SOAP replies) is the floor of
    # every run's rchar; what the others read above it, in image sizes, is how often the image
    # went through read(): the tool's own reads plus gpgv's of the pipe the tool feeds it.
    floor = out["noop"]["rchar_mib"]
    for name in ("fresh", "template_kept", "noop"):
        out[name]["image_passes"] = round((out[name]["rchar_mib"] - floor) * MiB / ova.stat().st_size, 2)
    for name in ("template_kept", "noop"):
        # The worst run counts for what must be 0, the median for time.
        for key in ("image_bytes_read", "uploads", "tasks"):
            out[name][key] = max(r[key] for r in rows[name])
    out["ova_mib"] = round(ova.stat().st_size / MiB, 1)
    return out


# -- 5: fetch + verification vs sha512sum and gpgv (bench/fetch_rss.py) ----------------------


def measure_fetch(size_mib: int) -> dict:
    log(f"vmcoreos fetch of a {size_mib} MiB image vs sha512sum and gpgv (bench/fetch_rss.py)")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fetch_rss.py"), "--size-mib", str(size_mib)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/fetch_rss.py failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)
