"""Peak memory and speed of `vmcoreos fetch` on a 1 GiB signed OVA (a script, not a test).

Builds the OVA and a signed release tree in a temporary directory, serves it
with the test release server, runs `vmcoreos fetch` as a subprocess and
reads its peak RSS from os.wait4 (the largest of it and its waited-for
children, the verifier included). For comparison it times `sha512sum` and
`gpgv` run separately on the same file, and gpgv fed the file through a pipe,
in turns with the fetches; medians of --repeat runs. Prints one JSON object.

    .venv/bin/python bench/fetch_rss.py [--size-mib 1024] [--repeat 3]

Targets: peak RSS < 100 MB; fetch + verification no slower than gpgv alone.
Every timing starts after os.sync(), so writeback of the files built here
does not compete with it (the fetch's own 1 GiB of writes still counts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.ova_builder import build_ova  # noqa: E402
from tests.harness.release_server import ReleaseServer, ReleaseTree  # noqa: E402
from tests.harness.signing import TestSigner  # noqa: E402
from vmcoreos.images.trust import known as known_images  # noqa: E402

VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))
VERSION = "4593.2.5"


def timed(cmd: list[str], **kw) -> float:
    os.sync()  # no writeback of earlier files competing with the measurement
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, str, float, float]:
    """(seconds, peak RSS in MB, exit code, stderr, user CPU s, system CPU s) of one child process."""
    err = tempfile.TemporaryFile()
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    # ru_maxrss is in KiB on Linux: the largest of the child and its waited-for children (gpgv).
    return (seconds, usage.ru_maxrss / 1024, proc.returncode, err.read().decode(errors="replace"),
            usage.ru_utime, usage.ru_stime)


def fetched(cmd: list[str], env: dict, what: str) -> tuple[float, float, int, str, float, float]:
    """run_measured, and the bench stops with the fetch's own message if it failed."""
    run = run_measured(cmd, env)
    if run[2] != 0:
        sys.exit(f"{what} failed ({run[2]}): {run[3].strip()}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the OVA's disk member")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, in turns; medians are reported")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vmcoreos-bench-"))
    try:
        with TestSigner.create(work) as signer:
            source = build_ova(work / "built.ova", disk_bytes=args.size_mib << 20)
            tree = ReleaseTree(work / "srv", signer)
            published = tree.publish(VERSION, ova=source)  # signs it and writes a signed DIGESTS
            ova = published / source.with_name("flatcar_production_vmware_ova.ova").name
            key = signer.write_public_key(work / "key.asc")
            keyring = signer.write_keyring(work / "keyring.gpg")

            gpg_env = {**os.environ, "GNUPGHOME": str(work)}
            sha512sum, gpgv, gpgv_pipe, fetches, cached, settled = [], [], [], [], [], []
            with ReleaseServer(tree.root) as server:
                env = {k: v for k, v in os.environ.items() if not k.startswith("VMCOREOS_")}
                # Side by side, in turns: this VM's speed drifts by a third within a minute, so each
                # figure is a median over the same stretch of time as the others.
                for turn in range(args.repeat):
                    sha512sum.append(timed(["sha512sum", str(ova)]))
                    gpgv.append(timed(["gpgv", "--keyring", str(keyring), str(ova) + ".sig", str(ova)], env=gpg_env))
                    # The floor for any design that streams into gpgv: gpgv reading the same bytes from a pipe.
                    gpgv_pipe.append(timed(
                        ["sh", "-c", 'cat "$1" | gpgv --keyring "$2" "$1.sig" -', "sh", str(ova), str(keyring)],
                        env=gpg_env,
                    ))
                    cmd = [
                        VMCOREOS, "fetch", "--distro", "flatcar", "--channel", "stable",
                        "--base-url", f"{server.url}/stable/amd64-usr/", "--trusted-key", str(key),
                        "--cache-dir", str(work / f"cache-{turn}"), "--quiet",
                    ]
                    fetches.append(fetched(cmd, env, "vmcoreos fetch"))
                    # A record taken within RACY_NS of the file's last change vouches for nothing (images/trust/known.py):
                    # the re-check below records a settled identity only if it starts that much later.
                    time.sleep(known_images.RACY_NS / 1e9 + 0.1)
                    cached.append(fetched(cmd, env, "cached vmcoreos fetch"))
                    # Its record has settled now: a fetch that reads nothing, the fixed cost of any fetch.
                    settled.append(fetched(cmd, env, "vmcoreos fetch of a known image"))
                    shutil.rmtree(work / f"cache-{turn}", ignore_errors=True)

        middle = sorted(fetches, key=lambda r: r[0])[len(fetches) // 2]
        print(json.dumps({
            "ova_mib": round(ova.stat().st_size / 1048576, 1),
            "repeat": args.repeat,
            "fetch_peak_rss_mb": round(max(r[1] for r in fetches), 1),
            "fetch_seconds": round(middle[0], 2),
            "fetch_runs": [round(r[0], 2) for r in fetches],
            # CPU seconds of the median fetch and its children (the verifier): what 2 cores must carry.
            "fetch_cpu_user_seconds": round(middle[4], 2),
            "fetch_cpu_system_seconds": round(middle[5], 2),
            "cached_fetch_seconds": round(statistics.median(r[0] for r in cached), 2),
            "cached_fetch_peak_rss_mb": round(max(r[1] for r in cached), 1),
            "known_fetch_seconds": round(statistics.median(r[0] for r in settled), 2),
            "sha512sum_seconds": round(statistics.median(sha512sum), 2),
            "gpgv_seconds": round(statistics.median(gpgv), 2),
            "gpgv_runs": [round(x, 2) for x in gpgv],
            "gpgv_pipe_seconds": round(statistics.median(gpgv_pipe), 2),
            "cpus": os.cpu_count(),
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
