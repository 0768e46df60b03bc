"""Masking the secrets a node config may carry before it is shown.

Configs hold TLS keys in write_files / storage.files and password hashes in
users; `vmcoreos render` shows them only for the node named with --node.
"""

from __future__ import annotations

import json

import yaml

from vmcoreos.guest import cloudconfig, ignition
from vmcoreos.guest.configvalues import IGNITION, NodeConfig


def _mask(value, hint: str) -> str:
    size = len(value.encode()) if isinstance(value, str) else len(str(value))
    return f"<redacted: {size} bytes, {hint}>"


def redacted(config: NodeConfig, hint: str) -> tuple[str, int]:
    """The node's config text with secret values replaced, and how many were."""
    if config.kind == IGNITION:
        doc = json.loads(config.config_text)
        n = _ignition(doc, hint)
        return (ignition.render(doc) if n else config.config_text), n
    doc = yaml.safe_load(config.config_text) or {}
    n = _cloud_config(doc, hint)
    return (cloudconfig.render(doc) if n else config.config_text), n


def _cloud_config(doc: dict, hint: str) -> int:
    n = 0
    for f in doc.get("write_files") or []:
        if isinstance(f, dict) and f.get("content"):
            f["content"] = _mask(f["content"], hint)
            n += 1
    for u in doc.get("users") or []:
        if isinstance(u, dict) and u.get("passwd"):
            u["passwd"] = _mask(u["passwd"], hint)
            n += 1
    coreos = doc.get("coreos") if isinstance(doc.get("coreos"), dict) else {}
    for section in coreos.values():
        if isinstance(section, dict) and section.get("etcd_password"):
            section["etcd_password"] = _mask(section["etcd_password"], hint)
            n += 1
    return n


def _ignition(doc: dict, hint: str) -> int:
    n = 0
    storage = doc.get("storage") if isinstance(doc.get("storage"), dict) else {}
    for f in storage.get("files") or []:
        contents = f.get("contents") if isinstance(f, dict) else None
        if isinstance(contents, dict) and contents.get("source") and f.get("path") not in ignition.OWN_PATHS:
            contents["source"] = _mask(contents["source"], hint)
            n += 1
    passwd = doc.get("passwd") if isinstance(doc.get("passwd"), dict) else {}
    for entry in (passwd.get("users") or []) + (passwd.get("groups") or []):
        if isinstance(entry, dict) and entry.get("passwordHash"):
            entry["passwordHash"] = _mask(entry["passwordHash"], hint)
            n += 1
    return n
