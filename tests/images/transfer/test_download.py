"""Http's units: retry delays, redaction, URL errors, refused connections and redirects.

Against the release server on loopback (resume, retries, bounds) it is tested in
tests/e2e/test_download_server.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.harness.recorder import Events
from vmcoreos.errors import ConfigError, DownloadError
from vmcoreos.images.transfer.download import Http, max_delay_from_env, redact


def test_connection_refused_is_retried_then_reported(tmp_path):
    from tests.harness.services import free_port

    events = Events()
    with Http(events, retries=1, max_delay=0.01) as http:
        with pytest.raises(DownloadError, match="connection refused .tried 2 times"):
            http.get_bytes(f"http://127.0.0.1:{free_port()}/version.txt", "version.txt")
    assert len([e for e in events.events if "retry" in e]) == 1


def test_redact_hides_credentials():
    assert redact("https://user:s3cret@mirror.lab:8443/a/b.ova?x=1") == "https://mirror.lab:8443/a/b.ova?x=1"
    assert redact("http://mirror.lab/a") == "http://mirror.lab/a"


@pytest.mark.parametrize("value,expected", [(None, 30.0), ("0.05", 0.05), ("2", 2.0)])
def test_max_delay_from_env(value, expected):
    env = {} if value is None else {"VMCOREOS_RETRY_MAX_DELAY": value}
    assert max_delay_from_env(env) == expected


def test_bad_max_delay():
    with pytest.raises(ConfigError, match="VMCOREOS_RETRY_MAX_DELAY"):
        max_delay_from_env({"VMCOREOS_RETRY_MAX_DELAY": "soon"})


# -- bounded downloads, URL errors without credentials, no TLS downgrade ------------------------


def test_a_credentialed_url_with_a_bad_port_is_a_config_error_without_the_password():
    with Http(Events(), retries=0) as http:
        with pytest.raises(ConfigError) as info:
            http.get_bytes("https://user:secret@mirror.lab:99999/stable/current/version.txt", "version.txt")
    assert "secret" not in info.value.message and "user" not in info.value.message
    assert "mirror.lab:99999" in info.value.message and "not valid" in info.value.message


def test_redact_survives_a_bad_port_and_finds_urls_in_text():
    assert redact("https://user:secret@mirror.lab:99999/a") == "https://mirror.lab:99999/a"
    assert redact("Failed to parse: https://u:p@h/x and http://a:b@c/") == "Failed to parse: https://h/x and http://c/"


def test_an_https_to_http_redirect_is_refused():
    import requests

    with Http(Events(), retries=0) as http:
        resp = requests.Response()
        resp.status_code, resp.url = 302, "https://mirror.lab/a.ova"
        resp.headers["Location"] = "http://evil.lab/a.ova"
        with pytest.raises(DownloadError, match="drops TLS"):
            http.session.get_redirect_target(resp)
        resp.headers["Location"] = "/b.ova"  # same scheme: followed as before
        assert http.session.get_redirect_target(resp) == "/b.ova"


def test_a_small_file_trickled_a_byte_at_a_time_is_cut_at_its_deadline():
    # Each byte comes within the read timeout, so no read times out; the old check between 64 KiB reads
    # waited for all 40 bytes (10 s). The deadline cuts the blocked read itself.
    import time as _time

    from tests.harness.silentpeer import SilentPeer
    from vmcoreos.errors import DownloadError
    from vmcoreos.images.transfer.download import Http

    quiet = SimpleNamespace(event=lambda *a: None, transfer=lambda *a: None)
    with SilentPeer(trickle=0.25, prefix=b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nx") as peer:
        with Http(quiet, retries=0, timeout=(2, 2), small_deadline=1) as http:
            started = _time.monotonic()
            with pytest.raises(DownloadError, match=r"version.txt http://127.0.0.1:\d+/v did not arrive within 1s"):
                http.get_bytes(f"http://127.0.0.1:{peer.port}/v", "version.txt")
            assert _time.monotonic() - started < 5


def test_a_download_trickled_a_byte_at_a_time_is_cut_at_its_deadline(tmp_path):
    import time as _time

    from tests.harness.silentpeer import SilentPeer
    from vmcoreos.errors import DownloadError
    from vmcoreos.images.transfer.download import Http
    from vmcoreos.images.trust.digests import Sha512Tap

    quiet = SimpleNamespace(event=lambda *a: None, transfer=lambda *a: None)
    with SilentPeer(trickle=0.25, prefix=b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nx") as peer:
        with Http(quiet, retries=0, timeout=(2, 2), deadline=1) as http:
            started = _time.monotonic()
            with pytest.raises(DownloadError, match="not done after 1s"):
                http.download(f"http://127.0.0.1:{peer.port}/a.ova", tmp_path / "a.part", Sha512Tap, "a.ova")
            assert _time.monotonic() - started < 5
