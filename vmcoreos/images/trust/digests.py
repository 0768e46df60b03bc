"""The checks that ride along the one pass over an image: digests here, the signature in signature.py.

Each check takes bytes with `update()` and gives its verdict only when
`finish()` is called. Nothing is decided at end-of-stream implicitly: a
reader that stops early (a tar reader at its end marker) must not skip the
check, which is how coreos-installer's CVE-2021-20319 happened.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from vmcoreos.errors import VerificationError


class Check:
    def update(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class DigestCheck(Check):
    def __init__(self, algorithm: str, expected_hex: str, label: str):
        self.algorithm = algorithm
        self.expected = expected_hex.lower()
        self.label = label
        self._hash = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def finish(self) -> None:
        actual = self._hash.hexdigest()
        if not hmac.compare_digest(actual, self.expected):
            expected, got = abbreviate(self.expected, actual)
            raise VerificationError(
                f"{self.label}: {self.algorithm.upper()} mismatch (expected {expected}, got {got});"
                " the file is corrupt or altered"
            )


def abbreviate(expected: str, actual: str, width: int = 16) -> tuple[str, str]:
    """Two hex digests shortened to a window where they differ, so a message shows the difference."""
    first = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), 0)
    start = max(0, min(first - 4, len(expected) - width))

    def cut(x: str) -> str:
        return ("…" if start else "") + x[start : start + width] + ("…" if start + width < len(x) else "")

    return cut(expected), cut(actual)


class Sha512Tap(Check):
    """Just computes SHA-512 for the cache record and the DIGESTS comparison."""

    def __init__(self) -> None:
        self._hash = hashlib.sha512()
        self.hexdigest: str | None = None

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def finish(self) -> None:
        self.hexdigest = self._hash.hexdigest()


_DIGEST_LENGTHS = {"MD5": 32, "SHA1": 40, "SHA256": 64, "SHA512": 128}
_DIGEST_HEADER = re.compile(r"# ([A-Z0-9]+) HASH")
_DIGEST_LINE = re.compile(r"([0-9a-fA-F]+) [ *](.+)")


def parse_digests(text: str, where: str) -> dict[str, dict[str, str]]:
    """A vendor DIGESTS file: {file name: {"SHA512": hex, ...}}.

    Blocks of `# <TYPE> HASH` followed by coreutils lines `<hex>  <name>`
    (coreos/scripts make_digests, flatcar/scripts create_digests).
    """
    found: dict[str, dict[str, str]] = {}
    algo = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        header = _DIGEST_HEADER.fullmatch(line)
        if header:
            algo = header.group(1)
            continue
        entry = _DIGEST_LINE.fullmatch(line)
        if algo is None or entry is None:
            raise VerificationError(f"{where} line {number} is not a DIGESTS line; refusing it")
        digest, name = entry.group(1).lower(), entry.group(2)
        if algo in _DIGEST_LENGTHS and len(digest) != _DIGEST_LENGTHS[algo]:
            raise VerificationError(f"{where} line {number}: a {algo} digest has {_DIGEST_LENGTHS[algo]} hex digits")
        known = found.setdefault(name, {})
        if known.get(algo, digest) != digest:
            raise VerificationError(f"{where} lists two different {algo} digests for {name}; refusing it")
        known[algo] = digest
    return found
