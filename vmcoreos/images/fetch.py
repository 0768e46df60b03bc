"""Getting a verified OVA onto local disk: from a release channel, a URL or a local path.

`obtain()` is the one entry point (`vmcoreos fetch` and deploy call it).
Every image is read exactly once, and that one read feeds the file on disk,
SHA-512, the signature verifier and the OVA's manifest digests together, through
the one verification pipeline (images/verification.py). The
checks give their verdicts only when asked, explicitly, after the last byte;
a download becomes the cached file only after every check passed, and on
any failure nothing of it is left behind. A cached image is reused only if
it verifies again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import replace
from pathlib import Path

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images.trust import binding, keys as keymod
from vmcoreos.images import cache
from vmcoreos.images.sources import current, releases
from vmcoreos.images.transfer.download import Http
from vmcoreos.images.trust.imagepass import note_expired, read_signature
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.images.sources.releases import Release
from vmcoreos.images.verified import VerifiedImage, identity, is_url, open_image
from vmcoreos.images.verification import Origin, Verification
from vmcoreos.images.verified_upload import StreamedOva
from vmcoreos.images.trust.signature import verify_clearsigned, verify_detached
from vmcoreos.images.trust.digests import parse_digests
from vmcoreos.reporting import Reporter
from vmcoreos.settings import ImageSettings
from vmcoreos.text import redact

FEDORA_KEYS = "https://fedoraproject.org/fedora.gpg"


def obtain(image: ImageSettings, *, cache_dir: Path, reporter: Reporter, retries: int = 5,
           floor: str | None = None, deployed: binding.Deployed | None = None) -> VerifiedImage:
    """A verified OVA for the image settings: a local --ova checked in place, anything else via the cache.

    floor: the highest release already deployed (the cluster's nodes); a channel's "current" below
    it, or below the highest version cached from the same source, is held at that version instead.
    deployed: what the nodes run (images/trust/binding.py): its version is the floor, its signature time and
    SHA-512s bind the image too.
    """
    releases.check_distro(image.distro)  # an unknown distro is the first thing to say, before any key
    signing = signing_keys(image)
    deployed = deployed or binding.Deployed(floor)
    with Http(reporter, retries=retries) as http:
        if image.ova and not is_url(image.ova):
            got = verify_local(image, signing, http, reporter, _state_root(cache_dir))
        else:
            cache_root = cache.check_root(Path(cache_dir))
            release = current.choose(image, signing, http, cache_root, reporter, deployed.version)
            signing = release_keys(signing, release, image)
            got = Fetcher(http, signing, cache_root, reporter, insecure=image.insecure_skip_verify,
                          deployed=deployed).get(release)
    try:
        binding.check_not_older(got.path.name, got.signed, deployed, pinned=_pinned(image))
    except BaseException:
        got.close()
        raise
    return got


def _pinned(image: ImageSettings) -> bool:
    return (image.version or "current") != "current"


def begin_local(image: ImageSettings, *, cache_dir: Path, reporter: Reporter, retries: int = 5,
                deployed: binding.Deployed | None = None) -> StreamedOva | None:
    """A local --ova to be verified by its own upload (images/verified_upload.py), opened with its signature.

    None when obtain() is the way: not a local OVA, no signature to check (--insecure-skip-verify), or
    a file on record as verified and unchanged, which is not read at all.
    """
    if not image.ova or is_url(image.ova) or image.insecure_skip_verify:
        return None
    releases.check_distro(image.distro)
    signing = signing_keys(image)
    state_root = _state_root(cache_dir)
    path = Path(image.ova)
    f = open_image(path)
    try:
        with Http(reporter, retries=retries) as http:
            signature = read_signature(image.sig or image.ova + ".sig", path.name, http)
        binding.check_not_older(path.name, binding.signature_time(signature), deployed, pinned=_pinned(image))
        check = Verification(path, path.name, signature, signing, Origin(image.distro, "local", str(path)), reporter,
                             cache_root=state_root)
        if check.recall(f) is not None:
            f.close()
            return None
        reporter.event(f"verifying {path} as it is uploaded")
        return StreamedOva(f, check)
    except BaseException:
        f.close()
        raise


def resolve_release(image: ImageSettings, *, cache_dir: Path, reporter: Reporter, retries: int = 5,
                    floor: str | None = None) -> Release | None:
    """The release obtain() would fetch, its signed version.txt checked, without reading the image (dry runs).

    None for a local --ova: its version is known only by reading it.
    """
    releases.check_distro(image.distro)
    if image.ova and not is_url(image.ova):
        return None
    signing = signing_keys(image)
    with Http(reporter, retries=retries) as http:
        return current.choose(image, signing, http, cache.check_root(Path(cache_dir)), reporter, floor)


def _state_root(cache_dir: Path) -> Path | None:
    """Where the record of verified local images lives; without a usable cache root they are just read in full."""
    try:
        return cache.check_root(Path(cache_dir))
    except ConfigError:
        return None


def signing_keys(image: ImageSettings) -> list[keymod.PublicKey]:
    """The distro's pinned key plus the user's (--trusted-key); refusing early when there is none."""
    found = keymod.pinned_keys(image.distro)
    found.extend(keymod.trusted_keys(image.trusted_keys, image.distro))
    if not found and not image.insecure_skip_verify:
        raise ConfigError(f"no key to verify {image.distro} images with; pass --trusted-key FILE")
    return found


def release_keys(signing: list[keymod.PublicKey], release: Release, image: ImageSettings) -> list[keymod.PublicKey]:
    """The keys that may sign this release (a Fedora build: its major version's key); refusing when none may."""
    narrowed = keymod.for_release(signing, release.distro, release.version)
    if not narrowed and not image.insecure_skip_verify:
        major = release.version.split(".", 1)[0]
        raise ConfigError(
            f"Fedora CoreOS {release.version} is signed with the Fedora {major} key, which this vmcoreos does not pin;"
            f" download {FEDORA_KEYS}, check its fingerprint on https://fedoraproject.org/security/, and pass it with"
            " --trusted-key fedora-coreos=FILE (or image.trusted_keys)"
        )
    return narrowed


def verify_local(image: ImageSettings, signing: list[keymod.PublicKey], http: Http, reporter: Reporter,
                 state_root: Path | None = None) -> VerifiedImage:
    """A local OVA (--ova FILE) checked in place, in one read of one descriptor, against its detached signature.

    state_root: the private cache, where verified images are recorded; a file there whose record still holds
    is not read again (images/trust/known.py).
    """
    if not image.ova:
        raise ConfigError("no local OVA given; pass --ova FILE")
    path = Path(image.ova)
    f = open_image(path)
    try:
        signature = None if image.insecure_skip_verify else read_signature(image.sig or image.ova + ".sig", path.name, http)
        check = Verification(path, path.name, signature, signing, Origin(image.distro, "local", str(path)), reporter,
                             cache_root=state_root)
        recalled = check.recall(f)
        if recalled is not None:
            reporter.event(f"{path} is unchanged since it was verified; not reading it again")
            return recalled
        reporter.event(f"verifying {path}")
        check.read(f, f"verifying {path.name}")
        return check.finish(f)
    except BaseException:
        f.close()
        raise


def recorded(deployed: binding.Deployed, cache_dir: Path, distro: str):
    """(SHA-512, version, where) for every image this host's cache and the cluster's nodes hold."""
    for sha512, version in deployed.images.items():
        yield sha512, version, "on the cluster's nodes"
    for sha512, version in cache.recorded_images(cache_dir, distro):
        yield sha512, version, "in this host's image cache"


class Fetcher:
    """Releases into the cache: reuse what still verifies, else download and verify in one pass."""

    def __init__(self, http: Http, signing: list[keymod.PublicKey], cache_dir: Path, reporter: Reporter, *,
                 insecure: bool = False, deployed: binding.Deployed | None = None):
        self.deployed = deployed or binding.Deployed()
        self.http = http
        self.signing = signing
        self.cache_dir = cache_dir
        self.reporter = reporter
        self.insecure = insecure

    def get(self, release: Release) -> VerifiedImage:
        by_url = release.channel == "url"
        key = cache.url_key(release.url) if by_url else release.version
        entry = cache.entry_for(self.cache_dir, release.distro, release.channel, key, release.file_name, release.source_id)
        with entry.locked(self.reporter):
            # A URL may serve new bytes under the same name; its current signature tells.
            signature = self._signature(release) if by_url else None
            reused = self._reuse(entry, release, signature)
            if reused is not None:
                return reused
            if signature is None:
                signature = self._signature(release)
            expected = self._digests(release)
            self._bind(release, signature, expected)  # before a byte of the image is downloaded
            return self._download(entry, release, signature, expected)

    def _bind(self, release: Release, signature: bytes | None, digests: tuple[str, str, int | None] | None) -> None:
        """The OVA's signature close in time to its release label's and DIGESTS' (images/trust/binding.py)."""
        if self.insecure or release.channel == "url":
            return  # nothing labels it: its version is its own SHA-512 prefix
        if release.sha256:
            return  # FCOS: the stream metadata names these exact bytes, and the signed OVF its version
        binding.check_window(
            release.file_name, binding.signature_time(signature), label_signed=release.label_signed,
            label_what="the version.txt naming it", digests_signed=digests[2] if digests else None,
            digests=digests is not None, version=release.version,
        )

    # -- what vouches for the image --------------------------------------------------

    def _signature(self, release: Release) -> bytes | None:
        if self.insecure:
            return None
        if release.sig_url is None:
            raise VerificationError(f"{release.file_name}: no signature location; pass --sig")
        return read_signature(release.sig_url, release.file_name, self.http, release.url)

    def _digests(self, release: Release) -> tuple[str, str, int | None] | None:
        """(SHA-512, DIGESTS name, when it was signed) from the first signed DIGESTS published for the release."""
        if self.insecure:
            return None
        for url in release.digests_urls:
            data = self.http.get_bytes(url, "DIGESTS", missing_ok=True)
            if data is None:
                continue
            name = releases.file_name(url)
            clearsigned = self.http.get_bytes(url + ".asc", "DIGESTS signature", missing_ok=True)
            if clearsigned is not None:
                verdict, text = verify_clearsigned(clearsigned, self.signing, name + ".asc")
                signed = binding.signature_time(clearsigned)
            else:
                detached = self.http.get_bytes(url + ".sig", "DIGESTS signature", missing_ok=True)
                if detached is None:
                    raise VerificationError(
                        f"{name} has neither a .asc nor a .sig signature; refusing an unsigned digest list"
                    )
                verdict, text = verify_detached(data, detached, self.signing, name + ".sig"), data
                signed = binding.signature_time(detached)
            listed = parse_digests(text.decode("utf-8", "replace"), name)
            sha512 = listed.get(release.file_name, {}).get("SHA512")
            if sha512 is None:
                raise VerificationError(f"{name} is signed but lists no SHA512 for {release.file_name}; refusing it")
            self._match_version_txt(release, listed.get("version.txt", {}).get("SHA512"), name)
            self.reporter.event(f"{name}: signed by {verdict.primary_fingerprint}")
            note_expired(self.reporter, verdict, name)
            return sha512, name, signed
        self.reporter.event(f"no DIGESTS published for {release.file_name} {release.version}; its signature and"
                            " the signed version.txt's, made within hours of each other, vouch for it")
        return None

    @staticmethod
    def _match_version_txt(release: Release, listed: str | None, name: str) -> None:
        """Older releases' DIGESTS also cover version.txt: then the one that named the version must be it."""
        if listed is None or release.version_text is None:
            return
        if not hmac.compare_digest(hashlib.sha512(release.version_text).hexdigest(), listed.lower()):
            raise VerificationError(
                f"the version.txt naming {release.version} is not the one {name} lists; the server mixes releases"
            )

    @staticmethod
    def _match_product_version(release: Release, archive: OvaArchive) -> None:
        """The signed OVF's own version, where it has one (FCOS), must be the version the image is labelled with."""
        inside = archive.product_version()
        if inside is not None and release.version and inside != release.version:
            raise VerificationError(
                f"{release.file_name} says it is {inside} in its signed OVF, not {release.version}"
                " as the release metadata claims; refusing the mislabelled image"
            )

    # -- cache -------------------------------------------------------------------------

    def _reuse(self, entry: cache.Entry, release: Release, fresh_signature: bytes | None) -> VerifiedImage | None:
        record = entry.read_record()
        if record is None or not entry.path.is_file():
            if entry.dir.exists():
                entry.discard()  # leftovers of an interrupted run
            return None
        signature = None
        if not self.insecure:
            signature = entry.sig.read_bytes() if entry.sig.is_file() else None
            if signature is None:
                self.reporter.event(f"cached {entry.file} has no signature; downloading it again")
                entry.discard()
                return None
            if fresh_signature is not None and fresh_signature != signature:
                self.reporter.event(f"the signature at {redact(release.sig_url or '')} changed; downloading again")
                entry.discard()
                return None
        if release.label_signed is not None and release.version == record.get("version"):
            self._bind(release, signature, ("", "", None) if record.get("digests") else None)
        f = open_image(entry.path, "cached image")
        origin = Origin(release.distro, release.channel, record.get("source", ""),
                        record.get("version") or release.version, release.sha256, cached=True)
        check = Verification(entry.path, entry.file, signature, self.signing, origin, self.reporter,
                             cache_root=self.cache_dir, members=False)
        try:
            recalled = check.recall(f, sha512=record.get("sha512"))
            if recalled is not None:
                self.reporter.event(f"cached {entry.path} is unchanged since it was verified; not reading it again")
                return recalled
            self.reporter.event(f"checking cached {entry.path}")
            check.read(f, f"checking {entry.file}")
            return check.finish(f, expected_sha512=record.get("sha512"), digests_name="its cache record")
        except VerificationError as exc:
            f.close()
            self.reporter.event(f"cached {entry.file} failed verification ({exc.message}); discarding it")
            entry.discard()
            return None
        except BaseException:
            f.close()
            raise

    def _download(self, entry: cache.Entry, release: Release, signature: bytes | None,
                  expected: tuple[str, str] | None) -> VerifiedImage:
        source = redact(release.url)
        label = f"downloading {entry.file}"
        self.reporter.event(f"downloading {source}")
        entry.prepare()
        origin = Origin(release.distro, release.channel, source, release.version or None, release.sha256)
        check = Verification(entry.part, entry.file, signature, self.signing, origin, self.reporter,
                             cache_root=self.cache_dir)
        f = None
        try:
            size, _ = self.http.download(release.url, entry.part, check.restart, label)
            verdict, sha512 = check.verdicts(*(expected[:2] if expected else (None, "")))
            if release.version and not self.insecure:
                binding.check_one_version(entry.file, sha512, release.version,
                                          recorded(self.deployed, self.cache_dir, release.distro))
            f = open_image(entry.part, "downloaded image")
            if identity(f)[2] != size:
                raise VerificationError(f"{entry.part} is not the {size} bytes just verified; something writes to the cache")
            check.confirm(f, inspect=lambda archive: self._match_product_version(release, archive))
            version = release.version or f"url-{sha512[:12]}"
            if signature is not None:
                cache.write_file(entry.sig, signature)
            os.replace(entry.part, entry.path)  # the open descriptor stays the verified file
            entry.write_record({
                "distro": release.distro,
                "channel": release.channel,
                "version": version,
                "file": entry.file,
                "size": size,
                "sha512": sha512,
                "sha256": release.sha256,
                "signer": verdict.primary_fingerprint if verdict else None,
                "signing_key": verdict.signing_key if verdict else None,
                "expired_key": verdict.expired_key if verdict else None,
                "digests": expected[1] if expected else None,
                "verified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if verdict else None,
                "source": source,
            })
            # Just renamed, so racy (images.known): the next use reads it once more, then the record settles.
            check.origin = replace(origin, version=version)
            check.remember(f, path=entry.path)  # a rename changes ctime: the identity to hold is the renamed file's
        except BaseException:
            check.abort()
            if f is not None:
                f.close()
            entry.discard()
            raise
        self.reporter.event(f"verified {entry.file} {version}" + (f": signed by {verdict.primary_fingerprint}" if verdict else ""))
        return check.image(f, path=entry.path)
