"""vmcoreos fetch and images, end to end: the installed CLI against a local release server.

The release tree is built and signed at test time with a throwaway key, which
is not the pinned Flatcar key, so every run passes it with --trusted-key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness.ova_builder import DEFECTS, build_ova
from tests.harness.release_server import ReleaseServer, ReleaseTree, version_txt
from tests.harness.signing import TestSigner, write_digests
from vmcoreos.images.verified_upload import upload_read

VERSION = "4593.2.5"
OVA = "flatcar_production_vmware_ova.ova"
FAST = {"VMCOREOS_RETRY_MAX_DELAY": "0.05"}


@pytest.fixture
def release(tmp_path, signer):
    tree = ReleaseTree(tmp_path / "srv", signer)
    with ReleaseServer(tree.root) as server:
        yield SimpleNamespace(
            tree=tree, server=server, key=signer.write_public_key(tmp_path / "test-key.asc"), cache=tmp_path / "cache"
        )


@pytest.fixture
def own_signer(tmp_path):
    """A signer of this test alone, for tests that add expired or revoked subkeys."""
    with TestSigner.create(tmp_path / "own") as s:
        yield s


def fetch(cli, rel, *extra, channel="stable", key=None, env=None):
    args = [
        "fetch", "--channel", channel, "--base-url", f"{rel.server.url}/{channel}/amd64-usr/",
        "--trusted-key", str(key or rel.key), "--cache-dir", str(rel.cache), *extra,
    ]
    if "--distro" not in extra:
        args[1:1] = ["--distro", "flatcar"]
    return cli(args, env={**FAST, **(env or {})})


def mirror_dir(rel, channel: str = "stable") -> str:
    """The cache's channel directory for the local server: a mirror's images are kept apart from the vendor's."""
    from vmcoreos.images.sources.releases import source_id

    return f"{channel}@{source_id(f'{rel.server.url}/{channel}/amd64-usr/', '')}"


def cache_files(cache: Path) -> list[str]:
    """Every file in the cache except the per-entry lock files and the host state kept beside it (state/)."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if p.is_file() and ".locks" not in p.parts and p.relative_to(cache).parts[0] != "state")


def assert_refused(run, code: int, message: str, cache: Path) -> None:
    assert run.returncode == code, run.output
    # The opt-out's own warning (tests of FCOS over the local http server need it) is not the refusal.
    lines = [line for line in run.stderr.strip().splitlines() if "(--allow-unsigned-version)" not in line]
    assert len(lines) == 1 and lines[0].startswith("vmcoreos: error: "), run.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in run.output
    assert cache_files(cache) == []


def sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def fields(stdout: str) -> dict:
    return dict(line.split(None, 1) for line in stdout.strip().splitlines())


def resign_digests(tree: ReleaseTree, directory: Path, name: str) -> None:
    tree.signer.clearsign(directory / name)
    tree.signer.sign_detached(directory / name)


# -- the good path ------------------------------------------------------------------


def test_good_signature_is_fetched_recorded_and_printed(cli, release):
    d = release.tree.publish(VERSION)
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    out = fields(run.stdout)
    cached = release.cache / "flatcar" / mirror_dir(release) / VERSION / OVA
    assert out["path"] == str(cached)
    assert out["version"] == f"flatcar stable {VERSION}"
    assert out["sha512"] == sha512(d / OVA) == sha512(cached)
    assert out["signer"].startswith(release.tree.signer.fingerprint)
    assert cache_files(release.cache) == [f"flatcar/{mirror_dir(release)}/{VERSION}/{OVA}{s}" for s in ("", ".json", ".sig")]
    record = json.loads(cached.with_name(OVA + ".json").read_text())
    assert record["sha512"] == out["sha512"] and record["size"] == cached.stat().st_size
    assert record["signer"] == release.tree.signer.fingerprint
    assert record["digests"] == OVA + ".DIGESTS"
    assert record["source"].endswith(f"/{VERSION}/{OVA}") and record["verified"]
    paths = [r.path for r in release.server.gets()]
    assert paths[0] == "/stable/amd64-usr/current/version.txt"
    assert f"/stable/amd64-usr/{VERSION}/{OVA}.DIGESTS.asc" in paths
    assert [r.range for r in release.server.gets(".ova")] == [None]


def test_json_result(cli, release):
    release.tree.publish(VERSION)
    run = fetch(cli, release, "--json")
    assert run.returncode == 0, run.output
    data = json.loads(run.stdout)
    assert data["version"] == VERSION and data["channel"] == "stable" and data["cached"] is False
    assert data["signer"] == release.tree.signer.fingerprint and len(data["sha512"]) == 128


def test_pinned_version_and_a_newer_current(cli, release):
    release.tree.publish("4459.2.4")
    release.tree.publish(VERSION)
    pinned = fetch(cli, release, "--version", "4459.2.4", "--json")
    assert pinned.returncode == 0, pinned.output
    assert json.loads(pinned.stdout)["version"] == "4459.2.4"
    assert "/stable/amd64-usr/current/version.txt" not in [r.path for r in release.server.gets()]
    current = fetch(cli, release, "--json")
    assert json.loads(current.stdout)["version"] == VERSION
    listing = cli(["images", "--cache-dir", str(release.cache), "--json"])
    assert listing.returncode == 0, listing.output
    assert sorted((i["version"], i["state"]) for i in json.loads(listing.stdout)["images"]) == [
        ("4459.2.4", "verified"), (VERSION, "verified")
    ]
    table = cli(["images", "--cache-dir", str(release.cache)])
    assert table.returncode == 0 and "4459.2.4" in table.stdout and "verified" in table.stdout


def test_expired_subkey_is_accepted(cli, tmp_path, own_signer):
    tree = ReleaseTree(tmp_path / "srv", own_signer)
    d = tree.publish(VERSION)
    expired = own_signer.sign_detached_expired(d / OVA, d / (OVA + ".sig"))
    tree.set_current(VERSION)
    with ReleaseServer(tree.root) as server:
        rel = SimpleNamespace(server=server, key=own_signer.write_public_key(tmp_path / "k.asc"), cache=tmp_path / "c")
        run = fetch(cli, rel, "--json")
    assert run.returncode == 0, run.output
    data = json.loads(run.stdout)
    assert data["expired_key"] is True and data["signing_key"] == expired
    assert data["verifier"] == "sqv"  # an ed25519 key bound with SHA-256: sqv's to judge
    # An unsigned version is accepted when asked for, but said, in one line.
    notes = [line for line in run.stderr.splitlines() if "has expired since" in line]
    assert len(notes) == 1 and expired in notes[0], run.stderr


def test_older_layout_with_combined_detached_digests_and_coreos_version_keys(cli, release):
    release.tree.publish(VERSION, digests="combined", digests_signature="sig", version_prefix="COREOS")
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    statuses = {r.path.rsplit("/", 1)[1]: r.status for r in release.server.gets()}
    assert statuses[OVA + ".DIGESTS"] == 404
    assert statuses["flatcar_production_vmware_ova.DIGESTS"] == 200
    assert statuses["flatcar_production_vmware_ova.DIGESTS.sig"] == 200


def test_release_without_digests_relies_on_the_signature(cli, release):
    release.tree.publish(VERSION, digests=None)
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert "no DIGESTS published" in run.stderr


def test_coreos_from_a_mirror(cli, release):
    release.tree.publish("2512.3.0", distro="coreos")
    run = fetch(cli, release, "--distro", "coreos", "--json")
    assert run.returncode == 0, run.output
    data = json.loads(run.stdout)
    assert data["version"] == "2512.3.0" and data["path"].endswith(f"/coreos/{mirror_dir(release)}/2512.3.0/coreos_production_vmware_ova.ova")


def test_local_ova_is_verified_in_place(cli, signed_ova, tmp_path):
    run = cli(["fetch", "--ova", str(signed_ova["ova"]), "--trusted-key", str(signed_ova["key"]),
               "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert run.returncode == 0, run.output
    data = json.loads(run.stdout)
    assert data["path"] == str(signed_ova["ova"]) and data["version"].startswith("local-")
    assert cache_files(tmp_path / "cache") == []


def test_ova_by_url_is_cached_and_refetched_when_its_signature_changes(cli, release):
    d = release.tree.publish(VERSION)
    url = f"{release.server.url}/stable/amd64-usr/{VERSION}/{OVA}"
    first = fetch(cli, release, "--ova", url, "--json")
    assert first.returncode == 0, first.output
    assert json.loads(first.stdout)["version"].startswith("url-")
    again = fetch(cli, release, "--ova", url, "--json")
    assert json.loads(again.stdout)["cached"] is True
    assert len(release.server.gets(".ova")) == 1
    build_ova(d / OVA, disk_bytes=1 << 20, seed=99)  # the same URL now serves other bytes
    release.tree.signer.sign_detached(d / OVA)
    changed = fetch(cli, release, "--ova", url, "--json")
    assert changed.returncode == 0, changed.output
    assert json.loads(changed.stdout)["cached"] is False
    assert json.loads(changed.stdout)["sha512"] == sha512(d / OVA)
    assert len(release.server.gets(".ova")) == 2


def test_insecure_skip_verify_warns_and_is_listed_unverified(cli, release):
    release.tree.publish(VERSION)
    run = cli(["fetch", "--base-url", f"{release.server.url}/stable/amd64-usr/", "--insecure-skip-verify",
               "--cache-dir", str(release.cache)], env=FAST)
    assert run.returncode == 0, run.output
    assert "WARNING: signature verification is OFF" in run.stderr
    assert not release.server.gets(".sig") and not release.server.gets(".DIGESTS.asc")
    listing = json.loads(cli(["images", "--cache-dir", str(release.cache), "--json"]).stdout)["images"]
    assert [i["state"] for i in listing] == ["unverified"]
    # A verifying run does not trust that entry: it has no signature, so it is fetched again.
    secure = fetch(cli, release, "--json")
    assert secure.returncode == 0 and json.loads(secure.stdout)["cached"] is False


# -- network trouble ------------------------------------------------------------------


def test_dropped_connection_resumes_with_range_and_verifies(cli, release):
    d = release.tree.publish(VERSION, disk_bytes=3 << 20)
    release.server.drop_after(f"/{VERSION}/{OVA}", 1_000_000)
    run = fetch(cli, release, "--json")
    assert run.returncode == 0, run.output
    ranges = [r.range for r in release.server.gets(f"/{VERSION}/{OVA}")]
    assert ranges[0] is None and len(ranges) == 2 and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1][6:-1]) <= 1_000_000
    assert json.loads(run.stdout)["sha512"] == sha512(d / OVA)


def test_server_that_ignores_range_gets_a_clean_restart(cli, release):
    d = release.tree.publish(VERSION, disk_bytes=3 << 20)
    release.server.ignore_range()
    release.server.drop_after(f"/{VERSION}/{OVA}", 1_000_000)
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert "the server sent the whole file again; starting over" in run.stderr
    assert [r.status for r in release.server.gets(f"/{VERSION}/{OVA}")] == [200, 200]
    assert fields(run.stdout)["sha512"] == sha512(d / OVA)


def test_503_then_success(cli, release):
    release.tree.publish(VERSION)
    release.server.fail(f"/{VERSION}/{OVA}", 2)
    release.server.fail("version.txt", 1, status=429)
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert [r.status for r in release.server.gets(f"/{VERSION}/{OVA}")] == [503, 503, 200]
    assert "HTTP 503; retry 1 of 5" in run.stderr


def test_retries_run_out(cli, release):
    release.tree.publish(VERSION)
    release.server.fail(f"/{VERSION}/{OVA}", 10)
    run = fetch(cli, release, "-q", "--retries", "2")
    assert_refused(run, 1, "HTTP 503 (gave up after 2 retries", release.cache)
    assert len(release.server.gets(f"/{VERSION}/{OVA}")) == 3


def test_missing_release_is_a_download_error(cli, release):
    release.tree.publish(VERSION)
    run = fetch(cli, release, "-q", "--version", "1.2.3")
    assert_refused(run, 1, "HTTP 404; check --version", release.cache)


def test_two_runs_at_once_download_once(cli, release):
    release.tree.publish(VERSION, disk_bytes=8 << 20)
    runs = []
    threads = [threading.Thread(target=lambda: runs.append(fetch(cli, release, "--json"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    assert sorted(json.loads(r.stdout)["cached"] for r in runs) == [False, True]
    assert len(release.server.gets(f"/{VERSION}/{OVA}")) == 1


# -- the cache ------------------------------------------------------------------------


def test_cached_rerun_downloads_nothing(cli, release):
    release.tree.publish(VERSION)
    assert fetch(cli, release).returncode == 0
    release.server.clear_log()
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert fields(run.stdout)["cached"].startswith("yes")
    assert [r.path.rsplit("/", 1)[1] for r in release.server.gets()] == ["version.txt", "version.txt.sig"]


def test_corrupt_cache_is_discarded_and_fetched_again(cli, release):
    d = release.tree.publish(VERSION)
    assert fetch(cli, release).returncode == 0
    cached = release.cache / "flatcar" / mirror_dir(release) / VERSION / OVA
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert "failed verification" in run.stderr and "discarding it" in run.stderr
    assert fields(run.stdout)["cached"].startswith("no")
    assert sha512(cached) == sha512(d / OVA)
    assert len(release.server.gets(f"/{VERSION}/{OVA}")) == 2


# -- refusals: exit 3, one line, nothing left in the cache -----------------------------


def test_tampered_byte(cli, release):
    d = release.tree.publish(VERSION, digests=None)
    data = bytearray((d / OVA).read_bytes())
    data[len(data) - 5000] ^= 1
    (d / OVA).write_bytes(bytes(data))
    assert_refused(fetch(cli, release, "-q"), 3, "BAD signature", release.cache)


def test_truncated_signature(cli, release):
    d = release.tree.publish(VERSION)
    sig = d / (OVA + ".sig")
    sig.write_bytes(sig.read_bytes()[:20])
    assert_refused(fetch(cli, release, "-q"), 3, OVA, release.cache)


def test_signature_by_an_unknown_key(cli, release, tmp_path):
    d = release.tree.publish(VERSION)
    with TestSigner.create(tmp_path / "stranger") as stranger:
        stranger.sign_detached(d / OVA)
    assert_refused(fetch(cli, release, "-q"), 3, "signed by unknown key", release.cache)


def test_revoked_subkey(cli, tmp_path, own_signer):
    tree = ReleaseTree(tmp_path / "srv", own_signer)
    d = tree.publish(VERSION)
    own_signer.sign_detached_revoked(d / OVA, d / (OVA + ".sig"))
    with ReleaseServer(tree.root) as server:
        rel = SimpleNamespace(server=server, key=own_signer.write_public_key(tmp_path / "k.asc"), cache=tmp_path / "c")
        assert_refused(fetch(cli, rel, "-q"), 3, "revoked key", rel.cache)


def test_missing_signature(cli, release):
    d = release.tree.publish(VERSION)
    (d / (OVA + ".sig")).unlink()
    assert_refused(fetch(cli, release, "-q"), 3, "no signature at", release.cache)


def test_digests_mismatch(cli, release):
    d = release.tree.publish(VERSION)
    other = build_ova(d.parent / "other.ova", disk_bytes=1 << 20, seed=7)
    digests = d / (OVA + ".DIGESTS")
    write_digests(other, digests)
    digests.write_text(digests.read_text().replace("other.ova", OVA))
    resign_digests(release.tree, d, digests.name)
    assert_refused(fetch(cli, release, "-q"), 3, "differs from", release.cache)
    assert len(release.server.gets(f"/{VERSION}/{OVA}")) == 1


def test_bad_digests_signature_stops_before_the_download(cli, release):
    d = release.tree.publish(VERSION)
    asc = d / (OVA + ".DIGESTS.asc")
    text = asc.read_text()
    sha_line = text.index("# SHA512 HASH\n") + len("# SHA512 HASH\n")
    flipped = "0" if text[sha_line] != "0" else "1"
    asc.write_text(text[:sha_line] + flipped + text[sha_line + 1 :])
    assert_refused(fetch(cli, release, "-q"), 3, "BAD signature", release.cache)
    assert release.server.gets(f"/{VERSION}/{OVA}") == []


def test_unsigned_digests_are_refused(cli, release):
    d = release.tree.publish(VERSION, digests_signature="asc")
    (d / (OVA + ".DIGESTS.asc")).unlink()
    assert_refused(fetch(cli, release, "-q"), 3, "neither a .asc nor a .sig", release.cache)


UNSAFE = {
    "absolute-name": "points outside the archive",
    "dotdot-name": "points outside the archive",
    "symlink": "is a link",
    "hardlink": "is a link",
    "device": "device or special file",
    "no-ovf": "has no .ovf descriptor",
    "missing-disk": "archive has no such member",
    "bad-sha1": "manifest does not match",
    "bad-sha256": "manifest does not match",
    "truncated": "the OVA is truncated",
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_unsafe_archive_exits_2_and_leaves_nothing(cli, release, defect):
    release.tree.publish(VERSION, defect=defect)  # properly signed: only the archive itself is wrong
    run = fetch(cli, release, "-q")
    assert_refused(run, 2, UNSAFE[defect], release.cache)
    assert run.stderr.startswith(f"vmcoreos: error: {OVA}")  # the name it will have, not the .part


# -- Fedora CoreOS and CoreOS ------------------------------------------------------------


def fcos(cli, rel, *extra):
    # The local server is http; FCOS metadata over http needs the explicit opt-out (https is required otherwise).
    return cli(["fetch", "--distro", "fedora-coreos", "--channel", "stable", "--base-url", f"{rel.server.url}/streams/",
                "--cache-dir", str(rel.cache), "--allow-unsigned-version", *extra], env=FAST)


def test_fedora_coreos_stream(cli, release):
    image = release.tree.publish_fcos("stable", "41.20250105.3.0", release.server.url)
    run = fcos(cli, release, "--trusted-key", str(release.key), "--json")
    assert run.returncode == 0, run.output
    data = json.loads(run.stdout)
    assert data["version"] == "41.20250105.3.0" and data["sha512"] == sha512(image)
    assert f"/fedora-coreos/stable@m" in data["path"] and data["path"].endswith(f"/41.20250105.3.0/{image.name}")


def test_fedora_coreos_sha256_mismatch(cli, release):
    release.tree.publish_fcos("stable", "41.20250105.3.0", release.server.url, sha256="ab" * 32)
    run = fcos(cli, release, "--trusted-key", str(release.key), "-q")
    assert_refused(run, 3, "SHA256 mismatch", release.cache)


def test_fedora_coreos_of_an_unpinned_major_needs_a_trusted_key(cli, release):
    # 46 is past the pinned 43-45: the stream is read (it names the version), the image never is.
    release.tree.publish_fcos("stable", "46.20270105.3.0", release.server.url)
    run = fcos(cli, release, "-q")
    assert_refused(run, 2, "--trusted-key fedora-coreos=FILE", release.cache)
    assert "Fedora 46 key" in run.stderr and "fedora.gpg" in run.stderr
    assert [r.path for r in release.server.requests] == ["/streams/stable.json"]


def test_fedora_coreos_is_checked_against_its_majors_pinned_key(cli, release):
    # A 43 build signed by anyone but Fedora 43 (here the test key, not trusted) is refused: the pin is used.
    release.tree.publish_fcos("stable", "43.20261115.3.0", release.server.url)
    run = fcos(cli, release, "-q")
    assert_refused(run, 3, "signed by unknown key", release.cache)


def test_coreos_without_base_url(cli, tmp_path):
    run = cli(["fetch", "--distro", "coreos", "--cache-dir", str(tmp_path / "c"), "-q"])
    assert_refused(run, 2, "end of life", tmp_path / "c")
    assert "--base-url" in run.stderr


def test_mirror_credentials_are_never_printed_or_recorded(cli, release):
    release.tree.publish(VERSION)
    host = release.server.url.split("://", 1)[1]
    run = cli(["fetch", "--base-url", f"http://lab:s3cret-pw@{host}/stable/amd64-usr/", "--trusted-key", str(release.key),
               "--cache-dir", str(release.cache)], env=FAST)
    assert run.returncode == 0, run.output
    record = (release.cache / "flatcar" / mirror_dir(release) / VERSION / (OVA + ".json")).read_text()
    listing = cli(["images", "--cache-dir", str(release.cache), "--json"])
    for text in (run.output, record, listing.output):
        assert "s3cret-pw" not in text and "lab:" not in text
    assert host in record


def test_images_on_an_empty_cache(cli, tmp_path):
    run = cli(["images", "--cache-dir", str(tmp_path / "none"), "--json"])
    assert run.returncode == 0 and json.loads(run.stdout) == {"schema": 1, "cache_dir": str(tmp_path / "none"), "images": []}
    # The empty listing once said nothing of where it looked.
    assert run.stderr.strip() == f"vmcoreos: WARNING: no image cache at {tmp_path / 'none'}; `vmcoreos fetch` fills it" \
        " (or pass the --cache-dir fetch used)"


def test_a_credentialed_base_url_with_a_bad_port_is_one_line_without_the_password(cli, tmp_path):
    # This once printed "unexpected InvalidURL: ... https://user:secret@...".
    run = cli(["fetch", "--base-url", "https://user:secret@mirror.invalid:99999/stable/amd64-usr/",
               "--cache-dir", str(tmp_path / "c"), "-q"], env=FAST)
    assert_refused(run, 2, "is not valid", tmp_path / "c")
    assert "secret" not in run.output and "unexpected" not in run.output


# -- the version label is signed, and never goes backwards -------------------------------------


def test_a_relabelled_old_release_is_refused(cli, release):
    # The attack: an old, validly signed image served as 9999.0.0 under an edited version.txt.
    old = release.tree.publish("4459.2.4")
    fake = release.tree.channel_dir() / "9999.0.0"
    shutil.copytree(old, fake)
    (fake / "version.txt").write_text(version_txt("9999.0.0"))
    release.tree.set_current("9999.0.0")
    run = fetch(cli, release, "-q")
    assert_refused(run, 3, "version.txt.sig: BAD signature", release.cache)
    assert release.server.gets(".ova") == []


def test_an_unsigned_version_txt_is_refused_unless_allowed(cli, release):
    release.tree.publish(VERSION)
    (release.tree.channel_dir() / "current" / "version.txt.sig").unlink()
    run = fetch(cli, release, "-q")
    assert_refused(run, 3, "--allow-unsigned-version", release.cache)
    allowed = fetch(cli, release, "-q", "--allow-unsigned-version", "--json")
    assert allowed.returncode == 0, allowed.output
    assert json.loads(allowed.stdout)["version"] == VERSION
    warnings = allowed.stderr.strip().splitlines()
    assert len(warnings) == 1 and "is unsigned; trusting its version" in warnings[0]


def test_current_never_goes_below_what_is_cached(cli, release):
    # A replayed, validly signed old current/version.txt: the cache already holds something newer.
    release.tree.publish("4459.2.4")
    release.tree.publish(VERSION)
    assert fetch(cli, release).returncode == 0
    release.tree.set_current("4459.2.4")
    release.server.clear_log()
    run = fetch(cli, release, "--json")
    assert run.returncode == 0, run.output
    assert json.loads(run.stdout)["version"] == VERSION and json.loads(run.stdout)["cached"] is True
    assert "older than 4593.2.5 already in the image cache; staying on 4593.2.5" in run.stderr
    assert release.server.gets(".ova") == []
    pinned = fetch(cli, release, "-q", "--version", "4459.2.4", "--json")  # going back on purpose still works
    assert pinned.returncode == 0 and json.loads(pinned.stdout)["version"] == "4459.2.4", pinned.output


def test_the_floor_from_deployed_nodes(release, tmp_path):
    # cluster.resolve_image passes the highest vmcoreos.image_version of the cluster's nodes.
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    release.tree.publish(VERSION)
    release.tree.publish("4459.2.4")  # now current
    image = ImageSettings(base_url=f"{release.server.url}/stable/amd64-usr/",
                          trusted_keys=(TrustedKey(release.key, "flatcar"),))
    events = []
    quiet = SimpleNamespace(event=events.append, transfer=lambda *a: None)
    got = obtain(image, cache_dir=release.cache, reporter=quiet, floor=VERSION)
    got.close()
    assert got.version == VERSION
    assert any("already deployed on the cluster's nodes; staying on" in e for e in events)
    lower = obtain(image, cache_dir=tmp_path / "other-cache", reporter=quiet, floor="4000.0.0")
    lower.close()
    assert lower.version == "4459.2.4"


def test_each_mirror_has_its_own_cache_entries(cli, release):
    release.tree.publish(VERSION)
    assert fetch(cli, release).returncode == 0
    with ReleaseServer(release.tree.root) as other:
        second = SimpleNamespace(tree=release.tree, server=other, key=release.key, cache=release.cache)
        run = fetch(cli, second, "--json")
    assert run.returncode == 0, run.output
    assert json.loads(run.stdout)["cached"] is False and len(other.gets(".ova")) == 1
    assert len([p for p in cache_files(release.cache) if p.endswith(".ova")]) == 2


def test_combined_digests_must_list_the_version_txt_that_named_the_release(cli, release):
    release.tree.publish(VERSION, digests="combined", digests_signature="asc")
    current = release.tree.channel_dir() / "current" / "version.txt"
    current.write_text(current.read_text() + "# edited\n")
    release.tree.signer.sign_detached(current)
    run = fetch(cli, release, "-q")
    assert_refused(run, 3, "is not the one flatcar_production_vmware_ova.DIGESTS lists", release.cache)


def test_fcos_image_whose_ovf_names_another_version_is_refused(cli, release):
    release.tree.publish_fcos("stable", "41.20250105.3.0", release.server.url, product_version="40.20240101.3.0")
    run = fcos(cli, release, "--trusted-key", str(release.key), "-q")
    assert_refused(run, 3, "says it is 40.20240101.3.0 in its signed OVF", release.cache)


def test_fcos_over_plain_http_needs_the_opt_out(cli, release):
    release.tree.publish_fcos("stable", "41.20250105.3.0", release.server.url)
    run = cli(["fetch", "--distro", "fedora-coreos", "--base-url", f"{release.server.url}/streams/",
               "--trusted-key", str(release.key), "--cache-dir", str(release.cache), "-q"], env=FAST)
    assert_refused(run, 2, "must be https://", release.cache)
    assert release.server.requests == []


def test_a_plain_http_mirror_is_noted(cli, release):
    release.tree.publish(VERSION)
    run = fetch(cli, release)
    assert run.returncode == 0, run.output
    assert len([line for line in run.stderr.splitlines() if "is plain http" in line]) == 1


# -- one verified descriptor, a private cache -----------------------------------------------------


def test_a_symlinked_local_ova_is_refused(cli, signed_ova, tmp_path):
    link = tmp_path / "flatcar.ova"
    link.symlink_to(signed_ova["ova"])
    run = cli(["fetch", "--ova", str(link), "--sig", str(signed_ova["sig"]), "--trusted-key", str(signed_ova["key"]),
               "--cache-dir", str(tmp_path / "cache"), "-q"])
    assert_refused(run, 2, "is a symlink", tmp_path / "cache")


def test_an_image_swapped_after_verification_is_never_read(signed_ova, tmp_path):
    from vmcoreos.errors import VerificationError
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    ova = tmp_path / "flatcar.ova"
    shutil.copyfile(signed_ova["ova"], ova)
    image = ImageSettings(ova=str(ova), sig=str(signed_ova["sig"]), trusted_keys=(TrustedKey(signed_ova["key"], "flatcar"),))
    quiet = SimpleNamespace(event=lambda m: None, transfer=lambda *a: None)
    verified = obtain(image, cache_dir=tmp_path / "cache", reporter=quiet)
    try:
        other = build_ova(tmp_path / "other.ova", disk_bytes=4 << 20, seed=99)
        os.replace(other, ova)  # a writable --ova directory: another file under the same name
        with upload_read(verified) as archive:
            disk = archive.descriptor.files[0].href
            stream, _ = archive.open(disk)
            with stream:
                assert hashlib.sha512(stream.read()).hexdigest() == member_sha512(signed_ova["ova"], disk)
            # Unlinking the verified file changed its ctime: the import refuses to complete, to be safe.
            with pytest.raises(VerificationError, match="replaced or renamed after it was verified"):
                archive.check_unchanged()
    finally:
        verified.close()


def test_an_image_written_to_after_verification_fails_the_final_check(signed_ova, tmp_path):
    from vmcoreos.errors import VerificationError
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    ova = tmp_path / "flatcar.ova"
    shutil.copyfile(signed_ova["ova"], ova)
    image = ImageSettings(ova=str(ova), sig=str(signed_ova["sig"]), trusted_keys=(TrustedKey(signed_ova["key"], "flatcar"),))
    verified = obtain(image, cache_dir=tmp_path / "cache", reporter=SimpleNamespace(event=print, transfer=lambda *a: None))
    try:
        with upload_read(verified) as archive:
            archive.check_unchanged()  # untouched: fine
        with open(ova, "r+b") as writer:
            writer.seek(0, 2)
            writer.write(bytes(512))  # in place, same inode: caught before the upload would complete
        with upload_read(verified) as archive, pytest.raises(VerificationError, match="written to"):
            archive.check_unchanged()
    finally:
        verified.close()


def member_sha512(ova: Path, name: str) -> str:
    import tarfile

    with tarfile.open(ova) as tar:
        return hashlib.sha512(tar.extractfile(name).read()).hexdigest()


def test_a_cache_others_can_write_is_refused(cli, release):
    release.tree.publish(VERSION)
    release.cache.mkdir()
    release.cache.chmod(0o777)
    run = fetch(cli, release, "-q")
    assert_refused(run, 2, f"run chmod go-w {release.cache}", release.cache)
    assert release.server.requests == []


# -- an image is bound to the release it is served as -----------------------------

DAY = 86400


def _mix(tree, new: str, old: str, *, digests: bool = False) -> Path:
    """Release new's directory (and current/) with its own signed version.txt but release old's signed OVA
    (and old's DIGESTS if asked, else none)."""
    d = tree.channel_dir() / new
    for f in d.glob(OVA + "*"):
        f.unlink()
    for f in (tree.channel_dir() / old).glob(OVA + "*"):
        if digests or ".DIGESTS" not in f.name:
            shutil.copyfile(f, d / f.name)
    tree.set_current(new)
    return d


def test_an_old_signed_ova_beside_a_new_signed_version_txt_is_refused(cli, release):
    # The attack: the newest release's genuine version.txt, a release's OVA signed 60 days before, no DIGESTS.
    import time as _time

    release.tree.publish("4459.2.4", signed_at=int(_time.time()) - 60 * DAY, current=False)
    release.tree.publish(VERSION)
    _mix(release.tree, VERSION, "4459.2.4")
    run = fetch(cli, release, "-q")
    assert_refused(run, 3, "more than 36 h apart", release.cache)
    assert release.server.gets(".ova") == []  # refused before a byte of the image
    # Its signed DIGESTS served too: still the old build's times.
    _mix(release.tree, VERSION, "4459.2.4", digests=True)
    run = fetch(cli, release, "-q")
    assert_refused(run, 3, "more than 72 h apart", release.cache)
    # A pinned version is bound by its own directory's version.txt the same way.
    mixed = release.tree.channel_dir() / "4593.9.9"
    shutil.copytree(release.tree.channel_dir() / VERSION, mixed)
    (mixed / "version.txt").write_text(version_txt("4593.9.9"))
    release.tree.signer.sign_detached(mixed / "version.txt")
    for f in mixed.glob("*.DIGESTS*"):
        f.unlink()
    run = fetch(cli, release, "-q", "--version", "4593.9.9")
    assert_refused(run, 3, "more than 36 h apart", release.cache)


def test_a_release_with_neither_digests_nor_a_signed_label_is_refused(cli, release):
    release.tree.publish(VERSION, digests=None)
    (release.tree.channel_dir() / VERSION / "version.txt").unlink()
    run = fetch(cli, release, "-q", "--version", VERSION)
    assert_refused(run, 3, "has no signed DIGESTS and no signed version.txt", release.cache)
    # Its label back: the same image is bound and fetched.
    release.tree.publish(VERSION, digests=None)
    ok = fetch(cli, release, "-q", "--version", VERSION, "--json")
    assert ok.returncode == 0, ok.output and json.loads(ok.stdout)["version"] == VERSION


def test_bytes_recorded_under_another_version_are_refused(cli, release):
    # Two releases signed the same day (within the window), the old one's bytes served as the new one.
    release.tree.publish("4459.2.4")
    assert fetch(cli, release, "-q").returncode == 0
    release.tree.publish(VERSION, current=False)
    _mix(release.tree, VERSION, "4459.2.4", digests=True)
    run = fetch(cli, release, "-q")
    assert run.returncode == 3, run.output
    assert "recorded in this host's image cache as 4459.2.4, not 4593.2.5" in run.stderr
    assert [p for p in cache_files(release.cache) if VERSION in p] == []


def test_an_image_signed_before_what_the_nodes_run_needs_a_pinned_version(release, tmp_path):
    import time as _time

    from vmcoreos.errors import VerificationError
    from vmcoreos.images.trust.binding import Deployed
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    release.tree.publish(VERSION, signed_at=int(_time.time()) - 10 * DAY)
    image = ImageSettings(base_url=f"{release.server.url}/stable/amd64-usr/",
                          trusted_keys=(TrustedKey(release.key, "flatcar"),))
    quiet = SimpleNamespace(event=lambda *a: None, transfer=lambda *a: None)
    nodes = Deployed("4000.0.0", int(_time.time()) - DAY, {})
    with pytest.raises(VerificationError, match="before the image the cluster's nodes run"):
        obtain(image, cache_dir=release.cache, reporter=quiet, deployed=nodes)
    pinned = obtain(ImageSettings(base_url=image.base_url, trusted_keys=image.trusted_keys, version=VERSION),
                    cache_dir=release.cache, reporter=quiet, deployed=nodes)
    pinned.close()
    assert pinned.version == VERSION
