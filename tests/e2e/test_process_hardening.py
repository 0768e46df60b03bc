"""The running tool guards the secrets in its memory and in its error messages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.harness.runner import OUTPUT_LOG, STATE, VMCOREOS
from tests.e2e.helpers import write_cluster
from tests.harness.services import PASSWORD, USER


def test_no_core_dump_while_the_password_is_in_memory(subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    # A "vCenter" that accepts and never answers holds the tool mid-connect, password loaded.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
        env.update(VMCOREOS_URL=f"https://127.0.0.1:{listener.getsockname()[1]}/sdk", VMCOREOS_USERNAME=USER,
                   VMCOREOS_PASSWORD=PASSWORD, VMCOREOS_INSECURE="1", VMCOREOS_API_TIMEOUT="30",
                   VMCOREOS_LOCK_DIR=str(STATE / "locks"), VMCOREOS_CACHE_DIR=str(STATE / "cache"))
        proc = subprocess.Popen([VMCOREOS, "status", "-c", str(cluster)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = listener.accept()
            with conn:
                limits = open(f"/proc/{proc.pid}/limits").read()
                core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
                assert core.split()[4:6] == ["0", "0"], core
                if os.geteuid() != 0:  # root may read any process; another process of the same user may not
                    try:
                        open(f"/proc/{proc.pid}/environ").read()
                        raise AssertionError("the tool's environment (its password) is readable through /proc")
                    except PermissionError:
                        pass
        finally:
            proc.kill()
            out, err = proc.communicate()
            OUTPUT_LOG.append(out + err)


def test_the_process_is_not_dumpable():
    # PR_GET_DUMPABLE (3) reads back what the CLI set; other processes cannot ask, so check it in one.
    code = ("import ctypes; from vmcoreos.cli.app import forbid_core_dumps; forbid_core_dumps();"
            " print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_an_unexpected_error_never_shows_url_credentials(cli, tmp_path):
    run = cli(["fetch", "--base-url", "https://mirror-user:Mirror-S3cret-9d1@127.0.0.1:99999/stable/",
               "--cache-dir", str(tmp_path / "cache")])
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("vmcoreos: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "Mirror-S3cret-9d1" not in run.output
