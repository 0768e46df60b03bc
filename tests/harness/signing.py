"""A throwaway OpenPGP signer for tests, plus the vendors' DIGESTS format.

Everything runs ``gpg`` with ``--homedir`` set to a private temporary
GNUPGHOME (never the user's); ``TestSigner.close()`` kills that home's
gpg-agent (``gpgconf --homedir H --kill all``). Keys are ed25519 by default
(``algo="rsa2048"`` also works): creating a signer, agent start included,
takes well under a second, so each test can make its own and no session
cache is needed.

Key layout, mirroring the vendors' image signing keys (coreos-facts.md §2):
a certify-only primary key plus signing subkeys. The primary key is
backdated three years and the first signing subkey two years (with
``--faked-system-time``), so that later subkeys can be given creation,
expiry and signature times in the past.

Observed with GnuPG 2.2.40 (``gpgv --status-fd 1 --keyring <binary export>``),
checked by tests/harness/test_ova_builder.py:

* Good signature by a valid subkey: exit 0, ``GOODSIG <subkey long id> <uid>``
  and ``VALIDSIG <subkey fpr> <date> <epoch> 0 4 0 <algo> <hash> 00
  <PRIMARY FPR>``; the last VALIDSIG field is the primary-key fingerprint
  (the first is the subkey's).
* Signature made while the subkey was valid, subkey expired since
  (``sign_detached_expired``): exit 0, ``KEYEXPIRED <expiry epoch>`` lines,
  ``EXPKEYSIG <subkey long id> <uid>`` and ``VALIDSIG`` as above; no GOODSIG.
  (sqv 1.1: exit 0, and the primary's fingerprint on stdout.)
  gpgv's human output on stderr still says "Good signature".
* Signature whose timestamp is *after* the subkey's expiry (made while the
  expiry was still in the future, then the expiry moved back before it):
  also exit 0 with ``EXPKEYSIG`` + ``VALIDSIG``: gpgv does not compare the
  signature time with the expiry, only "now".
* Signature by a since-revoked subkey (``sign_detached_revoked``): exit 0,
  ``REVKEYSIG <subkey long id> <uid>`` + ``VALIDSIG``; no GOODSIG.
* Data modified after signing: exit 1, ``BADSIG``; no VALIDSIG.
* Signature by a key not in the keyring: exit 2, ``ERRSIG`` + ``NO_PUBKEY``.
* A clearsigned file (``clearsign``) verifies the same way with
  ``gpgv --keyring K file.asc``.

``gpg`` itself refuses to make new signatures with an expired or revoked
subkey ("Unusable secret key"); hence the faked-time helpers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

DEFAULT_UID = "vmcoreos test <test@invalid>"
DAY = 86400
YEAR = 365 * DAY

# gpg-agent's socket lives in the homedir when /run/user/<uid> does not
# exist; a sun_path holds at most 107 bytes, so long homedirs go to /tmp.
_MAX_HOME_LEN = 60


def _gpg_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPG_AGENT")}
    env.update(GNUPGHOME=str(home), LC_ALL="C", LANGUAGE="C")
    return env


@dataclass(frozen=True)
class Subkey:
    fingerprint: str
    validity: str  # colon-listing field 2: "-" valid (trust-model always), "e" expired, "r" revoked
    created: int
    expires: int | None
    capabilities: str

    @property
    def keyid(self) -> str:
        return self.fingerprint[-16:]


@dataclass(frozen=True)
class GpgvResult:
    returncode: int
    status: list[str]  # "[GNUPG:] " stripped
    stderr: str

    def keywords(self) -> list[str]:
        return [line.split()[0] for line in self.status if line.split()]

    def has(self, keyword: str) -> bool:
        return keyword in self.keywords()

    def line(self, keyword: str) -> list[str] | None:
        """Fields of the first status line with that keyword (keyword excluded)."""
        for line in self.status:
            fields = line.split()
            if fields and fields[0] == keyword:
                return fields[1:]
        return None

    @property
    def validsig_primary(self) -> str | None:
        """Last field of VALIDSIG: the primary key's fingerprint."""
        fields = self.line("VALIDSIG")
        return fields[-1] if fields else None

    @property
    def validsig_signer(self) -> str | None:
        """First field of VALIDSIG: the fingerprint of the (sub)key that signed."""
        fields = self.line("VALIDSIG")
        return fields[0] if fields else None


def run_gpgv(keyring: Path | str, sig: Path | str, data: Path | str | None = None) -> GpgvResult:
    """``gpgv --status-fd 1 --keyring KEYRING SIG [DATA]`` (keyring must be binary)."""
    cmd = ["gpgv", "--status-fd", "1", "--keyring", str(Path(keyring).resolve()), str(sig)]
    if data is not None:
        cmd.append(str(data))
    with tempfile.TemporaryDirectory(prefix="vmcgpgv-") as home:  # gpgv needs no agent
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_gpg_env(Path(home)), timeout=60)
    status = [line[len("[GNUPG:] ") :] for line in proc.stdout.splitlines() if line.startswith("[GNUPG:] ")]
    return GpgvResult(proc.returncode, status, proc.stderr)


class TestSigner:
    """A private GnuPG home with one certify-only primary key and signing subkeys.

    Use ``TestSigner.create(tmp_path)`` and call ``close()`` (or use it as a
    context manager) to stop its gpg-agent.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, home: Path, fingerprint: str, subkey_fingerprint: str, *, owns_home: bool, algo: str):
        self.home = home
        self.fingerprint = fingerprint
        self.subkey_fingerprint = subkey_fingerprint
        self.algo = algo
        self._owns_home = owns_home

    # ---- lifecycle -------------------------------------------------------

    @classmethod
    def create(
        cls, tmpdir: Path | str, uid: str = DEFAULT_UID, *, algo: str = "ed25519", created: int | None = None
    ) -> "TestSigner":
        """Make a new key in a fresh GNUPGHOME under ``tmpdir``.

        ``created``: primary-key creation time (epoch; default 3 years ago).
        The first signing subkey is created 2 years ago with no expiry.
        """
        tmpdir = Path(tmpdir)
        home = tmpdir / "gnupg"
        owns_home = len(str(home)) > _MAX_HOME_LEN or home.exists()
        if owns_home:
            home = Path(tempfile.mkdtemp(prefix="vmcgpg-"))
        else:
            home.mkdir(mode=0o700, parents=True)
        os.chmod(home, 0o700)
        now = int(time.time())
        primary_created = now - 3 * YEAR if created is None else created
        signer = cls(home, "", "", owns_home=owns_home, algo=algo)
        try:
            signer._gpg("--quick-gen-key", uid, algo, "cert", "never", at=primary_created)
            signer.fingerprint = signer._primary_fingerprint()
            signer.subkey_fingerprint = signer.add_signing_subkey(created=max(primary_created, now - 2 * YEAR))
        except BaseException:
            signer.close()
            raise
        return signer

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            env=_gpg_env(self.home),
            capture_output=True,
            timeout=30,
        )
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "TestSigner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- gpg plumbing ----------------------------------------------------

    def _gpg(self, *args: str, at: int | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        cmd = [
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--trust-model",
            "always",
        ]
        if at is not None:
            cmd += ["--faked-system-time", f"{int(at)}!"]
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, env=_gpg_env(self.home), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def _colons(self) -> list[list[str]]:
        which = [self.fingerprint] if self.fingerprint else []
        out = self._gpg("--with-colons", "--fixed-list-mode", "--list-keys", *which).stdout
        return [line.split(":") for line in out.splitlines()]

    def _primary_fingerprint(self) -> str:
        rows = self._colons()
        for i, row in enumerate(rows):
            if row[0] == "pub":
                return next(r[9] for r in rows[i + 1 :] if r[0] == "fpr")
        raise RuntimeError("no primary key generated")

    @property
    def subkeys(self) -> list[Subkey]:
        """All subkeys, in gpg's listing order (the order ``--edit-key`` numbers them)."""
        rows = self._colons()
        out = []
        for i, row in enumerate(rows):
            if row[0] == "sub":
                fpr = next(r[9] for r in rows[i + 1 :] if r[0] == "fpr")
                out.append(Subkey(fpr, row[1], int(row[5]), int(row[6]) if row[6] else None, row[11]))
        return out

    def subkey(self, fpr: str | None = None) -> Subkey:
        fpr = (fpr or self.subkey_fingerprint).upper()
        for sk in self.subkeys:
            if sk.fingerprint == fpr:
                return sk
        raise KeyError(fpr)

    # ---- keys ------------------------------------------------------------

    def add_signing_subkey(self, *, created: int | None = None, expires: int | str | None = None) -> str:
        """Add a signing subkey and make it the one used; return its fingerprint.

        ``created``: creation time (epoch), default one day ago, so that its
        expiry or revocation can later be backdated too. ``expires``: epoch
        seconds, or a gpg expire string ("1y", "seconds=N"); default never.
        """
        created = int(time.time()) - DAY if created is None else int(created)
        if expires is None:
            exp = "never"
        elif isinstance(expires, int):
            exp = f"seconds={expires - created}"
        else:
            exp = expires
        before = {sk.fingerprint for sk in self.subkeys} if self.fingerprint else set()
        self._gpg("--quick-add-key", self.fingerprint, self.algo, "sign", exp, at=created)
        new = [sk.fingerprint for sk in self.subkeys if sk.fingerprint not in before]
        if len(new) != 1:
            raise RuntimeError(f"expected one new subkey, found {new}")
        self.subkey_fingerprint = new[0]
        return new[0]

    def expire_subkey(self, fpr: str | None = None, *, at: int | None = None) -> None:
        """Make subkey ``fpr`` (default: the current one) expire at ``at`` (default: 1 hour ago).

        Done with a new binding signature made one minute before ``at``
        (faked time), which must be after the subkey's creation.
        """
        sk = self.subkey(fpr)
        at = int(time.time()) - 3600 if at is None else int(at)
        made = at - 60
        if made <= sk.created:
            raise ValueError("expiry must be more than a minute after the subkey's creation")
        self._gpg("--quick-set-expire", self.fingerprint, "seconds=60", sk.fingerprint, at=made)

    def revoke_subkey(self, fpr: str | None = None, *, reason: int = 0) -> None:
        """Revoke subkey ``fpr`` (default: the current one). gpg will no longer sign with it."""
        target = (fpr or self.subkey_fingerprint).upper()
        index = [sk.fingerprint for sk in self.subkeys].index(target) + 1
        # Answers, in order: keyedit.prompt, keyedit.revoke.subkey.okay,
        # ask_revocation_reason.code, .text (empty line ends it), .okay, then save.
        script = f"key {index}\nrevkey\ny\n{reason}\n\ny\nsave\n"
        self._gpg("--command-fd", "0", "--edit-key", self.fingerprint, input=script)
        if self.subkey(target).validity != "r":
            raise RuntimeError(f"subkey {target} was not revoked")

    def public_key_bytes(self) -> bytes:
        cmd = ["gpg", "--homedir", str(self.home), "--batch", "--export", self.fingerprint]
        return subprocess.run(cmd, capture_output=True, check=True, env=_gpg_env(self.home), timeout=60).stdout

    def public_key_armored(self) -> str:
        return self._gpg("--armor", "--export", self.fingerprint).stdout

    def write_public_key(self, path: Path | str, *, armor: bool = True) -> Path:
        """Write the public key (all subkeys): armored (like the vendors' .asc) or binary."""
        path = Path(path)
        if armor:
            path.write_text(self.public_key_armored())
        else:
            path.write_bytes(self.public_key_bytes())
        return path

    def write_keyring(self, path: Path | str) -> Path:
        """Binary public keyring, what ``gpgv --keyring`` needs."""
        return self.write_public_key(path, armor=False)

    # ---- signing ---------------------------------------------------------

    def _signing_args(self, subkey: str | None) -> list[str]:
        # "!" forces that exact subkey instead of gpg's choice.
        return ["--local-user", f"{(subkey or self.subkey_fingerprint).upper()}!"]

    def sign_detached(
        self,
        file: Path | str,
        sig_out: Path | str | None = None,
        *,
        armor: bool = False,
        subkey: str | None = None,
        at: int | None = None,
    ) -> Path:
        """Detached signature, binary by default like the release servers' ``.sig``.

        ``sig_out`` defaults to ``<file>.sig`` (``.asc`` when armored).
        ``at``: signature time (epoch), via ``--faked-system-time``.
        """
        file = Path(file)
        out = Path(sig_out) if sig_out is not None else file.with_name(file.name + (".asc" if armor else ".sig"))
        args = self._signing_args(subkey) + ["--yes", "--output", str(out), "--detach-sign"]
        if armor:
            args.insert(0, "--armor")
        self._gpg(*args, str(file), at=at)
        return out

    def clearsign(
        self, file: Path | str, out: Path | str | None = None, *, subkey: str | None = None, at: int | None = None
    ) -> Path:
        """Clearsigned copy, like the release servers' ``.DIGESTS.asc``; default ``<file>.asc``."""
        file = Path(file)
        out = Path(out) if out is not None else file.with_name(file.name + ".asc")
        self._gpg(*self._signing_args(subkey), "--yes", "--output", str(out), "--clearsign", str(file), at=at)
        return out

    def sign_detached_expired(self, file: Path | str, sig_out: Path | str | None = None, *, armor: bool = False) -> str:
        """Sign with a new subkey that has expired since; return that subkey's fingerprint.

        The subkey is created 2 days ago with an expiry 1 hour ago, set in its one binding
        signature as the vendors do (coreos-facts.md §2: each binding is made with the subkey),
        and signs 1 day ago. The current signing subkey is left unchanged.
        """
        now = int(time.time())
        current = self.subkey_fingerprint
        fpr = self.add_signing_subkey(created=now - 2 * DAY, expires=now - 3600)
        self.subkey_fingerprint = current
        self.sign_detached(file, sig_out, armor=armor, subkey=fpr, at=now - DAY)
        return fpr

    def sign_detached_revoked(self, file: Path | str, sig_out: Path | str | None = None, *, armor: bool = False) -> str:
        """Sign with a new subkey, then revoke it; return that subkey's fingerprint.

        The current signing subkey is left unchanged.
        """
        current = self.subkey_fingerprint
        fpr = self.add_signing_subkey()
        self.subkey_fingerprint = current
        self.sign_detached(file, sig_out, armor=armor, subkey=fpr)
        self.revoke_subkey(fpr)
        return fpr


# --------------------------------------------------------------------------
# DIGESTS
# --------------------------------------------------------------------------

_DIGEST_TYPES = (("MD5", hashlib.md5), ("SHA1", hashlib.sha1), ("SHA512", hashlib.sha512))


def file_digests(path: Path | str) -> dict[str, str]:
    """{"MD5": hex, "SHA1": hex, "SHA512": hex} of a file, read in 1 MiB chunks."""
    hashers = {name: make() for name, make in _DIGEST_TYPES}
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def write_digests(files: Iterable[Path | str] | Path | str, out: Path | str) -> Path:
    """Write a Flatcar/CoreOS ``DIGESTS`` file for ``files``.

    Format (coreos/scripts ``make_digests``, flatcar/scripts
    ``create_digests``): for each file in order, the three blocks
    ``# MD5 HASH``, ``# SHA1 HASH``, ``# SHA512 HASH``, each followed by one
    coreutils-style line ``<hex>  <basename>``. No SHA-256.
    """
    if isinstance(files, (str, Path)):
        files = [files]
    lines: list[str] = []
    for file in files:
        digests = file_digests(file)
        for name, _ in _DIGEST_TYPES:
            lines.append(f"# {name} HASH")
            lines.append(f"{digests[name]}  {Path(file).name}")
    out = Path(out)
    out.write_text("\n".join(lines) + "\n")
    return out


__all__: Sequence[str] = (
    "DEFAULT_UID",
    "GpgvResult",
    "Subkey",
    "TestSigner",
    "file_digests",
    "run_gpgv",
    "write_digests",
)
