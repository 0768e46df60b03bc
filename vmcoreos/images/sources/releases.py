"""Release channels: from distro, channel and version to the URLs of one signed OVA.

Flatcar and CoreOS publish `<host>/amd64-usr/<version>/<files>` with a
`current/` copy of the newest release and a `version.txt` naming it; Fedora
CoreOS publishes a stream metadata JSON per stream. A `base_url` (a lab
mirror) replaces the vendor's host and keeps the layout.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Callable
from urllib.parse import urljoin

from vmcoreos.errors import ConfigError, DownloadError
from vmcoreos.text import redact
from vmcoreos.settings import CHANNELS, DISTROS, ImageSettings

FLATCAR_HOST = "https://{channel}.release.flatcar-linux.net/amd64-usr/"
FCOS_STREAMS = "https://builds.coreos.fedoraproject.org/streams/"
FCOS_BUILDS = "https://builds.coreos.fedoraproject.org/prod/streams/{stream}/builds/{version}/x86_64/"
FILE_PREFIX = {"flatcar": "flatcar_production_vmware_ova", "coreos": "coreos_production_vmware_ova"}

# A version becomes a URL path segment and a cache directory: nothing else may hide in it.
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Release:
    """One image to fetch: where it and its signature live, and what else vouches for it."""

    distro: str
    channel: str
    version: str
    url: str
    sig_url: str | None
    # DIGESTS files to try in order; the first that exists is used (Flatcar, CoreOS).
    digests_urls: tuple[str, ...] = ()
    sha256: str | None = None  # from the FCOS stream metadata
    # The version.txt that named the version (channel "current"), to be checked against its .sig before use.
    version_url: str | None = None
    version_text: bytes | None = None
    label_signed: int | None = None  # when version_text's signature was made (images/trust/binding.py), once checked
    # Who serves it, for the cache key: "" for the vendor's own host, else a digest of the mirror's root.
    source_id: str = ""
    root: str = ""  # the channel root (Flatcar, CoreOS): where any other version of the channel lives

    @property
    def file_name(self) -> str:
        return file_name(self.url)


def file_name(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise ConfigError(f"{redact(url)} does not end in a file name; pass the URL of the .ova itself")
    return name


def check_version(version: str, where: str, error: type[Exception] = ConfigError) -> str:
    if not _VERSION_RE.fullmatch(version) or ".." in version:
        raise error(f"{redact(where)}: {version!r} is not a release version (like 4593.2.5)")
    return version


def source_id(root: str, vendor_root: str) -> str:
    """A short name for where releases come from; the vendor's host keeps the plain cache layout."""
    if root == vendor_root:
        return ""
    return "m" + hashlib.sha256(redact(root).encode("utf-8")).hexdigest()[:10]


_RELEASE_NUMBERS = re.compile(r"[0-9]+(\.[0-9]+)*")


def version_key(version: str | None) -> tuple[int, ...] | None:
    """4593.2.5 -> (4593, 2, 5), for ordering releases; None for anything that is not a numbered release."""
    if not version or not _RELEASE_NUMBERS.fullmatch(version):
        return None
    return tuple(int(p) for p in version.split("."))


def channel_root(image: ImageSettings) -> str:
    """The directory holding `current/` and one directory per version, ending in '/'."""
    if image.base_url:
        return image.base_url.rstrip("/") + "/"
    if image.distro == "coreos":
        raise ConfigError(
            "CoreOS Container Linux reached end of life in 2020 and its release servers are gone;"
            " set image.base_url (or --base-url) to a mirror of its releases, or use --distro flatcar"
        )
    return FLATCAR_HOST.format(channel=image.channel)


def parse_version_txt(text: str, where: str = "version.txt") -> str:
    """The release version from a version.txt: FLATCAR_* keys, or COREOS_* (CoreOS, Flatcar before 2317)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    for prefix in ("FLATCAR", "COREOS"):
        for key in (f"{prefix}_VERSION_ID", f"{prefix}_VERSION"):
            if values.get(key):
                return check_version(values[key], where, DownloadError)
    raise DownloadError(f"{redact(where)} names no FLATCAR_VERSION_ID or COREOS_VERSION_ID; is this a release server?")


def release_files(distro: str, channel: str, root: str, version: str) -> Release:
    """URLs of a Flatcar or CoreOS release under a channel root (pure: no network)."""
    prefix = FILE_PREFIX[distro]
    directory = urljoin(root, f"{version}/")
    ova = directory + f"{prefix}.ova"
    # Since 2022 one DIGESTS per file; older releases have one for the whole vmware_ova image.
    digests = (ova + ".DIGESTS", directory + f"{prefix}.DIGESTS")
    vendor = FLATCAR_HOST.format(channel=channel) if distro == "flatcar" else ""
    return Release(distro, channel, version, ova, ova + ".sig", digests, source_id=source_id(root, vendor), root=root)


def stream_url(image: ImageSettings) -> str:
    root = image.base_url.rstrip("/") + "/" if image.base_url else FCOS_STREAMS
    return urljoin(root, f"{image.channel}.json")


def parse_fcos_stream(data: bytes, where: str, stream: str, source: str = "") -> Release:
    """The x86_64 VMware OVA of an FCOS stream metadata document."""
    try:
        doc = json.loads(data)
        vmware = doc["architectures"]["x86_64"]["artifacts"]["vmware"]
        disk = vmware["formats"]["ova"]["disk"]
        version, location = vmware["release"], disk["location"]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(
            f"{redact(where)} is not FCOS stream metadata with .architectures.x86_64.artifacts.vmware.formats.ova.disk"
        ) from None
    sha256 = str(disk.get("sha256") or "").lower()
    if not _SHA256_RE.fullmatch(sha256):
        raise DownloadError(f"{redact(where)}: the OVA entry has no valid sha256")
    url = urljoin(where, location)  # a mirror may use relative locations
    signature = urljoin(where, disk["signature"]) if disk.get("signature") else url + ".sig"
    return Release("fedora-coreos", stream, check_version(str(version), where, DownloadError), url, signature, (), sha256,
                   source_id=source)


def fcos_build(stream: str, version: str) -> Release:
    """A pinned FCOS build on the official server; the stream metadata only names the newest one."""
    directory = FCOS_BUILDS.format(stream=stream, version=version)
    url = directory + f"fedora-coreos-{version}-vmware.x86_64.ova"
    return Release("fedora-coreos", stream, version, url, url + ".sig")


def from_url(image: ImageSettings, url: str) -> Release:
    """An OVA given directly by URL (--ova): its signature is --sig or the URL plus .sig."""
    return Release(image.distro, "url", "", url, None if image.insecure_skip_verify else (image.sig or url + ".sig"))


def check_distro(distro: str) -> None:
    if distro not in DISTROS:
        raise ConfigError(f"distro {distro!r} is not one of {', '.join(DISTROS)}")


def resolve(image: ImageSettings, get_text: Callable[[str, str], bytes]) -> Release:
    """The release image settings name, reading version.txt or the stream metadata with get_text(url, what)."""
    check_distro(image.distro)
    if image.channel not in CHANNELS[image.distro]:
        raise ConfigError(
            f"{image.channel!r} is not a {image.distro} channel; use one of {', '.join(CHANNELS[image.distro])}"
        )
    version = image.version or "current"
    if version != "current":
        check_version(version, "image.version")
    if image.distro == "fedora-coreos":
        url = stream_url(image)
        # The stream metadata is unsigned: only TLS vouches for the version it names.
        if not url.startswith("https://") and not image.allow_unsigned_version:
            raise ConfigError(
                f"Fedora CoreOS stream metadata is unsigned, so {redact(url)} must be https://;"
                " use an https base_url, or accept an unvouched version with --allow-unsigned-version"
            )
        newest = parse_fcos_stream(get_text(url, "stream metadata"), url, image.channel,
                                   source_id(url, urljoin(FCOS_STREAMS, f"{image.channel}.json")))
        if version in ("current", newest.version):
            return newest
        if image.base_url is None:
            return fcos_build(image.channel, version)
        raise ConfigError(
            f"the {image.channel} stream at {redact(url)} offers {newest.version}, not {version};"
            " use version: current or pass --ova with that build's URL"
        )
    root = channel_root(image)
    if version != "current":
        return release_files(image.distro, image.channel, root, version)
    where = urljoin(root, "current/version.txt")
    text = get_text(where, "version.txt")
    version = parse_version_txt(text.decode("utf-8", "replace"), where)
    return replace(release_files(image.distro, image.channel, root, version), version_url=where, version_text=text)
