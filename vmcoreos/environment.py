"""Every environment variable vmcoreos reads: its names, meaning, default and parser, in one table.

No other module of the package reads os.environ for a setting: each asks here (`value`, `lookup` or
one of the typed readers below), so this file is the whole list, and docs/configuration.md's table
is generated from VARIABLES (`make docs`; tests/test_docs.py fails when it is stale). Ours come
first, then govc's, so govc users need nothing new; flags win over both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from vmcoreos.errors import ConfigError

# The vCenter connection: the first name set wins (read by vmcoreos.connection).
ENV_URL = ("VMCOREOS_URL", "GOVC_URL")
ENV_USERNAME = ("VMCOREOS_USERNAME", "GOVC_USERNAME")
ENV_PASSWORD = ("VMCOREOS_PASSWORD", "GOVC_PASSWORD")
ENV_INSECURE = ("VMCOREOS_INSECURE", "GOVC_INSECURE")
ENV_CA_FILE = ("VMCOREOS_CA_FILE", "GOVC_TLS_CA_CERTS")
ENV_THUMBPRINT = ("VMCOREOS_THUMBPRINT",)
ENV_CONFIG = "VMCOREOS_CONFIG"  # the cluster file (or a directory holding cluster.yaml) when -c is not given
ENV_CACHE_DIR = "VMCOREOS_CACHE_DIR"
ENV_LOCK_DIR = "VMCOREOS_LOCK_DIR"
ENV_GPGV = "VMCOREOS_GPGV"  # absolute path of gpgv, when it is not in /usr/bin
ENV_SQV = "VMCOREOS_SQV"  # absolute path of sqv, when it is not in /usr/bin; "off": gpgv checks every signature
ENV_RETRY_MAX_DELAY = "VMCOREOS_RETRY_MAX_DELAY"  # seconds; the cap of the doubling delay between download retries
ENV_API_TIMEOUT = "VMCOREOS_API_TIMEOUT"  # every SOAP call's socket timeout; long polls ask for less
ENV_DEBUG = "VMCOREOS_DEBUG"  # set: an unexpected error shows its traceback
# The test suite's own (read by tests/, listed here so the one table has them).
ENV_TEST_SUBNET_BASE = "VMCOREOS_TEST_SUBNET_BASE"
ENV_TEST_PROFILE = "VMCOREOS_TEST_PROFILE"
# govc's inventory defaults, read for vsphere.* keys the cluster file leaves out (the file wins). No VMCOREOS_*
# twins: the cluster file is our place for a cluster's placement; these only spare govc users retyping it.
ENV_DATACENTER = "GOVC_DATACENTER"
ENV_DATASTORE = "GOVC_DATASTORE"
ENV_NETWORK = "GOVC_NETWORK"
ENV_RESOURCE_POOL = "GOVC_RESOURCE_POOL"  # fills vsphere.cluster: we place VMs in a compute cluster's root pool
ENV_FOLDER = "GOVC_FOLDER"

DEFAULT_API_TIMEOUT = 90.0


@dataclass(frozen=True)
class Variable:
    """One row of the table: the names (first set wins), what it means, its default, who parses it."""

    names: tuple[str, ...]
    meaning: str
    default: str
    parser: str  # where its text becomes a value (shown to readers of this module, not in the docs)


VARIABLES: tuple[Variable, ...] = (
    Variable((ENV_CONFIG,), "the cluster file (or a directory holding `cluster.yaml`) when `-c` is not given",
             "`./cluster.yaml`", "cli/common.cluster_file (typer reads it as --config's envvar)"),
    Variable(ENV_URL, "vCenter URL; `https://` and `/sdk` are added when missing; it may carry `user@`, never a"
             " password on the command line", "none: required by commands that talk to vCenter",
             "connection.connection_from"),
    Variable(ENV_USERNAME, "vCenter user", "none", "connection.connection_from"),
    Variable(ENV_PASSWORD, "vCenter password; `--password-file` (mode 600, or root:GROUP 640 for a service user) is"
             " safer for cron and systemd", "none",
             "connection.connection_from"),
    Variable(ENV_INSECURE, "`1`/`true`/`yes`/`on` skips TLS verification of vCenter (labs only); a thumbprint pin"
             " wins over it", "off", "connection._tls_trust"),
    Variable(ENV_CA_FILE, "PEM CA bundle that signed vCenter's certificate", "the system's CAs",
             "connection.connection_from"),
    Variable(ENV_THUMBPRINT, "pins vCenter's certificate by SHA-1 or SHA-256 thumbprint (`vmcoreos thumbprint URL`"
             " prints both)", "none", "connection._tls_trust"),
    Variable((ENV_CACHE_DIR,), "image cache, plus `state/`, the record of templates this host imported",
             "the user cache dir, e.g. `~/.cache/vmcoreos`", "environment.cache_dir"),
    Variable((ENV_LOCK_DIR,), "host lock files (one per cluster)", "the user state dir + `/locks`",
             "environment.lock_dir"),
    Variable((ENV_GPGV,), "absolute path of gpgv", "first of `/usr/bin/gpgv`, `/bin/gpgv`, `/usr/local/bin/gpgv`",
             "images/verifiers.gpgv_binary"),
    Variable((ENV_SQV,), "absolute path of sqv, or `off` to have gpgv check every signature",
             "first of `/usr/bin/sqv`, `/bin/sqv`, `/usr/local/bin/sqv`; none: gpgv", "images/verifiers.sqv_binary"),
    Variable((ENV_RETRY_MAX_DELAY,), "cap, in seconds (0 to 3600), of the doubling delay between download retries",
             "30", "images/download.max_delay_from_env"),
    Variable((ENV_API_TIMEOUT,), "socket timeout, in seconds, for every vSphere SOAP call (long polls ask for a"
             " third of it)", f"{DEFAULT_API_TIMEOUT:g}", "environment.api_timeout"),
    Variable((ENV_DEBUG,), "any value: an unexpected error prints its traceback", "off", "environment.debug"),
    Variable((ENV_TEST_SUBNET_BASE, ENV_TEST_PROFILE), "tests only: the first 127.x block the simulated etcd members use"
             " (each xdist worker takes 20 more); the test bed's profile (`lenient` or `strict`)", "10; strict", "tests/conftest.py, tests/harness"),
    Variable((ENV_DATACENTER,), "`vsphere.datacenter` when the cluster file leaves it out", "the only datacenter",
             "settings.with_govc_defaults"),
    Variable((ENV_DATASTORE,), "`vsphere.datastore` when neither it nor `vsphere.datastores` is set in the cluster"
             " file (a name or `/DC/datastore/NAME`)",
             "the only datastore", "settings.with_govc_defaults"),
    Variable((ENV_NETWORK,), "`vsphere.network` when unset (a name or `/DC/network/NAME`)", "`VM Network`",
             "settings.with_govc_defaults"),
    Variable((ENV_RESOURCE_POOL,), "`vsphere.cluster` when unset: `CLUSTER`, `CLUSTER/Resources` or"
             " `/DC/host/CLUSTER/Resources`; child pools are refused", "the only compute cluster",
             "settings.with_govc_defaults"),
    Variable((ENV_FOLDER,), "`vsphere.folder` when unset (a path under the VM folder or `/DC/vm/PATH`)",
             "the datacenter's VM folder", "settings.with_govc_defaults"),
)


def lookup(names: str | tuple[str, ...], environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(name, value) of the first of `names` set to a non-empty value in `environ` (default: the process's)."""
    env = os.environ if environ is None else environ
    for name in (names,) if isinstance(names, str) else names:
        value = env.get(name)
        if value:
            return name, value
    return None, None


def value(names: str | tuple[str, ...], environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the first of `names` that is set, or None."""
    return lookup(names, environ)[1]


def cache_dir(given: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The image cache: --cache-dir, else $VMCOREOS_CACHE_DIR, else the user cache dir. Decided only here."""
    if given is not None:
        return Path(given)
    from platformdirs import user_cache_dir

    return Path(value(ENV_CACHE_DIR, environ) or user_cache_dir("vmcoreos"))


def lock_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where host lock files go: $VMCOREOS_LOCK_DIR, else the user state dir's locks/."""
    from platformdirs import user_state_dir

    return Path(value(ENV_LOCK_DIR, environ) or Path(user_state_dir("vmcoreos")) / "locks")


def api_timeout(environ: Mapping[str, str] | None = None) -> float:
    try:
        return float(value(ENV_API_TIMEOUT, environ) or DEFAULT_API_TIMEOUT)
    except ValueError:
        raise ConfigError(f"{ENV_API_TIMEOUT} must be a number of seconds") from None


def debug(environ: Mapping[str, str] | None = None) -> bool:
    return value(ENV_DEBUG, environ) is not None


def markdown_table() -> str:
    """docs/configuration.md's table of the variables (tools/gendocs.py writes it there)."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    rows += [f"| {', '.join(f'`{n}`' for n in v.names)} | {v.meaning} | {v.default} |" for v in VARIABLES]
    return "\n".join(rows) + "\n"
