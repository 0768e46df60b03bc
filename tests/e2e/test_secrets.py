"""Secrets stay secret: the vCenter password and private material in node configs."""

from __future__ import annotations

import os
import subprocess
import time

import psutil

from tests.harness.runner import VMCOREOS
from tests.e2e.helpers import write_cluster
from tests.harness.services import MARKER, PASSWORD

SECRET_CONFIG = f"""#cloud-config
write_files:
  - path: /etc/ssl/etcd/key.pem
    permissions: '0600'
    content: |
      -----BEGIN PRIVATE KEY-----
      {MARKER}
      -----END PRIVATE KEY-----
coreos:
  units:
    - name: etcd-member.service
      command: start
"""


def test_secrets_never_printed_nor_in_the_process_list(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    (tmp_path / "cc.yaml").write_text(SECRET_CONFIG)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1, config="cc.yaml")
    args = ["deploy", "-c", str(cluster), "--count", "1", "--ova", str(signed_ova["ova"]),
            "--trusted-key", str(signed_ova["key"]), "--json"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **vcsim.env(),
           "VMCOREOS_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.Popen([VMCOREOS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, environments = [], 0
    tool = psutil.Process(proc.pid)
    while proc.poll() is None:
        # The tool and everything it starts (gpgv, …): what `ps` (and `ps e`) would show of vmcoreos.
        try:
            for p in [tool, *tool.children(recursive=True)]:
                try:
                    env = p.environ()
                    environments += 1
                except psutil.AccessDenied:
                    env = {}  # the tool is not dumpable: other processes of its user cannot read its environment
                if p.pid == tool.pid:
                    # The test handed the tool the password here; in any other variable, or a child's, it leaked.
                    env.pop("VMCOREOS_PASSWORD", None)
                seen.append(" ".join([*p.cmdline(), *(f"{k}={v}" for k, v in env.items())]))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    leaked = [c.replace(PASSWORD, "<the password>") for c in seen if PASSWORD in c]  # a failure must not print it
    assert seen and leaked == []
    # Root reads every environment, so there the values were checked, not only the argv.
    assert environments or os.geteuid() != 0
    from tests.harness.runner import OUTPUT_LOG

    OUTPUT_LOG.append(out + err)
    assert MARKER not in out + err and PASSWORD not in out + err

    # render masks the file unless that node is asked for by name.
    masked = cli(["render", "-c", str(cluster)])
    assert masked.returncode == 0 and MARKER not in masked.stdout and "redacted" in masked.stdout
    # A broken config's findings name places, never the values.
    (tmp_path / "cc.yaml").write_text(SECRET_CONFIG.replace("permissions: '0600'", "permissions: 'rwx'"))
    bad = cli(["render", "-c", str(cluster)])
    assert bad.returncode == 2 and "permissions" in bad.stderr and MARKER not in bad.stderr
