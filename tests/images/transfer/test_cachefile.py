"""The download's cache file: the same bytes as a plain write, written past the page cache where it can be."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from vmcoreos.images.transfer import cachefile
from vmcoreos.images.transfer.cachefile import BLOCK, CacheFile


def _write(path, pieces):
    with CacheFile(path) as f:
        for piece in pieces:
            f.write(piece)
        return f.direct


@pytest.mark.parametrize("sizes", [[], [1], [BLOCK - 1], [BLOCK], [BLOCK + 1], [7, BLOCK, 3 * BLOCK + 17, 5]])
def test_what_is_written_is_what_was_given(tmp_path, sizes):
    pieces = [os.urandom(n) for n in sizes]
    _write(tmp_path / "f", pieces)
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)


@pytest.fixture
def on_disk():
    """A file in the checkout's build directory: on the machine's disk, where /tmp might be a tmpfs."""
    path = Path(__file__).resolve().parents[2] / "build" / f"cachefile-test-{os.getpid()}"
    path.parent.mkdir(exist_ok=True)
    yield path
    path.unlink(missing_ok=True)


def test_on_a_disk_the_blocks_bypass_the_page_cache(on_disk):
    # The point of it: whole blocks go out with O_DIRECT, so the new file is not in the page cache.
    # fincore (util-linux) counts a file's cached pages; the tail block is the only one cached.
    data = os.urandom(8 * BLOCK + 100)
    assert _write(on_disk, [data]) is True, f"{on_disk.parent} takes O_DIRECT"
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(on_disk)],
                         capture_output=True, text=True, check=True).stdout
    assert int(out.strip()) <= 2 * 4096
    assert on_disk.read_bytes() == data


def test_a_filesystem_that_refuses_direct_writes_gets_buffered_ones(tmp_path, monkeypatch):
    real = os.write
    calls = []

    def write(fd, data):
        flags = __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFL)
        calls.append(bool(flags & os.O_DIRECT))
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data)

    monkeypatch.setattr(cachefile.os, "write", write)
    data = os.urandom(3 * BLOCK + 5)
    assert _write(tmp_path / "f", [data]) is False
    assert calls[:2] == [True, False] and not any(calls[2:])
    assert (tmp_path / "f").read_bytes() == data


def test_a_real_write_error_is_not_hidden(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cachefile.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        _write(tmp_path / "f", [b"x" * BLOCK])


def test_a_restart_empties_it(tmp_path):
    with CacheFile(tmp_path / "f") as f:
        f.write(b"a" * (BLOCK + 10))
        f.restart()
        f.write(b"b" * 10)
    assert (tmp_path / "f").read_bytes() == b"b" * 10


def test_a_symlink_planted_in_its_place_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_bytes(b"keep")
    (tmp_path / "f").symlink_to(target)
    with pytest.raises(OSError):
        CacheFile(tmp_path / "f")
    assert target.read_bytes() == b"keep"


def test_a_failed_download_writes_no_tail(tmp_path):
    with pytest.raises(RuntimeError):
        with CacheFile(tmp_path / "f") as f:
            f.write(b"x" * 10)
            raise RuntimeError("cut")
    assert (tmp_path / "f").read_bytes() == b""
