"""HTTP for images: timeouts on every request, bounded retries with backoff, resume with Range.

A download streams into a `.part` file and through one Check (the whole
verification pass) in the same loop. After a dropped connection it asks for
the rest with Range and goes on feeding the same Check, whose hashes already
saw the first bytes; a server that answers with the whole file instead gets
a fresh Check and an emptied .part, never a spliced file.
"""

from __future__ import annotations

import email.utils
import re
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
import urllib3

from vmcoreos import __version__
from vmcoreos.errors import ConfigError, DownloadError
from vmcoreos.images.transfer.cachefile import CacheFile
from vmcoreos.http_deadlines import WatchedAdapter, within as _within
from vmcoreos.images.transfer.taps import CHUNK
from vmcoreos.images.trust.digests import Check
from vmcoreos.reporting import Reporter
from vmcoreos.environment import ENV_RETRY_MAX_DELAY, value as env_value
from vmcoreos.text import reason, redact

# curl's --retry list: timeouts, rate limits and gateway trouble are worth another try.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TIMEOUT = (10, 60)  # connect, read (between bytes): no request waits forever
DEFAULT_MAX_DELAY = 30.0
MAX_IMAGE_SIZE = 16 << 30  # the vendors' OVAs are under 2 GiB; a server may not fill the disk
DOWNLOAD_DEADLINE = 4 * 3600.0  # seconds for one image, every retry included
SMALL_DEADLINE = 120.0  # seconds for one small file (a signature, version.txt), every retry included
# However often a download makes progress, it ends after this many requests (times (retries + 1)).
ATTEMPTS_PER_RETRY = 10
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")


class _Transient(Exception):
    """Trouble worth another try: a dropped or refused connection, a timeout, a retryable status."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def max_delay_from_env(environ=None) -> float:
    raw = env_value(ENV_RETRY_MAX_DELAY, environ)
    if not raw:
        return DEFAULT_MAX_DELAY
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"{ENV_RETRY_MAX_DELAY}={raw!r} must be a number of seconds between 0 and 3600")
    return value


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# Errors in the URL itself (a bad port, no host, a stray character): no retry helps.
_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
               requests.exceptions.InvalidHeader, urllib3.exceptions.LocationValueError)


def _bad_url(url: str, what: str, exc: BaseException) -> ConfigError:
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return ConfigError(f"cannot fetch {what} {redact(url)}: only http:// and https:// URLs are supported")
    return ConfigError(f"cannot fetch {what} {redact(url)}: the URL is not valid; check --base-url, --ova and --sig")


class _Session(requests.Session):
    """A requests session that refuses a redirect from https to anything else: TLS must not be stripped."""

    def get_redirect_target(self, resp):
        target = super().get_redirect_target(resp)
        if target and urlsplit(resp.url).scheme == "https":
            scheme = urlsplit(urljoin(resp.url, target)).scheme
            if scheme != "https":
                raise DownloadError(
                    f"{redact(resp.url)} redirects to {scheme}://, which drops TLS; refusing it (fix the mirror)"
                )
        return target


_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


class Http:
    """One session for a run; every request has timeouts and the same retry policy."""

    def __init__(self, reporter: Reporter, *, retries: int = 5, max_delay: float | None = None,
                 timeout: tuple[float, float] = TIMEOUT, max_size: int = MAX_IMAGE_SIZE,
                 deadline: float = DOWNLOAD_DEADLINE, small_deadline: float = SMALL_DEADLINE):
        if retries < 0:
            raise ConfigError("--retries must be 0 or more")
        self.reporter = reporter
        self.retries = retries
        self.max_delay = max_delay_from_env() if max_delay is None else max_delay
        self.timeout = timeout
        self.max_size = max_size
        self.deadline = deadline
        self.small_deadline = small_deadline
        self.session = _Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, WatchedAdapter())
        # identity: Range offsets must count the bytes we store, not a decoded stream.
        self.session.headers.update({"User-Agent": f"vmcoreos/{__version__}", "Accept-Encoding": "identity"})

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Http":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- retry policy ------------------------------------------------------------

    def _retrying(self, label: str, since: Callable[[], int] = lambda: 0, *,
                  deadline: float | None = None) -> tenacity.Retrying:
        """Doubling delays capped at max_delay; `since()` is the attempt after which bytes last arrived.

        A download that makes progress before it drops gets its full retry budget back, but
        never more than ATTEMPTS_PER_RETRY x (retries + 1) requests nor `deadline` seconds in all:
        a server that sends a byte and hangs up must not keep us (and the host lock) forever.
        """
        ends = time.monotonic() + (self.deadline if deadline is None else deadline)

        def strikes(state: tenacity.RetryCallState) -> int:
            return state.attempt_number - since()

        def stop(state: tenacity.RetryCallState) -> bool:
            return (strikes(state) > self.retries
                    or state.attempt_number >= ATTEMPTS_PER_RETRY * (self.retries + 1)
                    or time.monotonic() >= ends)

        def wait(state: tenacity.RetryCallState) -> float:
            delay = min(self.max_delay, 0.5 * 2 ** (strikes(state) - 1))
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, self.max_delay))
            return max(0.0, min(delay, ends - time.monotonic()))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception()
            wait_s = state.next_action.sleep if state.next_action else 0
            self.reporter.event(
                f"{label}: {exc.reason}; retry {strikes(state)} of {self.retries} in {wait_s:.1f}s"
            )

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=stop,
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )

    # -- small files ---------------------------------------------------------------

    def get_bytes(self, url: str, what: str, *, missing_ok: bool = False, limit: int = 1 << 20) -> bytes | None:
        """A small file (version.txt, a signature, DIGESTS, stream metadata); None if missing and missing_ok."""
        try:
            ends = time.monotonic() + self.small_deadline
            too_slow = lambda: (f"{what} {redact(url)} did not arrive within {self.small_deadline:g}s;"  # noqa: E731
                                f" the server is too slow")
            for attempt in self._retrying(f"fetching {what}", deadline=self.small_deadline):
                with attempt, _within(ends, what, too_slow):
                    return self._get_small(url, what, missing_ok, limit, ends)
        except _Transient as exc:
            raise DownloadError(f"cannot fetch {what} {redact(url)}: {exc.reason} (tried {self.retries + 1} times)") from None
        raise AssertionError("unreachable")

    def status(self, url: str) -> int:
        """The HTTP status of a HEAD request: does a file exist, without fetching it."""
        try:
            ends = time.monotonic() + self.small_deadline
            for attempt in self._retrying("checking the release", deadline=self.small_deadline):
                with attempt, _within(ends, "checking the release",
                                      lambda: f"{redact(url)} did not answer within {self.small_deadline:g}s"):
                    try:
                        resp = self.session.head(url, timeout=self.timeout, allow_redirects=True)
                    except _URL_ERRORS as exc:
                        raise _bad_url(url, "the release", exc) from None
                    except _NETWORK_ERRORS as exc:
                        raise _Transient(reason(exc)) from None
                    if resp.status_code in RETRY_STATUSES:
                        raise _Transient(f"HTTP {resp.status_code}", _retry_after(resp))
                    return resp.status_code
        except _Transient as exc:
            raise DownloadError(f"cannot reach {redact(url)}: {exc.reason} (tried {self.retries + 1} times)") from None
        raise AssertionError("unreachable")

    def _get_small(self, url: str, what: str, missing_ok: bool, limit: int, ends: float) -> bytes | None:
        try:
            resp = self.session.get(url, stream=True, timeout=self.timeout)
        except _URL_ERRORS as exc:
            raise _bad_url(url, what, exc) from None
        except _NETWORK_ERRORS as exc:
            raise _Transient(reason(exc)) from None
        with resp:
            if resp.status_code in RETRY_STATUSES:
                raise _Transient(f"HTTP {resp.status_code}", _retry_after(resp))
            if resp.status_code in (404, 410) and missing_ok:
                return None
            if resp.status_code != 200:
                raise DownloadError(f"cannot fetch {what} {redact(url)}: HTTP {resp.status_code}")
            data = b""
            try:
                # In pieces, with the clock checked between them: a byte a minute never trips the read timeout.
                while len(data) <= limit and (piece := resp.raw.read(min(64 << 10, limit + 1 - len(data)),
                                                                     decode_content=False)):
                    data += piece
                    if time.monotonic() > ends:
                        raise DownloadError(
                            f"{what} {redact(url)} did not arrive within {self.small_deadline:g}s; the server is too slow"
                        )
            except _NETWORK_ERRORS as exc:
                raise _Transient(reason(exc)) from None
        if len(data) > limit:
            raise DownloadError(f"{what} {redact(url)} is larger than {limit} bytes; that is not a {what}")
        return data

    # -- images --------------------------------------------------------------------

    def download(self, url: str, dest: Path, start: Callable[[], Check], label: str) -> tuple[int, Check]:
        """Stream url into dest through a Check made by start(); resume after drops. Returns (size, check).

        On failure the current check is aborted; deleting dest is the caller's job.
        """
        with CacheFile(dest) as out:
            transfer = _Transfer(self, url, out, start, label)
            started = time.monotonic()
            try:
                too_slow = lambda: (f"cannot download {redact(url)}: not done after {self.deadline:g}s;"  # noqa: E731
                                    " the server is too slow")
                for attempt in self._retrying(label, lambda: transfer.progress_attempt):
                    with attempt, _within(transfer.ends, label, too_slow):
                        transfer.attempt(attempt.retry_state.attempt_number)
            except _Transient as exc:
                transfer.check.abort()
                if time.monotonic() - started >= self.deadline:
                    why = f"not done after {self.deadline:g}s; the server is too slow"
                elif transfer.attempts >= ATTEMPTS_PER_RETRY * (self.retries + 1):
                    why = f"gave up after {transfer.attempts} requests"
                else:
                    why = f"gave up after {self.retries} retries without progress; see --retries"
                raise DownloadError(f"cannot download {redact(url)}: {exc.reason} ({why})") from None
            except BaseException:
                transfer.check.abort()
                raise
        return transfer.done, transfer.check


class _Transfer:
    """The state one download carries across its attempts: bytes so far, the Check that saw them."""

    def __init__(self, http: Http, url: str, out: CacheFile, start: Callable[[], Check], label: str):
        self.http = http
        self.url = url
        self.out = out
        self.start = start
        self.label = label
        self.check = start()
        self.done = 0
        self.total: int | None = None
        self.validator: str | None = None  # strong ETag or Last-Modified, for If-Range
        self.progress_attempt = 0
        self.ends = time.monotonic() + http.deadline
        self.furthest = 0  # the most bytes any attempt got to: only going past it counts as progress
        self.attempts = 0

    def _restart(self) -> None:
        self.check.abort()
        self.check = self.start()
        self.out.restart()
        self.done = 0

    def attempt(self, number: int) -> None:
        self.attempts = number
        headers = {}
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
            if self.validator:
                # The file changed since the first response? Then the server sends all of it (200).
                headers["If-Range"] = self.validator
        try:
            resp = self.http.session.get(self.url, headers=headers, stream=True, timeout=self.http.timeout)
        except _URL_ERRORS as exc:
            raise _bad_url(self.url, "the image", exc) from None
        except _NETWORK_ERRORS as exc:
            raise _Transient(reason(exc)) from None
        with resp:
            status = resp.status_code
            if status in RETRY_STATUSES:
                raise _Transient(f"HTTP {status}", _retry_after(resp))
            if status == 206 and self.done:
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != self.done:
                    self.http.reporter.event(f"{self.label}: the server resumed at the wrong offset; starting over")
                    self._restart()
                    raise _Transient("bad Content-Range")
            elif status == 200:
                if self.done:
                    self.http.reporter.event(f"{self.label}: the server sent the whole file again; starting over")
                    self._restart()
                length = resp.headers.get("Content-Length")
                self.total = int(length) if length and length.isdigit() else None
                if self.total is not None and self.total > self.http.max_size:
                    raise DownloadError(self._too_large(f"announces {self.total} bytes"))
                etag = resp.headers.get("ETag")
                self.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
            elif status == 416 and self.done:
                self.http.reporter.event(f"{self.label}: the server refused to resume; starting over")
                self._restart()
                raise _Transient("HTTP 416")
            else:
                hint = "; check --version, --channel and --base-url" if status == 404 else ""
                raise DownloadError(f"cannot download {redact(self.url)}: HTTP {status}{hint}")
            if self.done:
                self.http.reporter.event(f"{self.label}: resuming at {self.done / 1048576:.1f} MiB")
            try:
                self._copy(resp)
            finally:
                if self.done > self.furthest:
                    self.furthest = self.done
                    self.progress_attempt = number - 1

    def _copy(self, resp: requests.Response) -> None:
        total = self.total
        while True:
            try:
                chunk = resp.raw.read(CHUNK, decode_content=False)
            except _NETWORK_ERRORS as exc:
                raise _Transient(f"{reason(exc)} after {self.done / 1048576:.1f} MiB") from None
            if not chunk:
                break
            try:
                self.out.write(chunk)
            except OSError as exc:
                raise DownloadError(f"cannot write {self.out.name}: {exc.strerror}") from None
            self.check.update(chunk)
            self.done += len(chunk)
            if self.done > self.http.max_size:
                raise DownloadError(self._too_large(f"sent more than {self.http.max_size} bytes"))
            if time.monotonic() > self.ends:
                raise DownloadError(
                    f"cannot download {redact(self.url)}: not done after {self.http.deadline:g}s; the server is too slow"
                )
            self.http.reporter.transfer(self.label, self.done, total or self.done)
        if total is not None and self.done < total:
            raise _Transient(f"connection closed after {self.done} of {total} bytes")
        if total is not None and self.done > total:
            raise DownloadError(f"{redact(self.url)} sent more bytes than it announced; refusing it")

    def _too_large(self, what: str) -> str:
        return (f"{redact(self.url)} {what}, more than an OS image ({self.http.max_size >> 30} GiB);"
                " refusing it (check --ova and --base-url)")
