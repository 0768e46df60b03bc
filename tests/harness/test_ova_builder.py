"""Tests of the test harness itself: tests/harness/ova_builder.py and signing.py.

Importing the generated OVF descriptors into the simulator (build/vcsim) is
tests/e2e/test_ova_import_spec.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from tests.harness.ova_layouts import HARDWARE
from tests.harness.ova_builder import (
    DEFECTS,
    DISTROS,
    GiB,
    MiB,
    PROFILES,
    build_ova,
    build_ovf_descriptor,
    iter_disk_chunks,
    symlink_member,
)
from tests.harness.signing import TestSigner, run_gpgv, write_digests

REPO = Path(__file__).resolve().parents[2]

NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
OVF = "{%s}" % NS["ovf"]
VMW = "{%s}" % NS["vmw"]
MF_LINE = re.compile(r"^(SHA1|SHA256)\((?P<name>[^)]+)\)= (?P<hex>[0-9a-f]+)$")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def read_members(path: Path) -> tuple[list[tarfile.TarInfo], Exception | None]:
    """Headers in order, and the error that stopped reading, if any."""
    members: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                members.append(m)
    except tarfile.TarError as e:
        return members, e
    return members, None


def member_digest(path: Path, name: str, algo: str) -> str:
    h = hashlib.new(algo.lower())
    with tarfile.open(path, "r:") as tf:
        f = tf.extractfile(name)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def member_bytes(path: Path, name: str, limit: int | None = None) -> bytes:
    with tarfile.open(path, "r:") as tf:
        return tf.extractfile(name).read(limit)


def parse_mf(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        m = MF_LINE.match(line)
        assert m, f"bad manifest line {line!r}"
        out.append((m.group(1), m.group("name"), m.group("hex")))
    return out


def ovf_disk_href(ovf_text: str) -> str:
    root = ET.fromstring(ovf_text)
    return root.find("ovf:References/ovf:File", NS).get(OVF + "href")


# ---------------------------------------------------------------------------
# OVA layout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("distro", DISTROS)
def test_ova_is_a_tar_in_vendor_order(tmp_path, distro):
    p = PROFILES[distro]
    ova = build_ova(tmp_path, distro=distro)
    assert ova == tmp_path / p.ova_name
    members, err = read_members(ova)
    assert err is None
    expected = [p.ovf_name, p.mf_name, p.disk_name] if p.manifest else [p.ovf_name, p.disk_name]
    assert [m.name for m in members] == expected
    assert all(m.isreg() for m in members)
    assert members[-1].size == 4 * MiB
    with open(ova, "rb") as f:
        magic = f.read(512)[257:265]
    # GNU tar (flatcar/scripts: plain `tar -cf`) vs POSIX ustar (COSA: --format=ustar)
    assert magic == (b"ustar\x0000" if distro == "fedora-coreos" else b"ustar  \x00")
    assert ova.stat().st_size % tarfile.RECORDSIZE == 0


@pytest.mark.parametrize("distro", ["flatcar", "coreos"])
def test_manifest_matches_members(tmp_path, distro):
    p = PROFILES[distro]
    ova = build_ova(tmp_path / "x.ova", distro=distro, disk_bytes=3 * MiB + 123)
    entries = parse_mf(member_bytes(ova, p.mf_name).decode())
    # vmdk first, then ovf (flatcar/scripts _write_ova_bundle)
    assert [(a, n) for a, n, _ in entries] == [("SHA1", p.disk_name), ("SHA1", p.ovf_name)]
    for algo, name, hexdigest in entries:
        assert member_digest(ova, name, algo) == hexdigest


def test_sha256_manifest_and_custom_order(tmp_path):
    p = PROFILES["flatcar"]
    ova = build_ova(tmp_path / "x.ova", manifest_algo="SHA256", members=["disk", "mf", "ovf"])
    members, _ = read_members(ova)
    assert [m.name for m in members] == [p.disk_name, p.mf_name, p.ovf_name]
    for algo, name, hexdigest in parse_mf(member_bytes(ova, p.mf_name).decode()):
        assert algo == "SHA256" and len(hexdigest) == 64
        assert member_digest(ova, name, algo) == hexdigest


def test_fcos_manifest_can_be_forced(tmp_path):
    ova = build_ova(tmp_path / "x.ova", distro="fedora-coreos", manifest=True)
    assert [m.name for m in read_members(ova)[0]] == ["coreos.ovf", "coreos.mf", "disk.vmdk"]


def test_build_is_deterministic_and_seeded(tmp_path):
    a = build_ova(tmp_path / "a.ova", disk_bytes=2 * MiB + 7)
    b = build_ova(tmp_path / "b.ova", disk_bytes=2 * MiB + 7)
    c = build_ova(tmp_path / "c.ova", disk_bytes=2 * MiB + 7, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_disk_chunks_all_differ():
    chunks = list(iter_disk_chunks(40 * MiB, capacity_bytes=GiB, disk_name="d.vmdk"))
    assert sum(map(len, chunks)) == 40 * MiB
    assert len({hashlib.sha1(c).digest() for c in chunks}) == len(chunks)
    assert list(iter_disk_chunks(100, capacity_bytes=GiB, disk_name="d.vmdk"))[0][:4] == b"KDMV"


@pytest.mark.parametrize("distro", DISTROS)
def test_vmdk_starts_with_stream_optimized_header(tmp_path, distro):
    p = PROFILES[distro]
    ova = build_ova(tmp_path / "x.ova", distro=distro)
    head = member_bytes(ova, p.disk_name, 64 * 1024)
    magic, version, flags, capacity, grain, desc_off, desc_size = struct.unpack_from("<4sIIQQQQ", head)
    assert (magic, version, grain, desc_off) == (b"KDMV", 3, 128, 1)
    assert flags & (1 << 16) and flags & (1 << 17)  # compressed grains, markers
    assert capacity * 512 == p.capacity_bytes
    gd_offset, overhead = struct.unpack_from("<QQ", head, 0x38)
    assert gd_offset == 0xFFFFFFFFFFFFFFFF and overhead == 128
    descriptor = head[512 : 512 + desc_size * 512].rstrip(b"\0").decode()
    assert 'createType="streamOptimized"' in descriptor
    assert f'RW {capacity} SPARSE "{p.disk_name}"' in descriptor
    assert len(set(member_bytes(ova, p.disk_name)[65536:])) > 250  # random-looking after the header


# ---------------------------------------------------------------------------
# OVF descriptor
# ---------------------------------------------------------------------------




@pytest.mark.parametrize("distro", DISTROS)
def test_ovf_parses_and_names_the_disk(tmp_path, distro):
    p = PROFILES[distro]
    ova = build_ova(tmp_path / "x.ova", distro=distro, disk_bytes=5 * MiB)
    root = ET.fromstring(member_bytes(ova, p.ovf_name))
    assert root.tag == OVF + "Envelope"
    f = root.find("ovf:References/ovf:File", NS)
    assert f.get(OVF + "href") == p.disk_name
    assert int(f.get(OVF + "size")) == 5 * MiB
    disk = root.find("ovf:DiskSection/ovf:Disk", NS)
    assert disk.get(OVF + "fileRef") == f.get(OVF + "id")
    assert disk.get(OVF + "format").endswith("#streamOptimized")
    assert int(disk.get(OVF + "capacity")) == p.capacity_bytes
    assert disk.get(OVF + "capacityAllocationUnits") == "byte"
    assert root.find("ovf:NetworkSection/ovf:Network", NS).get(OVF + "name") == "VM Network"

    os_type, vmx, memory, keys, resource_types = HARDWARE[distro]
    vs = root.find("ovf:VirtualSystem", NS)
    assert vs.find("ovf:OperatingSystemSection", NS).get(VMW + "osType") == os_type
    hw = vs.find("ovf:VirtualHardwareSection", NS)
    assert hw.get(OVF + "transport") == "com.vmware.guestInfo"
    assert hw.find("ovf:System/vssd:VirtualSystemType", NS).text == vmx
    items = hw.findall("ovf:Item", NS)
    assert [int(i.find("rasd:ResourceType", NS).text) for i in items] == resource_types
    by_type = {int(i.find("rasd:ResourceType", NS).text): i for i in items}
    assert by_type[3].find("rasd:VirtualQuantity", NS).text == "2"
    assert by_type[4].find("rasd:VirtualQuantity", NS).text == str(memory)
    assert by_type[6].find("rasd:ResourceSubType", NS).text == "VirtualSCSI"
    assert by_type[10].find("rasd:ResourceSubType", NS).text == "VmxNet3"
    assert by_type[10].find("rasd:Connection", NS).text == "VM Network"
    hd = by_type[17]
    assert hd.find("rasd:HostResource", NS).text == "ovf:/disk/" + disk.get(OVF + "diskId")
    assert hd.find("rasd:Parent", NS).text == by_type[6].find("rasd:InstanceID", NS).text
    configs = {c.get(VMW + "key"): c.get(VMW + "value") for c in hw.findall("vmw:Config", NS)}
    assert configs["firmware"] == ("efi" if distro == "fedora-coreos" else "bios")
    props = {pr.get(OVF + "key"): pr.get(OVF + "value") for pr in vs.findall("ovf:ProductSection/ovf:Property", NS)}
    assert set(props) == keys
    if distro != "fedora-coreos":
        assert props["guestinfo.interface.0.dhcp"] == "no"
        assert props["guestinfo.interface.0.role"] == "public"


def test_ovf_descriptor_alone_with_gib_units():
    text = build_ovf_descriptor(
        distro="coreos", disk_href="x.vmdk", disk_size=99, capacity_bytes=9 * GiB, capacity_units="byte * 2^30"
    )
    root = ET.fromstring(text)
    disk = root.find("ovf:DiskSection/ovf:Disk", NS)
    assert (disk.get(OVF + "capacity"), disk.get(OVF + "capacityAllocationUnits")) == ("9", "byte * 2^30")
    assert ovf_disk_href(text) == "x.vmdk"
    with pytest.raises(ValueError):
        build_ovf_descriptor(capacity_bytes=GiB + 1, capacity_units="byte * 2^30")


# ---------------------------------------------------------------------------
# Large build: memory and rate
# ---------------------------------------------------------------------------


def test_256mib_build_streams(tmp_path, record_property):
    proc = psutil.Process()
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    start = time.perf_counter()
    try:
        ova = build_ova(tmp_path / "big.ova", disk_bytes=256 * MiB)
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        t.join()
    rate = 256 / elapsed
    record_property("build_256mib_seconds", round(elapsed, 3))
    record_property("build_rate_mib_per_s", round(rate, 1))
    print(f"\n256 MiB OVA built in {elapsed:.2f} s ({rate:.0f} MiB/s), RSS delta {(peak - baseline) / MiB:.1f} MiB")
    assert peak - baseline < 50 * 1024 * 1024
    p = PROFILES["flatcar"]
    members, err = read_members(ova)
    assert err is None and members[-1].size == 256 * MiB
    (_, _, vmdk_sha1), _ = parse_mf(member_bytes(ova, p.mf_name).decode())
    assert member_digest(ova, p.disk_name, "SHA1") == vmdk_sha1


# ---------------------------------------------------------------------------
# Bad archives
# ---------------------------------------------------------------------------


def _mf_consistent(ova: Path, p) -> None:
    for algo, name, hexdigest in parse_mf(member_bytes(ova, p.mf_name).decode()):
        assert member_digest(ova, name, algo) == hexdigest


@pytest.mark.parametrize("defect", DEFECTS)
def test_defects(tmp_path, defect):
    p = PROFILES["flatcar"]
    ova = build_ova(tmp_path / f"{defect}.ova", defect=defect)
    members, err = read_members(ova)
    names = [m.name for m in members]
    standard = [p.ovf_name, p.mf_name, p.disk_name]
    extra = members[3:]

    if defect in ("absolute-name", "dotdot-name", "symlink", "hardlink", "device"):
        assert err is None
        assert names[:3] == standard and len(extra) == 1
        _mf_consistent(ova, p)  # nothing else is wrong
        m = extra[0]
        if defect == "absolute-name":
            assert m.isreg() and m.name.startswith("/")
        elif defect == "dotdot-name":
            assert m.isreg() and ".." in m.name.split("/")
        elif defect == "symlink":
            assert m.issym() and m.linkname == "/etc/passwd"
        elif defect == "hardlink":
            assert m.islnk() and m.linkname == "/etc/passwd"
        else:
            assert m.ischr() and (m.devmajor, m.devminor) == (1, 3)
    elif defect == "no-ovf":
        assert err is None and names == [p.mf_name, p.disk_name]
        assert not any(n.endswith(".ovf") for n in names)
        _mf_consistent(ova, p)
    elif defect == "missing-disk":
        assert err is None and names == [p.ovf_name, p.mf_name]
        assert ovf_disk_href(member_bytes(ova, p.ovf_name).decode()) == p.disk_name
        _mf_consistent(ova, p)
    elif defect in ("bad-sha1", "bad-sha256"):
        assert err is None and names == standard
        entries = parse_mf(member_bytes(ova, p.mf_name).decode())
        algo = "SHA1" if defect == "bad-sha1" else "SHA256"
        assert {a for a, _, _ in entries} == {algo}
        verdict = {name: member_digest(ova, name, algo) == hexdigest for _, name, hexdigest in entries}
        assert verdict == {p.disk_name: False, p.ovf_name: True}
    elif defect == "truncated":
        assert isinstance(err, tarfile.ReadError)
        assert names == standard
        disk = members[2]
        assert disk.offset_data + disk.size > ova.stat().st_size
    else:  # pragma: no cover
        pytest.fail(f"untested defect {defect}")


def test_extra_members_and_fcos_defect(tmp_path):
    ova = build_ova(
        tmp_path / "x.ova", distro="fedora-coreos", defect="dotdot-name", extra_members=[symlink_member("a", "../b")]
    )
    members, err = read_members(ova)
    assert err is None
    assert [m.name for m in members] == ["coreos.ovf", "disk.vmdk", "a", "../vmcoreos-test-dotdot"]
    assert members[2].issym()
    with pytest.raises(ValueError):
        build_ova(tmp_path / "y.ova", defect="no-such-defect")


# ---------------------------------------------------------------------------
# govmomi simulator: CreateImportSpec
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Signing and gpgv
# ---------------------------------------------------------------------------


@pytest.fixture
def signer(tmp_path):
    """A fresh signer per test (these tests add, expire and revoke subkeys)."""
    s = TestSigner.create(tmp_path)
    yield s
    s.close()


@pytest.fixture
def payload(tmp_path):
    f = tmp_path / "flatcar_production_vmware_ova.ova"
    f.write_bytes(os.urandom(4096))
    return f


def test_signer_key_shape(signer):
    assert re.fullmatch(r"[0-9A-F]{40}", signer.fingerprint)
    assert re.fullmatch(r"[0-9A-F]{40}", signer.subkey_fingerprint)
    assert signer.subkey_fingerprint != signer.fingerprint
    assert [sk.fingerprint for sk in signer.subkeys] == [signer.subkey_fingerprint]
    assert signer.subkey().capabilities == "s"
    armored = signer.public_key_armored()
    assert armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    out = subprocess.run(
        ["gpg", "--homedir", str(signer.home), "--batch", "--with-colons", "--show-keys"],
        input=armored,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pub = next(line.split(":") for line in out.splitlines() if line.startswith("pub:"))
    # field 12: lower case = the primary key's own usage, upper case = the whole key's
    assert "".join(ch for ch in pub[11] if ch.islower()) == "c"  # certify-only primary
    assert "S" in pub[11]


def test_gpgv_good_signature(signer, payload, tmp_path):
    sig = signer.sign_detached(payload)
    assert sig == payload.with_name(payload.name + ".sig")
    assert not sig.read_bytes().startswith(b"-----")  # binary, like the release servers
    r = run_gpgv(signer.write_keyring(tmp_path / "k.gpg"), sig, payload)
    assert r.returncode == 0
    assert r.has("GOODSIG") and r.has("VALIDSIG")
    assert r.validsig_signer == signer.subkey_fingerprint
    assert r.validsig_primary == signer.fingerprint


def test_gpgv_expired_subkey(signer, payload, tmp_path):
    fpr = signer.sign_detached_expired(payload, tmp_path / "p.sig")
    assert signer.subkey(fpr).validity == "e"
    r = run_gpgv(signer.write_keyring(tmp_path / "k.gpg"), tmp_path / "p.sig", payload)
    assert r.returncode == 0
    assert r.has("EXPKEYSIG") and r.has("VALIDSIG") and not r.has("GOODSIG")
    assert r.line("EXPKEYSIG")[0] == fpr[-16:]
    assert (r.validsig_signer, r.validsig_primary) == (fpr, signer.fingerprint)


def test_gpgv_signature_after_expiry(signer, payload, tmp_path):
    # signed now, then the subkey's expiry moved to an hour ago
    signer.sign_detached(payload)
    signer.expire_subkey()
    r = run_gpgv(signer.write_keyring(tmp_path / "k.gpg"), payload.with_name(payload.name + ".sig"), payload)
    assert r.returncode == 0 and r.has("EXPKEYSIG") and r.validsig_primary == signer.fingerprint


def test_gpgv_revoked_subkey(signer, payload, tmp_path):
    fpr = signer.sign_detached_revoked(payload, tmp_path / "p.sig")
    assert signer.subkey(fpr).validity == "r"
    r = run_gpgv(signer.write_keyring(tmp_path / "k.gpg"), tmp_path / "p.sig", payload)
    assert r.returncode == 0
    assert r.has("REVKEYSIG") and r.has("VALIDSIG") and not r.has("GOODSIG")
    assert (r.validsig_signer, r.validsig_primary) == (fpr, signer.fingerprint)


def test_gpgv_rotated_subkey_and_clearsign(signer, payload, tmp_path):
    old = signer.subkey_fingerprint
    new = signer.add_signing_subkey()
    assert new != old and signer.subkey_fingerprint == new
    digests = write_digests([payload], tmp_path / "p.DIGESTS")
    asc = signer.clearsign(digests)
    assert asc.read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    r = run_gpgv(signer.write_keyring(tmp_path / "k.gpg"), asc)
    assert r.returncode == 0 and r.has("GOODSIG")
    assert (r.validsig_signer, r.validsig_primary) == (new, signer.fingerprint)


def test_gpgv_bad_and_unknown(signer, payload, tmp_path):
    sig = signer.sign_detached(payload, armor=True)
    assert sig.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    keyring = signer.write_keyring(tmp_path / "k.gpg")
    tampered = tmp_path / "tampered"
    tampered.write_bytes(payload.read_bytes()[:-1] + b"\0")
    r = run_gpgv(keyring, sig, tampered)
    assert r.returncode == 1 and r.has("BADSIG") and not r.has("VALIDSIG")
    with TestSigner.create(tmp_path / "other") as other:
        r = run_gpgv(other.write_keyring(tmp_path / "other.gpg"), sig, payload)
    assert r.returncode == 2 and r.has("ERRSIG") and r.has("NO_PUBKEY")


def test_armored_key_dearmors_to_a_gpgv_keyring(signer, payload, tmp_path):
    signer.sign_detached(payload)
    asc = signer.write_public_key(tmp_path / "key.asc")
    keyring = tmp_path / "key.gpg"
    subprocess.run(
        ["gpg", "--homedir", str(signer.home), "--batch", "--yes", "-o", str(keyring), "--dearmor", str(asc)],
        check=True,
        capture_output=True,
    )
    r = run_gpgv(keyring, payload.with_name(payload.name + ".sig"), payload)
    assert r.returncode == 0 and r.validsig_primary == signer.fingerprint


def test_write_digests_format(tmp_path):
    a, b = tmp_path / "a.ova", tmp_path / "b.ovf"
    a.write_bytes(b"alpha")
    b.write_bytes(b"beta")
    out = write_digests([a, b], tmp_path / "x.DIGESTS")
    lines = out.read_text().splitlines()
    expected = []
    for f in (a, b):
        data = f.read_bytes()
        for name, algo in (("MD5", hashlib.md5), ("SHA1", hashlib.sha1), ("SHA512", hashlib.sha512)):
            expected += [f"# {name} HASH", f"{algo(data).hexdigest()}  {f.name}"]
    assert lines == expected
    assert out.read_text().endswith("\n")
    # coreutils can check each block
    sha512_lines = [lines[i + 1] for i, line in enumerate(lines) if line == "# SHA512 HASH"]
    check = subprocess.run(
        ["sha512sum", "-c", "-"], input="\n".join(sha512_lines) + "\n", cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
