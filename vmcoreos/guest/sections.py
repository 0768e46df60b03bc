"""A short digest per section of a rendered node config: which part of a config changed, not only that it did.

Sections are the top-level keys, one level down under `coreos` (cloud-config)
or `storage`, `passwd`, `systemd` (Ignition), and the other guestinfo keys
(hostname, network) as one. Pure and small: the planner compares them with
the mark a node was created with (vsphere/vminfo.py MARK_SECTIONS).
"""

from __future__ import annotations

import hashlib
import json

from vmcoreos.guest import guestinfo
from vmcoreos.guest.configvalues import IGNITION

_NESTED = ("coreos", "storage", "passwd", "systemd")


def config_sections(text: str, keys: dict[str, str], kind: str) -> tuple[tuple[str, str], ...]:
    doc = _parse(text, kind)
    out: dict[str, str] = {}
    if doc is None:
        out["config"] = _short(text)
    else:
        for key, value in doc.items():
            if isinstance(value, dict) and key in _NESTED:
                for sub, inner in value.items():
                    out[f"{key}.{sub}"] = _short(inner)
            else:
                out[str(key)] = _short(value)
    data_key = next((k for k in guestinfo.DATA_KEYS if k in keys), None)
    skip = (data_key, guestinfo.encoding_key(data_key)) if data_key else ()
    rest = {k: v for k, v in keys.items() if k not in skip}
    if rest:
        out["guestinfo"] = _short(rest)
    return tuple(sorted(out.items()))


def sections_mark(sections: tuple[tuple[str, str], ...]) -> str:
    """The mark's value: "name=digest;name=digest" (short enough for an extraConfig value)."""
    return ";".join(f"{k}={v}" for k, v in sections)


def changed_sections(mark: str | None, now: tuple[tuple[str, str], ...]) -> list[str]:
    """The sections whose digest differs from the mark's, added and dropped ones too; [] without a mark."""
    if not mark:
        return []
    before = dict(part.split("=", 1) for part in mark.split(";") if "=" in part)
    current = dict(now)
    return sorted(k for k in set(before) | set(current) if before.get(k) != current.get(k))


def _parse(text: str, kind: str):
    try:
        if kind == IGNITION:
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception:  # a config that does not parse here is compared whole
        return None
    return doc if isinstance(doc, dict) else None


def _short(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]
