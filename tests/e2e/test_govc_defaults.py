"""govc's inventory variables on the bed: a GOVC_* default reaches vCenter, and a wrong one is named.

How the cluster file and GOVC_* combine is unit-tested in tests/test_clusterfile.py.
"""

from __future__ import annotations

import yaml

from tests.e2e.helpers import inventory, write_cluster


def test_deploy_uses_govc_datastore_and_names_it_when_wrong(cli, vcsim, signed_ova, subnet, tmp_path):
    # The cluster file leaves the datastore to GOVC_DATASTORE; the simulator's answer shows the variable was used.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="govc")
    data = yaml.safe_load(cluster.read_text())
    del data["vsphere"]["datastore"]
    cluster.write_text(yaml.safe_dump(data))
    env = {**vcsim.env(), "GOVC_DATASTORE": "/DC0/datastore/DS9"}
    run = cli(["deploy", "-c", str(cluster), "--ova", str(signed_ova["ova"]), "--trusted-key", str(signed_ova["key"])],
              env=env)
    assert (run.returncode, run.stderr.splitlines()[-1]) == (
        1, "vmcoreos: error: datastore 'DS9' (GOVC_DATASTORE) does not exist; found: LocalDS_0")
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "govc"]
