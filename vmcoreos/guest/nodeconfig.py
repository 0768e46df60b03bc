"""Per-node configs: the user's one config plus what makes each node itself.

Planning is pure: it needs the cluster settings and the user's config file,
never vSphere, so `render` and validation run offline and before any change.
Both steps check what they can and raise one ConfigError listing every
problem with its line (validate.py says which findings are errors):

* load_user_config: the file itself (YAML/JSON, coreos-cloudinit's rules,
  Ignition spec versions) and what the cluster file decides about it (DHCP
  and `$private_ipv4`, the etcd ports, the distro);
* compose.node_configs: each node's merged config (addresses in etcd URLs, the 64 KiB
  limit), in vmcoreos.guest.compose; the config values in vmcoreos.guest.configvalues.
"""

from __future__ import annotations

import re
from pathlib import Path

from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, ignition, validate
from vmcoreos.guest.configvalues import CLOUD_CONFIG, IGNITION, UserConfig
from vmcoreos.guest.findings import raise_if_errors, settings_findings
from vmcoreos.settings import ClusterSettings

_DEFAULT_CONFIG = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
"""


def detect(text: str) -> str:
    """The config kind, decided from the content as the guest does (coreos-cloudinit user_data.go)."""
    if text.split("\n", 1)[0].rstrip() == validate.HEADER:
        return CLOUD_CONFIG
    if ignition.is_ignition(text) or ignition.looks_like_json(text):
        return IGNITION
    if text.startswith("#!"):
        return "script"
    return CLOUD_CONFIG  # checked as one, so the missing header is reported with everything else


def load_user_config(settings: ClusterSettings) -> UserConfig:
    path: Path | None = settings.node.config
    if path is None:
        text, source = _DEFAULT_CONFIG, "(built-in config)"
    else:
        try:
            text, source = path.read_text(), str(path)
        except FileNotFoundError:
            raise ConfigError(f"node config {path} does not exist; fix node.config in the cluster file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read node config {path}: {exc}") from None
    kind = detect(text)
    if kind == "script":
        raise ConfigError(
            f"node config {source} is a script (#!); vmcoreos adds each node's hostname and etcd membership to a"
            ' cloud-config ("#cloud-config" on the first line) or an Ignition config, so use one of those'
        )
    located = None
    if kind == IGNITION:
        findings, doc = ignition.check(text, settings.image.distro, settings.image.version)
    else:
        findings, located = validate.check_cloud_config(text)
        doc = cloudconfig.load(text) if located is not None else None
    # Without a document (syntax errors) nothing more can be checked; otherwise report everything at once.
    if doc is not None:
        findings += settings_findings(settings, kind, text, doc, located, source)
    findings = sorted(set(findings), key=lambda f: (f.line, f.level, f.message))
    warned = tuple((f"line {f.line}: " if f.line else "") + f.message for f in validate.warnings(findings))
    if carries_private_key(text):
        warned += (PRIVATE_KEY_WARNING,)
    user = UserConfig(text, source, doc or {}, kind, warned, located)
    raise_if_errors(source, findings)
    return user


PRIVATE_KEY_WARNING = (
    "carries private key material; node configs go into guestinfo, which every vCenter user who can read the"
    " VM's configuration (and anyone who can browse its datastore) can read; fetch keys at boot instead"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PuTTY-User-Key-File-")
_BASE64_DATA_URL = re.compile(r"data:[^,\s\"]*;base64,([A-Za-z0-9+/=]+)")


def carries_private_key(text: str) -> bool:
    """A PEM or OpenSSH/PuTTY private key anywhere in the config, also inside Ignition data: URLs."""
    import base64
    import binascii
    from urllib.parse import unquote

    candidates = [text, unquote(text)]
    for match in _BASE64_DATA_URL.finditer(text):
        try:
            candidates.append(base64.b64decode(match.group(1)).decode(errors="replace"))
        except (binascii.Error, ValueError):
            continue
    return any(_PRIVATE_KEY.search(c) for c in candidates)
