"""The vCenter connection: flags first, then VMCOREOS_*, then GOVC_*; TLS trust decided once."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vmcoreos.errors import ConfigError
from vmcoreos.environment import ENV_CA_FILE, ENV_INSECURE, ENV_PASSWORD, ENV_THUMBPRINT, ENV_URL, ENV_USERNAME
from vmcoreos.environment import lookup as _env_named, value as _env


class Secret(str):
    """A string that never shows itself in repr, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class Connection:
    url: str
    host: str
    port: int
    username: str
    password: Secret = field(repr=False)
    insecure: bool = False
    ca_file: Path | None = None
    thumbprint: str | None = None
    # One-line notices for the CLI to show (an inherited --insecure that a pin overrode).
    notices: tuple[str, ...] = ()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _service_credential(st: os.stat_result) -> bool:
    """root:GROUP 0640 where GROUP is this process's: the service user may read it, not change it, and no one else
    may read it (docs/operations.md, "A first run as the service user")."""
    mode = stat.S_IMODE(st.st_mode)
    return st.st_uid == 0 and mode & 0o077 == 0o040 and st.st_gid in {os.getegid(), *os.getgroups()}


def read_password_file(path: Path, flag: str = "--password-file") -> str:
    """The password in path: a private, non-empty UTF-8 file; anything else is the user's to fix (exit 2)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path} does not exist; give the file that holds the vCenter password") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{flag} {path} is not a file; give the file that holds the vCenter password")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and not _service_credential(st):
        raise ConfigError(f"{flag} {path} is readable by others; run: chmod 600 {path} (or, for a service user,"
                          f" chown root:GROUP {path} and chmod 640)")
    try:
        password = path.read_bytes().decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path} is not UTF-8 text; write the password into it as UTF-8") from None
    if not password:
        raise ConfigError(f"{flag} {path} is empty; write the vCenter password into it")
    return password


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without user:password@, user, password), split before any URL parser sees it: a password
    may hold '/', '#', '?' or a space, which a parser takes for the end of the host, so its text would end
    up in the host, the port or the path, and from there in a message."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url, None, None
    userinfo, _, host = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{host}", unquote(user) or None, unquote(password) if colon else None


def connection_from(
    *,
    url: str | None,
    username: str | None = None,
    password_file: Path | None = None,
    insecure: bool | None = None,
    ca_file: Path | None = None,
    thumbprint: str | None = None,
    environ: dict | None = None,
) -> Connection:
    """Flags first, then VMCOREOS_*, then GOVC_*; a URL may carry user:password as govc's does."""
    env = environ  # None: the process's (vmcoreos.environment reads it)
    if url and _split_credentials(url if "://" in url else "https://" + url)[2] is not None:
        # A flag's value is on the process list for every user of the machine to read.
        raise ConfigError(
            "--url carries a password, which would show in the process list; put it in VMCOREOS_PASSWORD"
            " or --password-file instead"
        )
    url = url or _env(ENV_URL, env)
    if not url:
        raise ConfigError("no vCenter given; pass --url or set VMCOREOS_URL (or GOVC_URL)")
    if "://" not in url:
        url = "https://" + url
    url, url_user, url_password = _split_credentials(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises here, with the URL's text)
    except ValueError:
        raise ConfigError(f"vCenter URL {url!r} has a port that is not a number; e.g. https://vcenter.example.com:443/sdk"
                          ) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"vCenter URL {parts.hostname or url!r} is not an https:// URL; e.g. https://vcenter.example.com/sdk")
    user = username or url_user or _env(ENV_USERNAME, env)
    if password_file is not None:
        password = read_password_file(password_file)
    else:
        password = url_password or _env(ENV_PASSWORD, env)
    if not user or password is None:
        raise ConfigError(
            "no vCenter credentials; set VMCOREOS_USERNAME and VMCOREOS_PASSWORD (or use --password-file)"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/sdk"
    # An IPv6 literal keeps its brackets in every URL built from it.
    netloc = f"[{parts.hostname}]:{port}" if ":" in parts.hostname else f"{parts.hostname}:{port}"
    clean = f"{parts.scheme}://{netloc}{path}"
    ca = ca_file or (Path(v) if (v := _env(ENV_CA_FILE, env)) else None)
    if ca is not None and not ca.is_file():
        where = "--ca-file" if ca_file else " or ".join(ENV_CA_FILE)
        problem = "is not a file" if ca.exists() else "does not exist"
        raise ConfigError(f"CA file {ca} ({where}) {problem}; give the PEM of your vCenter's CA")
    pin, skip, notices = _tls_trust(insecure, thumbprint, env)
    return Connection(
        url=clean,
        host=parts.hostname,
        port=port,
        username=user,
        password=Secret(password),
        insecure=skip,
        ca_file=ca,
        thumbprint=pin,
        notices=notices,
    )


def _tls_trust(insecure: bool | None, thumbprint: str | None, env) -> tuple[str | None, bool, tuple[str, ...]]:
    """(thumbprint, insecure, notices): a pinned thumbprint always wins over skipping verification.

    Both on one command line contradict each other and are refused; an insecure
    setting from the environment (a govc user's GOVC_INSECURE=1) or a pin from
    it yields to the pin, with a notice, so a pin is never silently dropped.
    """
    if insecure and thumbprint:
        raise ConfigError(
            "--insecure and --thumbprint contradict each other (one skips the certificate check, the other pins it);"
            " drop --insecure to keep the pin"
        )
    pin_from, pin = ("--thumbprint", thumbprint) if thumbprint else _env_named(ENV_THUMBPRINT, env)
    if insecure is not None:
        skip_from, skip = "--insecure", insecure
    else:
        skip_from, value = _env_named(ENV_INSECURE, env)
        skip = _truthy(value)
        skip_from = f"{skip_from}={value}"
    if pin and skip:
        return pin, False, (f"ignoring {skip_from}: {pin_from} pins vCenter's certificate, and the pin is checked",)
    return pin, skip, ()
