"""`make bench`: vmcoreos's speed and scale, measured against yardsticks on this machine.

Every figure of the performance table (docs/performance.md) is taken in this one run, side by side with its
yardstick, and judged against its target (bench/results.json's `targets`):

1. image (--only image): with a signed 1 GiB OVA on the local disk, each
   repeat on a fresh vcsim and guest simulator: `gpgv` alone on the file
   (page cache warm, and cold); a fresh `deploy --count 3`; the nodes
   destroyed and `deploy --count 3` again with the template kept; then a
   no-op re-run on the healthy cluster. The last two start with the image out
   of the page cache, so the image bytes they read are measured (bed.evict);
2. memory: peak RSS (os.wait4's ru_maxrss, gpgv included) of `deploy` with a
   64 MiB and a 1 GiB OVA, and upload throughput of that import vs `curl -T`
   of the same disk into fresh NFC leases of the same vcsim (once before, once
   after), all timed the same way, by vcsim (`-stats-out`);
3. scale: wall time of `deploy --count N` up to "all nodes joined", N = 1, 3,
   10, 30, with and without the template already imported, each on a fresh
   bed (guest boot delay 0), --repeat times, median; SOAP requests per node,
   counted by vcsim by User-Agent (`vmcoreos/...`); the runs use
   node.linked_clone (bed.Bench.linked) and the etcd tuning in bed.NODE_CONFIG;
4. fetch: `vmcoreos fetch` of a 1 GiB image from the local release server
   with verification vs `gpgv` and `sha512sum` of the same file
   (bench/fetch_rss.py).

Every run of the tool also reports its I/O counters (/proc/<pid>/io, read
when it has exited but before it is reaped, so they are final and include
gpgv's). `make bench-peers` (bench/peers.py) sets Ansible's
vmware_deploy_ovf against a fresh deploy.

Prints a table and writes bench/results.json; exits 1 on a missed target
only with BENCH_STRICT=1. The tool always runs as a subprocess, as users run
it. Every process, port and temporary file it makes is gone when it returns,
also on failure or Ctrl-C (--keep keeps the logs of a failed run).

This module runs the parts and writes the results; bench/bed.py is the bed and how the tool runs
on it, bench/measurements.py the parts, bench/report.py the targets and the table.

    .venv/bin/python -m bench.run [--size-mib 1024] [--counts 1,3,10,30] [--repeat 3] [--only image,memory,scale,fetch]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.bed import Bench, MiB, log
from bench.measurements import disk_member, measure_fetch, measure_image, measure_memory_and_upload, measure_scaling
from bench.report import judge, table
from tests.harness.ova_builder import build_ova
from tests.harness.services import ROOT
from tests.harness.signing import TestSigner

RESULTS = ROOT / "bench" / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,3,10,30", help="node counts for the deploy runs (default 1,3,10,30)")
    parser.add_argument("--big-mib", "--size-mib", type=int, default=1024,
                        help="disk size of the large OVA, the image figures' (default 1024)")
    parser.add_argument("--small-mib", type=int, default=64, help="disk size of the small OVA (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per N and case; the median counts (default 3)")
    parser.add_argument("--parallel", type=int, default=4, help="deploy --parallel (default 4, the tool's default)")
    parser.add_argument("--heartbeat-ms", type=int, default=100, help="ETCD_HEARTBEAT_INTERVAL of the members")
    parser.add_argument("--election-ms", type=int, default=1000, help="ETCD_ELECTION_TIMEOUT of the members")
    parser.add_argument("--full-clones", action="store_true",
                        help="deploy runs without node.linked_clone (needs N+1 times the disk capacity free)")
    parser.add_argument("--only", default="image,memory,scale,fetch",
                        help="parts to run (default image,memory,scale,fetch)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON (bench/results.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) when a run fails")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",")})
    only = set(args.only.split(","))

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    missing = [tool for tool in ("curl", "gpgv", "sha512sum", "etcd", "fincore") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: {', '.join(missing)} missing; run `make deps` (and `apt-get install curl`)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vmcoreos-bench-"))
    ok = False
    try:
        bench = Bench.create(work, args)
        log("building and signing the OVAs")
        # Inside the runs' private cache (VMCOREOS_CACHE_DIR), as a fetched release is: only there may the
        # record of a verified image stand in for reading it again; an --ova elsewhere is verified every run.
        images = work / "cache" / "images"
        with TestSigner.create(work / "signer") as signer:
            bench.key = signer.write_public_key(work / "key.asc")
            bench.keyring = signer.write_keyring(work / "keyring.gpg")
            ovas = {}
            for label, mib in (("small", args.small_mib), ("big", args.big_mib)):
                if label == "big" and not only & {"memory", "image"}:
                    continue
                (images / label).mkdir(parents=True)
                ova = build_ova(images / label / "flatcar_production_vmware_ova.ova", disk_bytes=mib * MiB)
                signer.sign_detached(ova, ova.with_name(ova.name + ".sig"))
                ovas[label] = ova
        parts: dict = {}

        def write_results() -> dict:
            # After every part, so a run stopped half-way still leaves the figures it took.
            results = {
                "targets": judge(parts),
                "image": parts.get("image"),
                "memory_and_upload": parts.get("memory"),
                "fetch": parts.get("fetch"),
                "deploy": parts.get("scale"),
                "settings": {
                    "counts": counts, "repeat": args.repeat, "parallel": args.parallel,
                    "small_ova_mib": args.small_mib, "big_ova_mib": args.big_mib,
                    "etcd_heartbeat_ms": args.heartbeat_ms, "etcd_election_ms": args.election_ms,
                    "deploy_runs_linked_clone": not args.full_clones,
                },
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()},
                "bench_seconds": round(time.monotonic() - started, 1),
            }
            args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
            return results

        # The slowest part, scale, goes last.
        if "image" in only:
            parts["image"] = measure_image(bench, ovas["big"])
            write_results()
        if "memory" in only:
            disk = disk_member(ovas["big"], work / "disk.vmdk")
            parts["memory"] = measure_memory_and_upload(bench, ovas["small"], ovas["big"], disk)
            disk.unlink()
            write_results()
        shutil.rmtree(images / "big", ignore_errors=True)
        if "fetch" in only:
            parts["fetch"] = measure_fetch(args.big_mib)
            write_results()
        if "scale" in only:
            parts["scale"] = measure_scaling(bench, ovas["small"], counts)
        results = write_results()
        targets = results["targets"]
        print(table(targets, parts))
        print(f"\nwrote {args.results} in {results['bench_seconds']} s")
        ok = True
        failed = [name for name, t in targets.items() if not t["pass"]]
        print(f"{len(targets) - len(failed)} of {len(targets)} targets pass" + (f"; missed: {', '.join(failed)}" if failed else ""))
        # The figures are the product; a missed target fails the run only when asked (BENCH_STRICT=1).
        return 1 if failed and os.environ.get("BENCH_STRICT") else 0
    finally:
        if ok or not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
