"""On the bed: plan before change (--dry-run, --yes for a scale-down) and output scripts can read."""

from __future__ import annotations

import json
import os
import subprocess


from tests.harness.runner import OUTPUT_LOG, STATE, VMCOREOS
from tests.e2e import etcdclient
from tests.e2e.helpers import inventory, write_cluster
from tests.harness.onterminal import run_on_a_terminal


def _image_args(ova):
    return ["--ova", str(ova["ova"]), "--sig", str(ova["sig"]), "--trusted-key", str(ova["key"])]


def _deploy(cli, cluster, ova, env, *extra):
    return cli(["deploy", "-c", str(cluster), *_image_args(ova), *extra], env=env)


def _answer_on_a_terminal(args, env, answer: str) -> tuple[int, str]:
    """Run vmcoreos with a pseudo-terminal as stdin, answer its question: (exit code, stderr)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
    full.update(TMPDIR=str(STATE / "tmp"), **env)
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen([VMCOREOS, *args], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=full)
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(leader)
    OUTPUT_LOG.append(out + err)
    assert "remove lab-03 (etcd member, then VM)? [y/N]" in out, out + err
    assert "--count 2 removes lab-03 from cluster 'lab'" in err
    return proc.returncode, err


def _ours(vcsim) -> dict:
    return {n: (v["power"], v["template"]) for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"}


def _three_nodes(cli, vcsim, ova, subnet, tmp_path, env):
    """A deployed 3-node cluster: its cluster file and what vSphere holds of it."""
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    first = _deploy(cli, cluster, ova, env, "--count", "3")
    assert first.returncode == 0, first.output
    return cluster, _ours(vcsim)


def test_dry_runs_of_deploy_rebuild_and_destroy_show_the_plan_and_change_nothing(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster, before = _three_nodes(cli, vcsim, signed_ova, subnet, tmp_path, env)

    up = _deploy(cli, cluster, signed_ova, env, "--count", "5", "--dry-run", "--json")
    assert up.returncode == 0, up.output
    plan = json.loads(up.stdout)
    assert plan["schema"] == 1 and plan["command"] == "deploy" and plan["dry_run"] is True
    assert plan["nodes"] == [{"name": f"lab-0{i}", "action": "keep", "reasons": []} for i in (1, 2, 3)] + [
        {"name": f"lab-0{i}", "action": "create", "reasons": ["missing"]} for i in (4, 5)]
    # Where the count comes from: --count 5 against the file's 3 is a one-off, and the plan says so.
    assert plan["count"] == {"count": 5, "cluster_file": 3, "flag": True, "source": (
        "5 nodes (--count, a one-off: the cluster file says 3, and a later run without --count converges back to that)")}
    # A local --ova is not read by a dry run: its version is the OVA's, unknown until it is.
    assert plan["image"] == {"distro": "flatcar", "version": None, "template": None, "import": None}

    down = _deploy(cli, cluster, signed_ova, env, "--count", "2", "--dry-run")
    assert down.returncode == 0, down.output
    assert down.stdout.splitlines()[0] == "deploy plan for cluster 'lab' (dry run: nothing was changed)"
    rows = [line.split(None, 2) for line in down.stdout.splitlines()[2:4]]
    assert rows == [["lab-03", "remove", "beyond the wanted count"], ["lab-01", "keep"]]
    assert down.stdout.splitlines()[-1] == "image: none needed (no node is created or replaced)"

    rebuild = cli(["rebuild", "-c", str(cluster), *_image_args(signed_ova), "--dry-run", "--json"], env=env)
    assert rebuild.returncode == 0, rebuild.output
    # An unread local OVA: each node says what it runs, and that the dry run cannot know the OVA's build.
    nodes = json.loads(rebuild.stdout)["nodes"]
    assert [n["action"] for n in nodes] == ["replace if the OVA's build differs"] * 3
    assert all(n["reasons"][0].endswith("the dry run does not read a local OVA to learn its build") for n in nodes)

    destroy = cli(["destroy", "-c", str(cluster), "--dry-run", "--json"], env=env)
    assert destroy.returncode == 0, destroy.output
    assert json.loads(destroy.stdout)["nodes"] == [
        {"name": f"lab-0{i}", "action": "remove", "reasons": []} for i in (1, 2, 3)]

    assert _ours(vcsim) == before
    assert sorted(m["name"] for m in etcdclient.members(f"http://{subnet}.11:2379")) == ["lab-01", "lab-02", "lab-03"]


def test_a_scale_down_off_a_terminal_needs_yes_and_status_piped_is_whole(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster, before = _three_nodes(cli, vcsim, signed_ova, subnet, tmp_path, env)

    # It removed lab-03's member and VM without asking (stdin is /dev/null here, not a terminal).
    refused = _deploy(cli, cluster, signed_ova, env, "--count", "2")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines()[-1] == (
        "vmcoreos: error: deploy would remove lab-03 (--count 2 is below the cluster's size); refusing without a"
        " terminal to ask on: pass --yes to confirm, or --dry-run to see the plan")
    assert sum("error" in line for line in refused.stderr.splitlines()) == 1
    assert _ours(vcsim) == before
    # On a terminal it asks; a "no" changes nothing either, and says so (it exited 1 without a word).
    code, err = _answer_on_a_terminal(["deploy", "-c", str(cluster), *_image_args(signed_ova), "--count", "2"], env, "n")
    assert code == 0 and err.splitlines()[-1] == "vmcoreos: answered no; nothing was changed", err
    assert _ours(vcsim) == before
    ep = f"http://{subnet}.11:2379"
    members = etcdclient.members(ep)
    assert sorted(m["name"] for m in members) == ["lab-01", "lab-02", "lab-03"]

    # Piped with COLUMNS=80, the table was cut ("127.40.…", "8e9e05…"): now one whole row per node.
    status = cli(["status", "-c", str(cluster)], env={**env, "COLUMNS": "80"})
    assert status.returncode == 0, status.output
    lines = status.stdout.splitlines()
    assert len(lines) == 4 and "…" not in status.stdout
    for line, i in zip(lines[1:], (1, 2, 3)):
        member = next(m for m in members if m["name"] == f"lab-0{i}")
        assert f" {subnet}.{10 + i} " in line and f" {int(member['ID']):x} " in f"{line} "

    # On a terminal 80 columns wide, no value is split across lines (it showed `poweredO`/`n`, `127.0.60`/`.21`).
    term_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))},
                "TMPDIR": str(STATE / "tmp"), **env}
    code, shown = run_on_a_terminal([VMCOREOS, "status", "-c", str(cluster)], term_env, columns=80)
    OUTPUT_LOG.append(shown)
    assert code == 0, shown
    lines = shown.splitlines()
    assert len(lines) == 4 and max(map(len, lines)) <= 80, shown
    for line, i in zip(lines[1:], (1, 2, 3)):
        cells = line.split()
        assert cells[0] == f"lab-0{i}" and f"{subnet}.{10 + i}" in cells and "poweredOn" in cells and "healthy" in cells
    wide = run_on_a_terminal([VMCOREOS, "status", "-c", str(cluster), "-o", "wide"], term_env, columns=80)[1]
    for i in (1, 2, 3):
        member = next(m for m in members if m["name"] == f"lab-0{i}")
        assert f"{int(member['ID']):x}" in wide.split()

    # -v: SOAP method names and hosts on stderr, never the password.
    verbose = cli(["-v", "status", "-c", str(cluster), "--json"], env=env)
    assert verbose.returncode == 0 and json.loads(verbose.stdout)["state"] == "healthy"
    assert " vmcoreos: SOAP Login on SessionManager:" in verbose.stderr
    assert " vmcoreos: SOAP RetrievePropertiesEx on PropertyCollector:" in verbose.stderr
    assert env["VMCOREOS_PASSWORD"] not in verbose.stderr

    done = _deploy(cli, cluster, signed_ova, env, "--count", "2", "--yes", "--json")
    assert done.returncode == 0, done.output
    assert json.loads(done.stdout)["removed"] == ["lab-03"]


def test_a_dry_run_from_a_channel_reads_the_signed_version_but_not_the_image(cli, vcsim, signer, subnet, tmp_path, env):
    from tests.harness.release_server import ReleaseServer, ReleaseTree

    tree = ReleaseTree(tmp_path / "srv", signer)
    tree.publish("4593.2.5", disk_bytes=2 << 20)
    key = signer.write_public_key(tmp_path / "release-key.asc")
    with ReleaseServer(tree.root) as server:
        image = {"distro": "flatcar", "channel": "stable", "version": "current",
                 "base_url": f"{server.url}/stable/amd64-usr/", "trusted_keys": [str(key)]}
        cluster = write_cluster(tmp_path / "c.yaml", subnet, extra={"image": image})
        run = cli(["-v", "deploy", "-c", str(cluster), "--dry-run", "--json", "--retries", "0",
                   "--cache-dir", str(tmp_path / "own-cache")], env=env)
        assert run.returncode == 0, run.output
        plan = json.loads(run.stdout)
        assert [n["action"] for n in plan["nodes"]] == ["create"] * 3
        assert plan["image"] == {"distro": "flatcar", "version": "4593.2.5", "template": plan["image"]["template"],
                                 "import": True}
        assert plan["image"]["template"].startswith("lab-") and "4593.2.5" in plan["image"]["template"]
        # version.txt and its signature were read; the OVA, its signature and DIGESTS were not.
        assert server.gets("/current/version.txt") and server.gets("/current/version.txt.sig")
        assert not server.gets(".ova") and not server.gets(".ova.sig") and not server.gets(".DIGESTS.asc")
        # -v: one line per HTTP request, method, host and path; no query, no body.
        assert f"vmcoreos: HTTP GET {server.url}/stable/amd64-usr/current/version.txt -> 200" in run.stderr
    assert (tmp_path / "own-cache").is_dir()  # deploy's --cache-dir reached the image code
    missing = cli(["deploy", "-c", str(cluster), "--ova", str(tmp_path / "no.ova"), "--dry-run"], env=env)
    assert missing.returncode == 2 and missing.stderr == f"vmcoreos: error: OVA {tmp_path / 'no.ova'} is not a file;" \
        " check --ova or image.ova\n"
    assert _ours(vcsim) == {}
    assert not (tmp_path / "locks").exists() or not list((tmp_path / "locks").glob("*.lock"))
