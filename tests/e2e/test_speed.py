"""Speed that can be counted (issue 16): image reads, and SOAP requests per node.

Image reads are counted on the image file itself, as bench/run.py does: dropped from the page
cache before a run, its resident bytes counted after (a read of any byte shows as a page).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from bench.run import CountingVcsim, evict, resident_bytes as resident
from tests.conftest import signed_image
from tests.e2e.helpers import write_cluster
from tests.harness.services import GuestSim
from vmcoreos.images.known import RACY_NS

@pytest.fixture(params=["lenient", "strict"])
def bed(request, tmp_path, subnet):
    """vcsim and the guest simulator on both profiles."""
    strict = request.param == "strict"
    vcsim = CountingVcsim(tmp_path / "vcsim", strict=strict)
    guests = None
    try:
        vcsim.start()
        guests = GuestSim(vcsim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=strict).start()
        yield vcsim
    finally:
        if guests is not None:
            guests.stop()
        vcsim.stop()


def settle(path) -> None:
    """Wait until the file's last change is older than the racy window, so its first verification is recorded."""
    wait = (os.stat(path).st_ctime_ns + RACY_NS) / 1e9 + 0.2 - time.time()
    if wait > 0:
        time.sleep(wait)


def test_unchanged_image_is_not_read_again_and_a_changed_one_is(cli, bed, signer, subnet, tmp_path):
    (tmp_path / "image").mkdir()
    image = signed_image(tmp_path / "image", signer, disk_bytes=8 << 20, seed=16)
    ova, size = image["ova"], image["ova"].stat().st_size
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet)
    settle(ova)

    def deploy(count: int):
        evict(ova)
        run = cli(["deploy", "-c", str(cluster), "--count", str(count), "--ova", str(ova),
                   "--trusted-key", str(image["key"]), "--json"], env=bed.env())
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout), resident(ova), run.output

    first, read, _ = deploy(1)
    assert first["uploaded"] is True
    assert read >= size * 0.9  # verified and uploaded: every byte was read

    # Template kept, a node added: the record vouches for the file, only the OVF header is read.
    second, read, output = deploy(2)
    assert second["uploaded"] is False and second["created"] == ["lab-02"]
    assert read < size / 8, f"{read} of {size} bytes read for an image verified before"
    assert "not reading it again" in output

    # Touched (mtime and ctime move): verified again in full before it is trusted.
    os.utime(ova)
    third, read, output = deploy(3)
    assert third["created"] == ["lab-03"]
    assert read >= size * 0.9
    assert "not reading it again" not in output


def test_clones_and_power_ons_are_awaited_per_batch_not_per_node(cli, bed, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, count=4)
    before = bed.stats()
    run = cli(["deploy", "-c", str(cluster), "--count", "4", "--ova", str(signed_ova["ova"]),
               "--trusted-key", str(signed_ova["key"]), "--json", "--parallel", "4"], env=bed.env())
    assert run.returncode == 0, run.stderr
    soap = bed.stats().since(before).soap
    assert soap["CloneVM_Task"] == 4 and soap["PowerOnVM_Task"] <= 4
    # One filter per wait: the import lease's, the four clones', their power-ons', the guest wait's,
    # the reconfigures that clear Ignition's config, and (a new cluster's) the removal of its vSphere
    # lock folder. A wait per task made it 15.
    assert soap["CreateFilter"] <= 6, dict(soap)
