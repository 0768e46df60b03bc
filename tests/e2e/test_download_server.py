"""Downloads from the release server on loopback (tests/harness/release_server.py): resume, retries
and their budget, a file changed between attempts, bounded sizes and deadlines, redirects.

The units of the same module (retry delays, redaction, URL errors) are tests/images/transfer/test_download.py.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.harness.release_server import ReleaseServer
from tests.harness.recorder import Events
from vmcoreos.errors import DownloadError
from vmcoreos.images.transfer.download import Http
from vmcoreos.images.trust.digests import Check

SIZE = 3 << 20


class Recorder(Check):
    """Counts and hashes what it is fed; on_bytes(seen) runs after each chunk."""

    made: list["Recorder"]

    def __init__(self, on_bytes=None):
        self.hash = hashlib.sha256()
        self.seen = 0
        self.aborted = False
        self.on_bytes = on_bytes

    def update(self, chunk):
        self.hash.update(chunk)
        self.seen += len(chunk)
        if self.on_bytes:
            self.on_bytes(self.seen)

    def abort(self):
        self.aborted = True


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    data = os.urandom(SIZE)
    (root / "image.ova").write_bytes(data)
    (root / "small.txt").write_bytes(b"hello\n")
    with ReleaseServer(root) as server:
        yield server, data, tmp_path


def download(server, tmp_path, *, retries=3, on_bytes=None):
    made: list[Recorder] = []

    def start():
        made.append(Recorder(on_bytes))
        return made[-1]

    events = Events()
    with Http(events, retries=retries, max_delay=0.01) as http:
        size, check = http.download(f"{server.url}/image.ova", tmp_path / "image.ova.part", start, "downloading image.ova")
    return size, check, made, events


@pytest.mark.e2e
def test_dropped_connection_resumes_with_the_same_hashes(served):
    server, data, tmp = served
    server.drop_after("/image.ova", 1_500_000)
    size, check, made, events = download(server, tmp)
    assert len(made) == 1, "a resume must not start a new pass"
    assert size == check.seen == SIZE  # every byte fed exactly once
    assert check.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert (tmp / "image.ova.part").read_bytes() == data
    first, second = server.gets("/image.ova")
    # Resumed where the bytes stopped (urllib3 hands over the short last read) or at the last whole chunk.
    assert first.range is None and second.range in ("bytes=1500000-", f"bytes={1 << 20}-")
    assert second.status == 206
    assert any("resuming at" in e for e in events.events)


@pytest.mark.e2e
def test_server_ignoring_range_gets_a_fresh_pass_and_an_emptied_file(served):
    server, data, tmp = served
    server.ignore_range()
    server.drop_after("/image.ova", 1_500_000)
    size, check, made, _ = download(server, tmp)
    assert len(made) == 2 and made[0].aborted and not made[1].aborted
    assert check is made[1] and check.seen == size == SIZE
    assert check.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert (tmp / "image.ova.part").read_bytes() == data


@pytest.mark.e2e
def test_a_file_changed_between_attempts_is_not_spliced(served):
    server, data, tmp = served
    new = os.urandom(SIZE)
    server.drop_after("/image.ova", 1_500_000)

    def replace_once(seen, done=[]):
        if seen >= 1_000_000 and not done:  # new inode: the ETag the If-Range names no longer matches
            done.append(1)
            path = server.root / "image.ova"
            path.with_name("new").write_bytes(new)
            os.replace(path.with_name("new"), path)

    size, check, made, _ = download(server, tmp, on_bytes=replace_once)
    assert len(made) == 2 and made[0].aborted
    resumed = server.gets("/image.ova")[1]
    assert resumed.range and resumed.status == 200
    assert check.hash.hexdigest() == hashlib.sha256(new).hexdigest()
    assert (tmp / "image.ova.part").read_bytes() == new


@pytest.mark.e2e
def test_503s_are_retried_then_succeed(served):
    server, data, tmp = served
    server.fail("/image.ova", 2)
    size, check, made, events = download(server, tmp)
    assert size == SIZE and [r.status for r in server.gets("/image.ova")] == [503, 503, 200]
    assert [e.split(";")[1].strip().split(" in ")[0] for e in events.events if "retry" in e] == [
        "retry 1 of 3", "retry 2 of 3"
    ]


@pytest.mark.e2e
def test_retries_are_bounded_and_the_pass_is_aborted(served):
    server, _, tmp = served
    server.fail("/image.ova", 100, status=502)
    with pytest.raises(DownloadError, match="HTTP 502 .gave up after 2 retries"):
        download(server, tmp, retries=2)
    assert len(server.gets("/image.ova")) == 3


@pytest.mark.e2e
def test_progress_resets_the_retry_budget(served):
    server, data, tmp = served
    server.drop_after("/image.ova", 1_000_000)

    def drop_again(seen, armed=[]):
        if seen >= 900_000 and not armed:  # the first drop is taken; the resume will drop too
            armed.append(1)
            server.drop_after("/image.ova", 500_000)

    size, check, made, _ = download(server, tmp, retries=1, on_bytes=drop_again)
    # Two drops with one retry allowed: each came after progress, so each got the budget back.
    assert size == SIZE and check.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert [r.status for r in server.gets("/image.ova")] == [200, 206, 206]


@pytest.mark.e2e
def test_404_is_not_retried(served):
    server, _, tmp = served
    events = Events()
    with Http(events, retries=3, max_delay=0.01) as http:
        with pytest.raises(DownloadError, match="HTTP 404"):
            http.download(f"{server.url}/nope.ova", tmp / "x.part", Recorder, "x")
        assert http.get_bytes(f"{server.url}/nope.sig", "signature", missing_ok=True) is None
        with pytest.raises(DownloadError, match="cannot fetch version.txt .*HTTP 404"):
            http.get_bytes(f"{server.url}/version.txt", "version.txt")
        assert http.get_bytes(f"{server.url}/small.txt", "x") == b"hello\n"
        with pytest.raises(DownloadError, match="larger than 3 bytes"):
            http.get_bytes(f"{server.url}/small.txt", "signature", limit=3)
    assert len(server.gets("/nope.ova")) == 1


def _bounded(server, tmp_path, timeout=20, **http_args):
    """Run one download on a thread; (finished in time, the exception it ended with, GETs made)."""
    import threading

    outcome = {}

    def run():
        try:
            with Http(Events(), max_delay=0.001, **http_args) as http:
                http.download(f"{server.url}/image.ova", tmp_path / "image.ova.part", Recorder, "downloading image.ova")
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), outcome.get("error"), len(server.gets("/image.ova"))


@pytest.mark.e2e
def test_one_byte_then_disconnect_forever_ends(served):
    # The reproduction: 200, one byte, hang up; again and again, with --retries 2.
    server, _, tmp_path = served
    server.ignore_range()
    server.drop_after("/image.ova", 1, times=None)
    finished, error, gets = _bounded(server, tmp_path, retries=2)
    assert finished, f"still downloading after {gets} requests"
    assert isinstance(error, DownloadError) and "gave up" in error.message
    assert gets <= 3 * 10


@pytest.mark.e2e
def test_a_byte_of_progress_per_attempt_still_ends(served):
    # Every resume gets one more byte: real progress, but at that pace the request cap ends it.
    server, _, tmp_path = served
    server.drop_after("/image.ova", 1, times=None)
    finished, error, gets = _bounded(server, tmp_path, retries=2)
    assert finished, f"still downloading after {gets} requests"
    assert isinstance(error, DownloadError) and "gave up after 30 requests" in error.message
    assert gets == 30


@pytest.mark.e2e
def test_the_deadline_ends_a_download(served):
    server, _, tmp_path = served
    server.drop_after("/image.ova", 1, times=None)
    finished, error, _ = _bounded(server, tmp_path, retries=100, deadline=0.5)
    assert finished and isinstance(error, DownloadError) and "not done after 0.5s" in error.message


@pytest.mark.e2e
def test_an_image_without_content_length_is_capped(served):
    server, _, tmp_path = served
    server.no_length("/image.ova")
    finished, error, _ = _bounded(server, tmp_path, retries=0, max_size=1 << 20)
    assert finished and isinstance(error, DownloadError), error
    assert "sent more than 1048576 bytes" in error.message


@pytest.mark.e2e
def test_an_announced_size_over_the_cap_is_refused_before_the_body(served):
    server, _, tmp_path = served
    finished, error, _ = _bounded(server, tmp_path, retries=0, max_size=1 << 20)
    assert finished and isinstance(error, DownloadError) and f"announces {SIZE} bytes" in error.message
    assert not (tmp_path / "image.ova.part").stat().st_size


@pytest.mark.e2e
def test_http_redirects_are_still_followed(served):
    server, _, _ = served
    server.redirect("/moved.txt", f"{server.url}/small.txt")
    with Http(Events(), retries=0) as http:
        assert http.get_bytes(f"{server.url}/moved.txt", "version.txt") == b"hello\n"
