"""A deploy parses the user's node config once and opens the verified OVA once (vcsim, guest simulator, real etcd).

Run in-process through the CLI so the core's own calls can be counted; the
bed is the same as the e2e tests'.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.e2e.helpers import write_cluster
from vmcoreos.cli.app import app
from vmcoreos.guest import nodeconfig
from vmcoreos.images.archive import ova


def test_a_deploy_parses_the_user_config_once_and_opens_the_ova_once(
    vcsim, guestsim, signed_ova, subnet, tmp_path, monkeypatch, mocker,
):
    for key, value in vcsim.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VMCOREOS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("VMCOREOS_CACHE_DIR", str(tmp_path / "cache"))
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, count=2)
    loads = mocker.spy(nodeconfig, "load_user_config")
    # A fresh image is verified by the read that uploads it (images/verified_upload.py): its tar index, OVF and
    # .mf are read once, for the space check, the import spec and the upload alike.
    opens = mocker.spy(ova.OvaArchive, "__init__")

    result = CliRunner().invoke(app, [
        "deploy", "-c", str(cluster), "--ova", str(signed_ova["ova"]), "--trusted-key", str(signed_ova["key"]),
        "--json",
    ])

    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["created"]) == ["lab-01", "lab-02"]
    assert loads.call_count == 1
    assert opens.call_count == 1
