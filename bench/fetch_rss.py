"""Peak memory and speed of `vmcoreos fetch` on a 1 GiB signed OVA (a script, not a test).

Builds the OVA and a signed release tree in a temporary directory, serves it
with the test release server, runs `vmcoreos fetch` as a subprocess and
reads its peak RSS from os.wait4 (the largest of it and its waited-for
children, gpgv included). For comparison it times `sha512sum` and `gpgv`
run separately on the same file, and gpgv fed the file through a pipe (how
fetch feeds it, so the floor for a one-pass design). Prints one JSON object.

    .venv/bin/python bench/fetch_rss.py [--size-mib 1024]

Targets: peak RSS < 100 MB; fetch + verification no slower than gpgv alone.
Every timing starts after os.sync(), so writeback of the files built here
does not compete with it (the fetch's own 1 GiB of writes still counts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))
VERSION = "4593.2.5"


def timed(cmd: list[str], **kw) -> float:
    os.sync()  # no writeback of earlier files competing with the measurement
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit code, stderr) of one child process."""
    err = tempfile.TemporaryFile()
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    # ru_maxrss is in KiB on Linux: the largest of the child and its waited-for children (gpgv).
    return seconds, usage.ru_maxrss / 1024, proc.returncode, err.read().decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the OVA's disk member")
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

            sha512sum_seconds = timed(["sha512sum", str(ova)])
            gpg_env = {**os.environ, "GNUPGHOME": str(work)}
            gpgv_seconds = timed(["gpgv", "--keyring", str(keyring), str(ova) + ".sig", str(ova)], env=gpg_env)
            # The floor for any design that streams into gpgv: gpgv reading the same bytes from a pipe.
            gpgv_pipe_seconds = timed(
                ["sh", "-c", 'cat "$1" | gpgv --keyring "$2" "$1.sig" -', "sh", str(ova), str(keyring)], env=gpg_env
            )

            with ReleaseServer(tree.root) as server:
                env = {k: v for k, v in os.environ.items() if not k.startswith("VMCOREOS_")}
                cmd = [
                    VMCOREOS, "fetch", "--distro", "flatcar", "--channel", "stable",
                    "--base-url", f"{server.url}/stable/amd64-usr/", "--trusted-key", str(key),
                    "--cache-dir", str(work / "cache"), "--quiet",
                ]
                seconds, rss, code, stderr = run_measured(cmd, env)
                if code != 0:
                    sys.exit(f"vmcoreos fetch failed ({code}): {stderr.strip()}")
                cached_seconds, cached_rss, code, stderr = run_measured(cmd, env)
                if code != 0:
                    sys.exit(f"cached vmcoreos fetch failed ({code}): {stderr.strip()}")

        print(json.dumps({
            "ova_mib": round(ova.stat().st_size / 1048576, 1),
            "fetch_peak_rss_mb": round(rss, 1),
            "fetch_seconds": round(seconds, 2),
            "cached_fetch_seconds": round(cached_seconds, 2),
            "cached_fetch_peak_rss_mb": round(cached_rss, 1),
            "sha512sum_seconds": round(sha512sum_seconds, 2),
            "gpgv_seconds": round(gpgv_seconds, 2),
            "gpgv_pipe_seconds": round(gpgv_pipe_seconds, 2),
            "cpus": os.cpu_count(),
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
