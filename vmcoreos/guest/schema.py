"""coreos-cloudinit's cloud-config schema (its config/*.go structs and their `valid:`/`deprecated:` tags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    kind: str  # str int float bool map list
    fields: dict | None = None  # map: name -> Field
    item: Field | None = None  # list: element
    valid: str | None = None  # regex the value must match (the struct's `valid:` tag)
    deprecated: str | None = None
    secret: bool = False  # never quote, never show in render without --node

    @property
    def human(self) -> str:
        if self.kind == "list":
            return "a list of " + {"str": "strings", "map": "mappings"}.get(self.item.kind, "values")
        return {
            "str": "a string",
            "int": "a whole number",
            "float": "a number",
            "bool": "true or false",
            "map": "a mapping",
        }[self.kind]


S, I, F, B = Field("str"), Field("int"), Field("float"), Field("bool")
SECRET = Field("str", secret=True)


def _m(**fields: Field) -> Field:
    return Field("map", fields=fields)


def _l(item: Field, **kw) -> Field:
    return Field("list", item=item, **kw)


def _deprecated(f: Field, why: str) -> Field:
    return Field(f.kind, f.fields, f.item, f.valid, why, f.secret)


_ETCD2_GONE = "etcd2 options no longer work for etcd"
_FETCH = "trying to fetch from a remote endpoint introduces too many intermittent errors"

ETCD2 = _m(
    **{k: S for k in (
        "advertise_client_urls", "cert_file", "cors", "data_dir", "discovery", "discovery_fallback", "discovery_srv",
        "discovery_proxy", "initial_advertise_peer_urls", "initial_cluster", "initial_cluster_state",
        "initial_cluster_token", "key_file", "listen_client_urls", "listen_peer_urls", "log_package_levels", "name",
        "peer_cert_file", "peer_key_file", "peer_trusted_ca_file", "trusted_ca_file", "wal_dir",
    )},
    **{k: I for k in (
        "election_timeout", "heartbeat_interval", "max_snapshots", "max_wals", "proxy_dial_timeout",
        "proxy_failure_wait", "proxy_read_timeout", "proxy_refresh_interval", "proxy_write_timeout", "snapshot_count",
    )},
    **{k: B for k in (
        "client_cert_auth", "debug", "enable_pprof", "force_new_cluster", "peer_client_cert_auth",
        "strict_reconfig_check",
    )},
    ca_file=_deprecated(S, "ca_file obsoleted by trusted_ca_file and client_cert_auth"),
    peer_ca_file=_deprecated(S, "peer_ca_file obsoleted peer_trusted_ca_file and peer_client_cert_auth"),
    proxy=Field("str", valid=r"^(on|off|readonly)$"),
)

ETCD = _m(
    **{k: S for k in (
        "addr", "bind_addr", "ca_file", "cert_file", "cors", "data_dir", "discovery", "graphite_host", "key_file",
        "name", "peer_addr", "peer_bind_addr", "peer_ca_file", "peer_cert_file", "peer_key_file", "peers",
        "peers_file", "trace",
    )},
    **{k: I for k in (
        "cluster_active_size", "max_result_buffer", "max_retry_attempts", "peer_election_timeout",
        "peer_heartbeat_interval", "snapshot_count",
    )},
    **{k: F for k in (
        "cluster_remove_delay", "cluster_sync_interval", "http_read_timeout", "http_write_timeout", "retry_interval",
    )},
    **{k: B for k in ("snapshot", "verbose", "very_verbose", "very_very_verbose")},
    **{k: _deprecated(S, _ETCD2_GONE) for k in (
        "advertise_client_urls", "discovery_fallback", "discovery_srv", "discovery_proxy",
        "initial_advertise_peer_urls", "initial_cluster", "initial_cluster_state", "initial_cluster_token",
        "listen_client_urls", "listen_peer_urls", "proxy",
    )},
    **{k: _deprecated(I, _ETCD2_GONE) for k in ("election_timeout", "heartbeat_interval", "max_snapshots", "max_wals")},
    force_new_cluster=_deprecated(B, _ETCD2_GONE),
)

FLEET = _m(
    **{k: S for k in (
        "agent_ttl", "authorized_keys_file", "etcd_cafile", "etcd_certfile", "etcd_keyfile", "etcd_key_prefix",
        "etcd_servers", "etcd_username", "metadata", "public_ip",
    )},
    etcd_password=SECRET,
    disable_engine=B, verify_units=B, engine_reconcile_interval=F, etcd_request_timeout=F, token_limit=I,
    verbosity=I,
)

FLANNEL = _m(
    **{k: S for k in (
        "etcd_endpoints", "etcd_cafile", "etcd_certfile", "etcd_keyfile", "etcd_prefix", "etcd_username", "ip_masq",
        "subnet_file", "interface", "public_ip",
    )},
    etcd_password=SECRET,
)

LOCKSMITH = _m(
    **{k: S for k in ("endpoint", "etcd_cafile", "etcd_certfile", "etcd_keyfile", "etcd_username", "group")},
    etcd_password=SECRET,
    window_start=Field(
        "str", valid=r"^((?i:sun|mon|tue|wed|thu|fri|sat|sun) )?0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$"
    ),
    window_length=Field("str", valid=r"^[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+$"),
)

UNIT = _m(
    name=S, mask=B, enable=B, runtime=B, content=S,
    command=Field("str", valid=r"^(start|stop|restart|reload|try-restart|reload-or-restart|reload-or-try-restart)$"),
    drop_ins=_l(_m(name=S, content=S)),
)

COREOS = _m(
    etcd=_deprecated(ETCD, "etcd is no longer shipped in Container Linux"),
    etcd2=_deprecated(ETCD2, "etcd2 is no longer shipped in Container Linux"),
    flannel=FLANNEL,
    fleet=_deprecated(FLEET, "fleet is no longer shipped in Container Linux"),
    locksmith=LOCKSMITH,
    oem=_m(id=S, name=S, version_id=S, home_url=S, bug_report_url=S),
    update=_m(reboot_strategy=Field("str", valid=r"^(etcd-lock|reboot|off)$"), group=S, server=S),
    units=_l(UNIT),
)

USER = _m(
    name=S, passwd=SECRET, ssh_authorized_keys=_l(SECRET), gecos=S, homedir=S, no_create_home=B, primary_group=S,
    groups=_l(S), no_user_group=B, system=B, no_log_init=B, shell=S,
    coreos_ssh_import_github=_deprecated(S, _FETCH),
    coreos_ssh_import_github_users=_deprecated(_l(S), _FETCH),
    coreos_ssh_import_url=_deprecated(S, _FETCH),
)

FILE = _m(
    encoding=Field("str", valid=r"^(base64|b64|gz|gzip|gz\+base64|gzip\+base64|gz\+b64|gzip\+b64)$"),
    content=SECRET, owner=S, path=S,
    permissions=Field("str", valid=r"^0?[0-7]{3,4}$"),
)

CLOUD_CONFIG = _m(
    ssh_authorized_keys=_l(SECRET),
    coreos=COREOS,
    write_files=_l(FILE),
    hostname=S,
    users=_l(USER),
    # not a `valid:` tag upstream, but anything else fails at apply time ("Invalid option to manage_etc_hosts")
    manage_etc_hosts=Field("str", valid=r"^(localhost)$"),
)

# Keys vmcoreos sets for every node; a value written here never reaches a guest.
REPLACED = {
    ("hostname",): "the host name",
}
