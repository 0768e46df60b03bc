"""vmcoreos fetch and vmcoreos images: get a verified OVA into the cache, list what the cache holds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos import environment
from vmcoreos.cli.application import App
from vmcoreos.cli.tables import Column
from vmcoreos.cli.common import CacheDirOpt, JsonOpt, QuietOpt, RetriesOpt, WideOpt, exit_codes, wide


def register(app: typer.Typer) -> None:
    app.command(epilog=exit_codes(0, 1, 2, 3, 130))(fetch)
    app.command(epilog=exit_codes(0, 2, c0="listed (an empty or missing cache lists nothing)"))(images)


def fetch(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Cluster file (YAML), or a directory holding cluster.yaml, whose image section to"
        " use; flags override it."
    ),
    distro: Optional[str] = typer.Option(None, "--distro", help="flatcar (default), coreos or fedora-coreos."),
    channel: Optional[str] = typer.Option(
        None, "--channel", help="Release channel: flatcar stable/beta/alpha/lts, fedora-coreos stable/testing/next."
    ),
    version: Optional[str] = typer.Option(None, "--version", help="Release version, or 'current' (default)."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="Mirror replacing the vendor's release host (CoreOS needs one: its servers are gone)."
    ),
    ova: Optional[str] = typer.Option(None, "--ova", help="OVA path or URL instead of a channel."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of --ova, path or URL (default: OVA + .sig)."),
    trusted_key: list[str] = typer.Option(
        [], "--trusted-key", metavar="[DISTRO=]FILE",
        help="Extra OpenPGP public key to trust for this run's distro, or for DISTRO only (repeatable; needed for Fedora CoreOS).",
    ),
    allow_unsigned_version: bool = typer.Option(
        False, "--allow-unsigned-version",
        help="Accept a release version no signature covers (version.txt without .sig; FCOS metadata over http).",
    ),
    insecure_skip_verify: bool = typer.Option(
        False, "--insecure-skip-verify", help="Do not verify signatures or DIGESTS (dangerous; never the default)."
    ),
    cache_dir: Optional[Path] = CacheDirOpt,
    retries: int = RetriesOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Download (or reuse from the cache) a release OVA, verified against its signature and DIGESTS in one pass."""
    app = App.of(ctx)
    with app.run(quiet=quiet, json_out=json_out) as term:  # --json keeps stdout for the result; events go to stderr
        from vmcoreos.images.fetch import obtain
        from vmcoreos.clusterfile import load_cluster_file
        from vmcoreos.settings import ImageSettings, Overrides

        json_out = app.json_out
        if config is not None and config.is_dir():
            config = config / "cluster.yaml"
        image = load_cluster_file(config).image if config is not None else ImageSettings()
        overrides = Overrides(
            distro=distro, channel=channel, version=version, base_url=base_url, ova=ova,
            # fetch keeps the cluster file's sig for an --ova given without --sig
            sig=sig if sig is not None or ova is None else image.sig,
            trusted_keys=tuple(trusted_key), insecure_skip_verify=insecure_skip_verify,
            allow_unsigned_version=allow_unsigned_version,
        )
        image, warnings = overrides.apply_image(image)
        app.warnings(warnings)
        app.applying()  # the download writes into the cache from here
        result = obtain(image, cache_dir=environment.cache_dir(cache_dir), reporter=term, retries=retries)
        result.close()  # fetch only reports on it; deploy keeps it open for the upload
        verdict = result.verdict
        info = {
            "path": str(result.path),
            "distro": result.distro,
            "channel": result.channel,
            "version": result.version,
            "size": result.size,
            "sha512": result.sha512,
            "signer": verdict.primary_fingerprint if verdict else None,
            "signing_key": verdict.signing_key if verdict else None,
            "expired_key": verdict.expired_key if verdict else None,
            # "sqv" or "gpgv"; null when nothing was checked in this run (unverified, or trusted from its record)
            "verifier": (verdict.verifier or None) if verdict else None,
            "cached": result.cached,
            "source": result.source,
        }
        if json_out:
            term.json(info)
        else:
            signer = "NOT VERIFIED (--insecure-skip-verify)"
            if verdict:
                signer = f"{verdict.primary_fingerprint} (subkey {verdict.signing_key}{', expired since' if verdict.expired_key else ''})"
            term.fields({
                "path": result.path,
                "version": f"{result.distro} {result.channel} {result.version}".replace("  ", " "),
                "sha512": result.sha512,
                "signer": signer,
                "cached": "yes, re-verified" if result.cached else "no, downloaded and verified",
            })


def images(
    ctx: typer.Context,
    cache_dir: Optional[Path] = CacheDirOpt,
    output: Optional[str] = WideOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List the cached images: distro, channel, version, size and verification state."""
    app = App.of(ctx)
    with app.run(quiet=json_out, json_out=json_out) as term:
        from vmcoreos.images import cache

        json_out = app.json_out

        root = environment.cache_dir(cache_dir)
        if not root.is_dir():
            # Not an error: nothing was fetched yet, or fetch used another --cache-dir. The line says which
            # directory was looked at; scripts still get a (empty) listing and exit 0.
            term.warn(f"no image cache at {root}; `vmcoreos fetch` fills it (or pass the --cache-dir fetch used)")
        found = cache.list_cached(root)
        if json_out:
            term.json({"cache_dir": str(root), "images": [c.as_dict() for c in found]})
            return
        term.table(
            [Column("DISTRO"), Column("CHANNEL", 3), Column("VERSION"), Column("SIZE", 2), Column("STATE"),
             Column("VERIFIED (UTC)", 4)],
            [
                [c.distro, c.channel, c.version, _size(c.size), c.state, (c.verified_at or "")[:16].replace("T", " ")]
                for c in found
            ],
            wide=wide(output),
        )


def _size(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n} B"
