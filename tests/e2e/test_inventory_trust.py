"""vCenter inventory is not trusted blindly: forged templates, node names elsewhere, duplicate names.

Another vCenter user who may create VMs or edit advanced settings can give a
VM our name and our marks; these tests plant such VMs through the API.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.e2e.helpers import api_vm, inventory, plant_vm, write_cluster


def _env(vcsim, tmp_path):
    # This test's own cache, so its template records are its own (the simulator's UUIDs repeat across runs).
    return {**vcsim.env(), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache")}


def _deploy(cli, cluster, ova, env, *extra):
    return cli(["deploy", "-c", str(cluster), "--count", "1", "--json", "--ova", str(ova["ova"]),
                "--sig", str(ova["sig"]), "--trusted-key", str(ova["key"]), *extra], env=env)


def _error(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.startswith("vmcoreos: error:")]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def test_forged_template_with_the_right_name_and_marks_is_not_cloned(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    sha512 = hashlib.sha512(signed_ova["ova"].read_bytes()).hexdigest()
    name = f"lab-template-flatcar-local-{sha512[:12]}"
    marks = {"vmcoreos.cluster": "lab", "vmcoreos.role": "template", "vmcoreos.distro": "flatcar",
             "vmcoreos.image_version": f"local-{sha512[:12]}", "vmcoreos.image_sha512": sha512}
    forged = plant_vm(vcsim, name, marks, template=True)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    env = _env(vcsim, tmp_path)

    run = _deploy(cli, cluster, signed_ova, env, "--timeout", "20")
    line = _error(run)
    assert run.returncode == 1
    assert name in line and forged in line
    # Which user's record, in which cache, has no entry: the cron user's differs from a person's.
    record = Path(env["VMCOREOS_CACHE_DIR"]) / "state" / "templates.json"
    assert "carries the marks of cluster 'lab' but the record of imported templates that user" in line
    assert f"keeps ({record}) has no entry for it" in line and "'lab''s" not in line
    assert "delete that template in vCenter" in line and "--adopt-template as the user that will run vmcoreos" in line
    assert "lab-01" not in inventory(vcsim)

    # The advertised fix: delete it, deploy again; the verified import is recorded and later runs reuse it.
    _delete(vcsim, name)
    first = _deploy(cli, cluster, signed_ova, env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["uploaded"] is True
    again = _deploy(cli, cluster, signed_ova, env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["uploaded"] is False

    # The recorded template swapped for a forgery of the same name: refused too.
    _delete(vcsim, name)
    swapped = plant_vm(vcsim, name, marks, template=True)
    run = _deploy(cli, cluster, signed_ova, env, "--count", "2")
    line = _error(run)
    assert swapped in line and "names another template by that name" in line and "lab-02" not in inventory(vcsim)

    # The operator vouches for it: adopted once, recorded, then used like one this host imported.
    run = _deploy(cli, cluster, signed_ova, env, "--count", "2", "--adopt-template")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(f"adopting template {name} ({swapped}) on your word (--adopt-template), into the record"
                            f" of imported templates that user") == 1
    run = _deploy(cli, cluster, signed_ova, env, "--count", "2")
    assert run.returncode == 0 and "adopting" not in run.stderr, run.stderr


def _delete(vcsim, name):
    from pyVim.task import WaitForTask

    with api_vm(vcsim, name) as vm:
        WaitForTask(vm.Destroy_Task())


def test_nodes_elsewhere_are_ignored_and_duplicates_refused(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    node_marks = {"vmcoreos.cluster": "lab", "vmcoreos.role": "node"}
    # A VM with a node's name and marks in another folder of the datacenter does not stand in for the node.
    elsewhere = plant_vm(vcsim, "lab-01", node_marks, folder="someone-else")
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    env = _env(vcsim, tmp_path)
    run = _deploy(cli, cluster, signed_ova, env, "--timeout", "30")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["created"] == ["lab-01"]

    # destroy does not reach into that folder either.
    plan = cli(["destroy", "-c", str(cluster), "--yes", "--json"], env=env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["deleted"] == ["lab-01"]
    assert "lab-01" in inventory(vcsim)  # the planted one, still there

    # Two VMs of one name in the cluster's own folder: refused, naming both, not one silently chosen.
    run = _deploy(cli, cluster, signed_ova, env)
    assert run.returncode == 0, run.stderr
    twin = plant_vm(vcsim, "lab-01", node_marks)
    run = cli(["status", "-c", str(cluster)], env=env)
    line = _error(run)
    assert run.returncode == 6 and "two VMs are named 'lab-01'" in line and twin in line and elsewhere not in line
    assert "rename or remove" in line
