"""The bad-input catalog: each mistake gets its exit code, one line naming problem and fix, and no VM."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.e2e.helpers import inventory, write_cluster
from tests.harness.services import PASSWORD, USER, free_port


@pytest.fixture
def vcsim(shared_vcsim):
    # Every test here is refused before vSphere changes; the one deploy that works names its own cluster.
    return shared_vcsim


_labs = itertools.count(1)


@pytest.fixture
def lab():
    """This test's own cluster name. On the shared simulator, nodes one test left (a refusal that failed to
    refuse) would otherwise be the next test's cluster: with nothing to create, its deploy reads no image
    and waits for nodes that never join (exit 4 where a tampered image should give 3)."""
    return f"lab{next(_labs)}"


def _deploy(cli, cluster, ova, env, *extra):
    return cli(["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"]), *extra],
               env=env)


def _one_line(run) -> str:
    """The error: exactly one line, the last one (progress events may come before it)."""
    errors = [line for line in run.stderr.splitlines() if line.startswith("vmcoreos: error:")]
    assert len(errors) == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in run.stderr
    return errors[0]


def _nothing_made(vcsim, cluster):
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == cluster]


def test_unreachable_vcenter(cli, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    env = {"VMCOREOS_URL": f"https://127.0.0.1:{free_port()}/sdk", "VMCOREOS_USERNAME": USER,
           "VMCOREOS_PASSWORD": PASSWORD}
    line = _one_line(_deploy(cli, cluster, signed_ova, env))
    assert "cannot reach vCenter" in line and "connection refused" in line and "--url" in line


def test_wrong_password_is_tried_once(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    from tests.harness.faultproxy import FaultProxy

    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    with FaultProxy.for_url(vcsim.url) as proxy:
        env = {**vcsim.env(), "VMCOREOS_URL": proxy.url_for(vcsim.url), "VMCOREOS_PASSWORD": "wrong-password"}
        run = _deploy(cli, cluster, signed_ova, env)
        connections = proxy.stats.connections
    line = _one_line(run)
    assert run.returncode == 1
    assert "rejected the login" in line and "VMCOREOS_PASSWORD" in line and "wrong-password" not in run.stderr
    # One login attempt: the version probe and the login share at most two connections, no retry storm.
    assert connections <= 2
    _nothing_made(vcsim, lab)


def test_untrusted_certificate_names_the_options_and_shows_the_thumbprint(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    env = {k: v for k, v in vcsim.env().items() if k != "VMCOREOS_CA_FILE"}
    line = _one_line(_deploy(cli, cluster, signed_ova, env))
    assert "not trusted" in line and "--ca-file" in line and "--insecure" in line
    # `vmcoreos thumbprint URL` (govc about.cert -thumbprint) prints what the error shows, ahead of time.
    shown = cli(["thumbprint", vcsim.url, "--json"])
    assert shown.returncode == 0, shown.output
    prints = json.loads(shown.stdout)
    assert prints["sha1"].replace(":", "").lower() == vcsim.thumbprint.replace(":", "").lower()
    assert f"its SHA-256 thumbprint is {prints['sha256']}" in line
    assert f"pin it with --thumbprint {prints['sha256']} if that is your vCenter's" in line
    # The SHA-256 pin the message offers gets past TLS (and stops at the missing datacenter, before any change).
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"vsphere": {"datacenter": "NoSuchDC"}})
    assert "NoSuchDC" in _one_line(_deploy(cli, cluster, signed_ova, env, "--thumbprint", prints["sha256"]))
    # Without --json: one line per algorithm.
    text = cli(["--url", vcsim.url, "thumbprint"])
    assert text.stdout.splitlines() == [f"SHA-256  {prints['sha256']}", f"SHA-1    {prints['sha1']}"]


def test_a_wrong_url_path_is_named_as_such(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    # It said "127.0.0.1:port is down or is not a VIM server" while the server was up and the path was wrong.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    url = vcsim.url.rsplit("/sdk", 1)[0] + "/sdk/wrong"
    run = _deploy(cli, cluster, signed_ova, {**vcsim.env(), "VMCOREOS_URL": url})
    line = _one_line(run)
    assert run.returncode == 1
    assert "answered, but serves no vSphere API at /sdk/wrong (it does at /sdk)" in line
    assert "fix the path in --url or VMCOREOS_URL" in line and "is down" not in line
    _nothing_made(vcsim, lab)


def test_insecure_warns_once_and_works(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="tls-off", count=1)
    env = {k: v for k, v in vcsim.env().items() if k != "VMCOREOS_CA_FILE"}
    run = _deploy(cli, cluster, signed_ova, env, "--count", "1", "--insecure")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("TLS verification") == 1


def test_thumbprint_pin(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    env = {k: v for k, v in vcsim.env().items() if k != "VMCOREOS_CA_FILE"}
    wrong = ":".join(["AA"] * 20)
    line = _one_line(_deploy(cli, cluster, signed_ova, env, "--thumbprint", wrong))
    assert "thumbprint" in line
    # The right pin gets past TLS (then stops at the missing datacenter, before any change).
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"vsphere": {"datacenter": "NoSuchDC"}})
    line = _one_line(_deploy(cli, cluster, signed_ova, env, "--thumbprint", vcsim.thumbprint))
    assert "NoSuchDC" in line


def test_a_pin_is_never_overridden_by_insecure(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"vsphere": {"datacenter": "NoSuchDC"}})
    env = {**{k: v for k, v in vcsim.env().items() if k != "VMCOREOS_CA_FILE"}, "GOVC_INSECURE": "1"}
    wrong = ":".join(["AA"] * 20)
    # An inherited GOVC_INSECURE=1 (a govc user's shell) yields to the pin: a wrong pin still stops the run.
    run = _deploy(cli, cluster, signed_ova, env, "--thumbprint", wrong)
    line = _one_line(run)
    assert "thumbprint" in line and "NoSuchDC" not in line
    assert run.stderr.count("ignoring GOVC_INSECURE=1: --thumbprint pins") == 1
    # The right pin connects (and stops at the missing datacenter), verified, with no "TLS is off" warning.
    run = _deploy(cli, cluster, signed_ova, env, "--thumbprint", vcsim.thumbprint)
    assert "NoSuchDC" in _one_line(run) and "TLS verification" not in run.stderr
    # Both on one command line contradict each other: refused before any connection.
    run = _deploy(cli, cluster, signed_ova, env, "--insecure", "--thumbprint", vcsim.thumbprint)
    assert run.returncode == 2
    line = _one_line(run)
    assert "--insecure and --thumbprint" in line and "drop --insecure" in line


@pytest.mark.parametrize(
    "key,value,found",
    [
        ("datacenter", "DC9", "DC0"),
        ("cluster", "C9", "DC0_C0"),
        ("datastore", "DS9", "LocalDS_0"),
        ("network", "Net9", "VM Network"),
        ("folder", "labs/etcd", "none"),
    ],
)
def test_missing_inventory_object_is_named_with_what_exists(cli, vcsim, signed_ova, subnet, lab, tmp_path, key, value,
                                                           found):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"vsphere": {key: value}})
    run = _deploy(cli, cluster, signed_ova, vcsim.env())
    line = _one_line(run)
    assert run.returncode == 1
    assert value.split("/")[0] in line and f"vsphere.{key}" in line and found in line
    _nothing_made(vcsim, lab)


def test_too_few_addresses(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    run = _deploy(cli, cluster, signed_ova, vcsim.env(), "--count", "40")
    assert run.returncode == 2
    assert "40 nodes need 40 addresses" in _one_line(run)
    _nothing_made(vcsim, lab)


def test_duplicate_addresses(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    dup = {"mode": "static", "addresses": [f"{subnet}.11/8", f"{subnet}.12/8", f"{subnet}.11/8"]}
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"node": {"network": dup}})
    run = _deploy(cli, cluster, signed_ova, vcsim.env())
    assert run.returncode == 2
    assert "twice" in _one_line(run)
    _nothing_made(vcsim, lab)


def test_datastore_without_room(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    # Thin disks count what they hold (as a real vCenter's do), so the shortfall is the nodes' swap files: 3 x 24 TiB.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab, extra={"node": {"memory_mb": 24 << 20}})
    run = _deploy(cli, cluster, signed_ova, vcsim.env())
    line = _one_line(run)
    assert run.returncode == 1
    assert "LocalDS_0 has" in line and "GiB free" in line and "pick another" in line
    _nothing_made(vcsim, lab)


def test_tampered_image_is_refused_before_vsphere_changes(cli, vcsim, signed_ova, subnet, lab, tmp_path):
    import shutil

    bad = tmp_path / signed_ova["ova"].name
    shutil.copy(signed_ova["ova"], bad)
    with bad.open("r+b") as f:
        f.seek(200_000)
        byte = f.read(1)
        f.seek(200_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    run = cli(["deploy", "-c", str(cluster), "--ova", str(bad), "--sig", str(signed_ova["sig"]),
               "--trusted-key", str(signed_ova["key"])], env=vcsim.env())
    assert run.returncode == 3
    assert "BAD signature" in _one_line(run)
    _nothing_made(vcsim, lab)


def test_missing_credentials(cli, signed_ova, subnet, lab, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name=lab)
    run = _deploy(cli, cluster, signed_ova, {"VMCOREOS_URL": "https://127.0.0.1:1/sdk"})
    assert run.returncode == 2
    assert "VMCOREOS_USERNAME" in _one_line(run)
