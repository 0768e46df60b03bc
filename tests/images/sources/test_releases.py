"""Release resolution without a network: version.txt, DIGESTS, URLs per distro."""

from __future__ import annotations

import json

import pytest

from tests.harness.release_server import version_txt
from vmcoreos.errors import ConfigError, DownloadError, VerificationError
from vmcoreos.images.sources import releases
from vmcoreos.images.trust.digests import parse_digests
from vmcoreos.settings import ImageSettings

FLATCAR = "flatcar_production_vmware_ova"


# -- version.txt --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["FLATCAR", "COREOS"])
def test_version_txt_both_prefixes(prefix):
    assert releases.parse_version_txt(version_txt("4593.2.5", prefix)) == "4593.2.5"


def test_version_id_wins_over_version_and_quotes_are_dropped():
    text = 'FLATCAR_VERSION=4593.2.5+build-7\nFLATCAR_VERSION_ID="4593.2.5"\nFLATCAR_BUILD_ID="build-7"\n'
    assert releases.parse_version_txt(text) == "4593.2.5"


def test_version_alone_is_enough():
    assert releases.parse_version_txt("COREOS_VERSION=1576.1.0\n") == "1576.1.0"


def test_version_txt_without_a_version():
    with pytest.raises(DownloadError, match="names no FLATCAR_VERSION_ID"):
        releases.parse_version_txt("<html>not found</html>")


@pytest.mark.parametrize("bad", ["../../etc", "1.2/3", "1.2.3;rm", ".hidden", "a" * 80])
def test_a_version_cannot_escape_its_directory(bad):
    with pytest.raises(DownloadError, match="is not a release version"):
        releases.parse_version_txt(f"FLATCAR_VERSION_ID={bad}\n")


# -- DIGESTS ------------------------------------------------------------------------------

MD5, SHA1, SHA512 = "a" * 32, "b" * 40, "c" * 128


def test_per_file_digests():
    text = f"# MD5 HASH\n{MD5}  {FLATCAR}.ova\n# SHA1 HASH\n{SHA1}  {FLATCAR}.ova\n# SHA512 HASH\n{SHA512}  {FLATCAR}.ova\n"
    assert parse_digests(text, "x") == {f"{FLATCAR}.ova": {"MD5": MD5, "SHA1": SHA1, "SHA512": SHA512}}


def test_combined_digests_repeat_the_blocks_per_file():
    blocks = []
    for i, name in enumerate([f"{FLATCAR}.ovf", f"{FLATCAR}.ova", f"{FLATCAR}_image.vmdk.bz2"]):
        blocks += ["# MD5 HASH", f"{i}" * 32 + f"  {name}", "# SHA1 HASH", f"{i}" * 40 + f"  {name}",
                   "# SHA512 HASH", f"{i}" * 128 + f" *{name}"]
    got = parse_digests("\n".join(blocks) + "\n", "x")
    assert got[f"{FLATCAR}.ova"]["SHA512"] == "1" * 128
    assert set(got) == {f"{FLATCAR}.ovf", f"{FLATCAR}.ova", f"{FLATCAR}_image.vmdk.bz2"}


@pytest.mark.parametrize(
    "text,message",
    [
        (f"{SHA512}  f.ova\n", "not a DIGESTS line"),
        ("# SHA512 HASH\nnot-hex  f.ova\n", "not a DIGESTS line"),
        (f"# SHA512 HASH\n{SHA1}  f.ova\n", "has 128 hex digits"),
        (f"# SHA512 HASH\n{SHA512}  f.ova\n# SHA512 HASH\n{'d' * 128}  f.ova\n", "two different SHA512"),
    ],
)
def test_bad_digests_are_refused(text, message):
    with pytest.raises(VerificationError, match=message):
        parse_digests(text, "f.ova.DIGESTS")


# -- URLs per distro ----------------------------------------------------------------------


def _fake_server(files: dict[str, bytes]):
    asked = []

    def get(url, what):
        asked.append(url)
        return files[url]

    return get, asked


@pytest.mark.parametrize("channel", ["stable", "beta", "alpha", "lts"])
def test_flatcar_current_reads_version_txt_on_the_channel_host(channel):
    root = f"https://{channel}.release.flatcar-linux.net/amd64-usr/"
    get, asked = _fake_server({root + "current/version.txt": version_txt("4593.2.5").encode()})
    rel = releases.resolve(ImageSettings(channel=channel), get)
    assert asked == [root + "current/version.txt"]
    assert rel.version == "4593.2.5"
    assert rel.url == root + f"4593.2.5/{FLATCAR}.ova"
    assert rel.sig_url == rel.url + ".sig"
    assert rel.digests_urls == (rel.url + ".DIGESTS", root + f"4593.2.5/{FLATCAR}.DIGESTS")


def test_pinned_flatcar_version_needs_no_request():
    rel = releases.resolve(ImageSettings(version="3815.2.0"), _fake_server({})[0])
    assert rel.url == f"https://stable.release.flatcar-linux.net/amd64-usr/3815.2.0/{FLATCAR}.ova"


@pytest.mark.parametrize("base", ["http://mirror.lab/flatcar/stable", "http://mirror.lab/flatcar/stable/"])
def test_base_url_replaces_the_host(base):
    get, asked = _fake_server({"http://mirror.lab/flatcar/stable/current/version.txt": b"FLATCAR_VERSION_ID=1.2.3\n"})
    rel = releases.resolve(ImageSettings(base_url=base), get)
    assert rel.url == f"http://mirror.lab/flatcar/stable/1.2.3/{FLATCAR}.ova"


def test_coreos_needs_a_mirror():
    with pytest.raises(ConfigError, match="end of life.*base_url"):
        releases.resolve(ImageSettings(distro="coreos"), _fake_server({})[0])


def test_coreos_from_a_mirror_uses_its_file_names():
    rel = releases.resolve(ImageSettings(distro="coreos", base_url="http://m/", version="2512.3.0"), _fake_server({})[0])
    assert rel.url == "http://m/2512.3.0/coreos_production_vmware_ova.ova"
    assert rel.digests_urls[1] == "http://m/2512.3.0/coreos_production_vmware_ova.DIGESTS"


@pytest.mark.parametrize(
    "image,message",
    [
        (ImageSettings(channel="lts", distro="fedora-coreos"), "not a fedora-coreos channel"),
        (ImageSettings(channel="testing"), "not a flatcar channel"),
        (ImageSettings(distro="rhcos"), "not one of"),
        (ImageSettings(version="../x"), "not a release version"),
    ],
)
def test_bad_image_settings(image, message):
    with pytest.raises(ConfigError, match=message):
        releases.resolve(image, _fake_server({})[0])


def _stream(version="41.20250105.3.0", location=None, sha256="ab" * 32) -> bytes:
    location = location or f"https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/{version}/x86_64/fedora-coreos-{version}-vmware.x86_64.ova"
    disk = {"location": location, "signature": location + ".sig", "sha256": sha256}
    return json.dumps({"architectures": {"x86_64": {"artifacts": {"vmware": {
        "release": version, "formats": {"ova": {"disk": disk}}}}}}}).encode()


def test_fcos_stream_metadata():
    url = "https://builds.coreos.fedoraproject.org/streams/stable.json"
    get, asked = _fake_server({url: _stream()})
    rel = releases.resolve(ImageSettings(distro="fedora-coreos"), get)
    assert asked == [url]
    assert (rel.version, rel.sha256, rel.channel) == ("41.20250105.3.0", "ab" * 32, "stable")
    assert rel.url.endswith("/builds/41.20250105.3.0/x86_64/fedora-coreos-41.20250105.3.0-vmware.x86_64.ova")
    assert rel.sig_url == rel.url + ".sig" and rel.digests_urls == ()


def test_fcos_mirror_with_relative_locations():
    url = "http://m/streams/next.json"
    get, _ = _fake_server({url: _stream(location="../prod/x.ova")})
    image = ImageSettings(distro="fedora-coreos", channel="next", base_url="http://m/streams", allow_unsigned_version=True)
    rel = releases.resolve(image, get)
    assert rel.url == "http://m/prod/x.ova"


def test_fcos_stream_metadata_over_plain_http_is_refused():
    # The metadata is unsigned; over http anyone on the path picks the version.
    get, asked = _fake_server({"http://m/streams/stable.json": _stream()})
    with pytest.raises(ConfigError, match="must be https://.*--allow-unsigned-version"):
        releases.resolve(ImageSettings(distro="fedora-coreos", base_url="http://m/streams"), get)
    assert asked == []


def test_current_keeps_the_version_txt_it_read_for_its_signature_check():
    root = "https://stable.release.flatcar-linux.net/amd64-usr/"
    text = version_txt("4593.2.5").encode()
    rel = releases.resolve(ImageSettings(), _fake_server({root + "current/version.txt": text})[0])
    assert (rel.version_url, rel.version_text, rel.source_id) == (root + "current/version.txt", text, "")


def test_a_mirror_is_its_own_cache_source():
    get = _fake_server({})[0]
    one = releases.resolve(ImageSettings(base_url="http://a.lab/", version="1.2.3"), get)
    two = releases.resolve(ImageSettings(base_url="http://b.lab/", version="1.2.3"), get)
    same = releases.resolve(ImageSettings(base_url="http://u:pw@a.lab/", version="1.2.3"), get)
    assert one.source_id and one.source_id != two.source_id and one.source_id == same.source_id


@pytest.mark.parametrize("low, high", [("4459.2.4", "4593.2.5"), ("4593.2.5", "4593.10.0"), ("9.0.0", "10.0.0")])
def test_version_order(low, high):
    assert releases.version_key(low) < releases.version_key(high)
    assert releases.version_key("local-abc") is None


def test_fcos_pinned_older_build_uses_the_build_directory():
    url = "https://builds.coreos.fedoraproject.org/streams/stable.json"
    rel = releases.resolve(ImageSettings(distro="fedora-coreos", version="40.1.0"), _fake_server({url: _stream()})[0])
    assert rel.url == ("https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/40.1.0/x86_64/"
                       "fedora-coreos-40.1.0-vmware.x86_64.ova")
    assert rel.sha256 is None


@pytest.mark.parametrize("doc", [b"{}", b"not json", _stream(sha256="xyz")])
def test_bad_fcos_metadata(doc):
    with pytest.raises(DownloadError):
        releases.parse_fcos_stream(doc, "http://m/stable.json", "stable")


def test_ova_url_signature_defaults_to_dot_sig():
    assert releases.from_url(ImageSettings(), "http://m/a.ova").sig_url == "http://m/a.ova.sig"
    assert releases.from_url(ImageSettings(sig="http://m/s"), "http://m/a.ova").sig_url == "http://m/s"
    assert releases.from_url(ImageSettings(insecure_skip_verify=True), "http://m/a.ova").sig_url is None


def test_patterns_take_ascii_digits_and_no_trailing_newline():
    # `$` matches before a final newline and \d matches any Unicode digit: both let odd text through.
    from vmcoreos.errors import ConfigError
    from vmcoreos.etcd.trust import url_host
    from vmcoreos.images.sources import releases

    with pytest.raises(ConfigError):
        releases.check_version("4593.2.5\n", "image.version")
    assert releases.version_key("4593.2.5\n") is None and releases.version_key("٤٥٩٣.2.5") is None
    assert releases.version_key("4593.2.5") == (4593, 2, 5)
    assert url_host("http://10.0.0.1:٢٣٧٩") is None and str(url_host("http://10.0.0.1:2379")) == "10.0.0.1"
