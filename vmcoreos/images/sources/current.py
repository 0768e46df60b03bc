"""Which release a channel's "current" names, and whether to believe it.

A mirror's version.txt is only a label: it must carry a good signature, and a
"current" older than what is already deployed or cached is held back (a replayed
or rolled-back channel), so a mirror can withhold updates but not undo them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vmcoreos.errors import VerificationError
from vmcoreos.images.trust import binding, keys as keymod
from vmcoreos.images import cache
from vmcoreos.images.sources import releases
from vmcoreos.images.transfer.download import Http
from vmcoreos.images.trust.imagepass import note_expired, warn
from vmcoreos.images.sources.releases import Release
from vmcoreos.images.trust.signature import verify_detached
from vmcoreos.reporting import Reporter
from vmcoreos.settings import ImageSettings
from vmcoreos.text import redact


def choose(image: ImageSettings, signing, http: Http, cache_root: Path, reporter: Reporter,
           floor: str | None) -> Release:
    """The release the settings name: a URL's, a pinned version's, or the channel's current one, its
    version.txt signature checked and never below the floor (what the nodes or the cache already hold)."""
    if image.ova:
        return releases.from_url(image, image.ova)
    release = releases.resolve(image, lambda url, what: http.get_bytes(url, what))
    _warn_plain_http(image, release, reporter)
    if (image.version or "current") == "current":
        if not image.insecure_skip_verify:
            release = vouch_version(image, release, signing, http, reporter)
        release = _hold_floor(release, floor, cache_root, reporter)
        reporter.event(f"{release.distro} {release.channel}: the current release is {release.version}")
    if not image.insecure_skip_verify and release.version_text is None:
        # A pinned or held release is bound by its own directory's signed version.txt too (images/trust/binding.py).
        release = vouch_version(image, _own_label(release, http), signing, http, reporter)
    return release


def _own_label(release: Release, http: Http) -> Release:
    """The release with the version.txt of its own directory, when the mirror has one that names it."""
    if not release.root or not release.version:
        return release
    where = release.url.rsplit("/", 1)[0] + "/version.txt"
    text = http.get_bytes(where, "version.txt", missing_ok=True)
    if text is None:
        return release
    named = releases.parse_version_txt(text.decode("utf-8", "replace"), where)
    if named != release.version:
        raise VerificationError(
            f"{redact(where)} names {named}, not {release.version}; the server mixes releases, refusing it"
        )
    return replace(release, version_url=where, version_text=text)



def _warn_plain_http(image: ImageSettings, release: Release, reporter: Reporter) -> None:
    # The signatures still cover image and version; over http a man in the middle can only
    # withhold or replay releases, which the floor limits. Said once, not refused: labs use http mirrors.
    if image.base_url and image.base_url.startswith("http://") and release.distro != "fedora-coreos":
        reporter.event(f"note: {redact(image.base_url)} is plain http: anyone on the path can hold back updates;"
                       " prefer an https mirror")
    elif release.distro == "fedora-coreos" and image.allow_unsigned_version and not releases.stream_url(image).startswith("https://"):
        warn(reporter, f"the Fedora CoreOS stream metadata at {redact(releases.stream_url(image))} is unsigned and not https;"
                        " its version label is unvouched (--allow-unsigned-version)")


def vouch_version(image: ImageSettings, release: Release, signing: list[keymod.PublicKey], http: Http,
                  reporter: Reporter) -> Release:
    """The version.txt that named the release must carry a good signature, unless the user opted out.

    Returns the release with the time that signature was made (label_signed), which binds the OVA to it."""
    if release.version_text is None or release.version_url is None:
        return release  # a pinned version without a label (the user's word) or FCOS metadata (https vouches)
    where = redact(release.version_url)
    signature = http.get_bytes(release.version_url + ".sig", "version.txt signature", missing_ok=True)
    if signature is None:
        if not image.allow_unsigned_version:
            raise VerificationError(
                f"{where} has no signature (version.txt.sig), so the version it names cannot be trusted;"
                " publish the .sig on the mirror, pin --version, or pass --allow-unsigned-version"
            )
        warn(reporter, f"{where} is unsigned; trusting its version {release.version} (--allow-unsigned-version)")
        return release
    verdict = verify_detached(release.version_text, signature, signing, "version.txt.sig")
    note_expired(reporter, verdict, "version.txt")
    return replace(release, label_signed=binding.signature_time(signature))


def _hold_floor(release: Release, floor: str | None, cache_root: Path, reporter: Reporter) -> Release:
    """Never below what is deployed or cached: a "current" older than that (a mirror replaying an old signed
    version.txt, or a channel rolled back) is replaced by the highest version known, which stays signed."""
    key = releases.version_key
    cached = cache.highest_version(cache_root, release.distro, release.channel, release.source_id, key)
    known = [(v, where) for v, where in ((floor, "deployed on the cluster's nodes"), (cached, "in the image cache"))
             if key(v) is not None]
    if not known or key(release.version) is None:
        return release
    highest, where = max(known, key=lambda k: key(k[0]))
    if key(release.version) >= key(highest):
        return release
    if not release.root:
        raise VerificationError(
            f"{release.distro} {release.channel}: the current release {release.version} is older than {highest},"
            f" already {where}; refusing to go back (pin --version to do it on purpose)"
        )
    reporter.event(
        f"note: {release.distro} {release.channel} names {release.version} as current, older than {highest}"
        f" already {where}; staying on {highest} (pin --version to go back on purpose)"
    )
    held = releases.release_files(release.distro, release.channel, release.root, highest)
    return held if held.source_id == release.source_id else replace(held, source_id=release.source_id)
