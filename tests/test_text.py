"""One credential scrubber and one failure-reason function for the whole package."""

import socket

import pytest
import requests

from vmcoreos.text import origin, reason, redact


@pytest.mark.parametrize("text,removed,masked", [
    ("Failed to parse: https://user:secret@h:99999/x", "Failed to parse: https://h:99999/x",
     "Failed to parse: https://***@h:99999/x"),
    ("'http://u:p%40ss@h/a' and ftp://only-user@h/b", "'http://h/a' and ftp://h/b", "'http://***@h/a' and ftp://***@h/b"),
    ("https://u:pa/ss@h/v", "https://h/v", "https://***@h/v"),  # a '/' in the password leaks nothing
    ("https://u:p@ss@h/v", "https://h/v", "https://***@h/v"),  # nor an unescaped '@'
    ("https://h/path and mail@example.com", "https://h/path and mail@example.com",
     "https://h/path and mail@example.com"),
])
def test_one_scrubber_whatever_the_message_shows(text, removed, masked):
    assert redact(text) == removed and redact(text, "***") == masked
    assert "secret" not in redact(text) and "pa/ss" not in redact(text) and "p@ss" not in redact(text)


def test_origin_shows_neither_credentials_nor_the_token():
    assert origin("https://u:p@disco.lab:2379/v2/keys/_etcd/registry/0123abcd") == "https://disco.lab:2379"


@pytest.mark.parametrize("exc,words", [
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (socket.gaierror(-2, "Name or service not known"), "host name not found"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
    (socket.timeout("timed out"), "timed out"),
    (requests.ConnectionError("HTTPSConnectionPool(host='h', port=443): Max retries (Caused by NewConnectionError("
                              "'<urllib3.connection.HTTPSConnection>: Failed to establish a new connection: [Errno 111]"
                              " Connection refused'))"), "connection refused"),
    (requests.ReadTimeout("HTTPSConnectionPool(host='h', port=443): Read timed out."), "timed out"),
    (requests.ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed'))"), "connection dropped"),
    (OSError("bad https://user:secret@h/x (extra detail)"), "bad https://h/x"),
    (OSError(), "OSError"),
])
def test_one_reason_for_every_kind_of_failure(exc, words):
    assert reason(exc) == words
