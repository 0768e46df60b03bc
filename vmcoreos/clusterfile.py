"""The cluster file (YAML) checked against its model and turned into ClusterSettings.

Every problem is found in one pass and reported with its line, like a
compiler's `cluster.yaml:12: node.memory_mb: must be at least 256`: unknown
keys (with "did you mean"), duplicate keys (PyYAML would silently keep the
last), wrong types, bad values. The shape lives in vmcoreos.clusterfile_model;
govc's GOVC_* inventory variables fill vsphere.* keys the file leaves out.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vmcoreos.clusterfile_model import ClusterFile, KeyProblem, parse_addresses, resolve
from vmcoreos.errors import ConfigError
from vmcoreos.guest.validate import Located, dotted, locate, yaml_error_finding
from vmcoreos.settings import (
    ClusterSettings, EtcdSettings, ImageSettings, NetworkSettings, NodeSettings, VSphereTarget, trusted_key,
    with_govc_defaults,
)

__all__ = ["load_cluster_file", "parse_cluster", "parse_addresses"]

T = TypeVar("T")


def load_cluster_file(path: Path, environ: Mapping[str, str] | None = None) -> ClusterSettings:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"cluster file {path} does not exist; pass -c with the path of your cluster file") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"cannot read cluster file {path}: {why}; pass -c with the path of your cluster file") from None
    try:
        located = locate(text)
        if located.root is None:
            raise ConfigError(f"cluster file {path} is empty; start from the example `vmcoreos init` writes")
        if not isinstance(located.root, yaml.MappingNode):
            raise ConfigError(f"{path}: the cluster file must be a YAML mapping; start from the example `vmcoreos init` writes")
        # Built from the composed nodes, so the lines and the values come from one parse.
        data = yaml.SafeLoader("").construct_document(located.root)
    except yaml.YAMLError as exc:  # syntax, or a construct such as a list used as a key
        finding = yaml_error_finding(exc)
        raise ConfigError(f"{path}:{finding.line}: {finding.message}; fix the YAML syntax") from None
    return parse_cluster(data, base_dir=path.parent, source=path, located=located, environ=environ)


def parse_cluster(
    data: dict,
    *,
    base_dir: Path,
    source: Path | None = None,
    located: Located | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings from the cluster file's data; `located` (its composed YAML) adds lines and duplicate keys."""
    findings = _duplicate_keys(located.root, ()) if located is not None else []
    model = None
    try:
        model = ClusterFile.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        findings += [(_line(located, _path(e)), _path(e), _message(e)) for e in exc.errors()]
    if findings:
        shown = [_finding(source, line, dotted(path), message) for line, path, message in sorted(findings)]
        if len(shown) == 1:
            raise ConfigError(shown[0])
        where = f"cluster file {source}" if source else "the cluster file"
        raise ConfigError(f"{where} has {len(shown)} problems; fix them and run again", findings=shown)
    return _settings(model, base_dir, source, environ)


# -- findings ---------------------------------------------------------------------

_KINDS = {
    "int_type": "a whole number", "float_type": "a number", "string_type": "a string", "bool_type": "true or false",
    "list_type": "a list",
}


def _path(error: dict) -> tuple:
    path = tuple(error["loc"])
    problem = (error.get("ctx") or {}).get("error")
    return path + (problem.key,) if isinstance(problem, KeyProblem) else path


def _num(x) -> str:
    # Whole numbers as written (25165824, not 2.51658e+07); others briefly.
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _message(error: dict) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, not {_shown(value)}"
    if kind in ("model_type", "dict_type"):
        return "must be a mapping of keys; see the example `vmcoreos init` writes for the layout"
    if kind == "extra_forbidden":
        return _unknown_key(tuple(error["loc"]))
    if kind == "missing":
        if tuple(error["loc"]) == ("cluster",):
            return "missing; add 'cluster: <name>' (node VMs are named <name>-01, <name>-02, …)"
        return "missing"
    if kind == "greater_than_equal":
        return f"must be at least {_num(ctx['ge'])}"
    if kind == "less_than_equal":
        return f"must be at most {_num(ctx['le'])}"
    if kind == "greater_than":
        return f"must be more than {_num(ctx['gt'])}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, not {_shown(value)}"
    if kind == "value_error":
        return str(ctx["error"])
    return error["msg"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown_key(path: tuple) -> str:
    known = sorted(_model_at(path[:-1]).model_fields)
    close = difflib.get_close_matches(str(path[-1]), known, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key; known keys here: {', '.join(known)}"


def _model_at(path: tuple) -> type[BaseModel]:
    model: type[BaseModel] = ClusterFile
    for part in path:
        model = model.model_fields[part].annotation
    return model


def _duplicate_keys(node: yaml.Node, path: tuple) -> list[tuple[int, tuple, str]]:
    """(line, path, message) of each repeated key: PyYAML keeps the last silently, and Located the first."""
    out = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if name in first:
                out.append((line, path + (name,), f"duplicate key (first at line {first[name]}); keep one"))
                continue
            first[name] = line
            out += _duplicate_keys(value, path + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, path + (i,))
    return out


def _line(located: Located | None, path: tuple) -> int:
    if located is None:
        return 0
    while path and not located.line(path):
        path = path[:-1]  # a missing key: the line of the section that lacks it
    return located.line(path) if path else 0


def _finding(source: Path | None, line: int, where: str, message: str) -> str:
    prefix = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
    # A message that already starts with its key's path ("etcd.ca_file is set but …") needs it only once.
    return f"{prefix}{where}: {message}" if where and not message.startswith(where) else f"{prefix}{message}"


# -- settings ---------------------------------------------------------------------


def _settings(model: ClusterFile, base_dir: Path, source: Path | None, environ: Mapping[str, str] | None) -> ClusterSettings:
    """The typed settings: a key the model and the settings name alike carries over as it is (`_typed`);
    only what the parser resolves (paths, addresses, keys, GOVC_* defaults) is spelled out here."""
    vs, im, nd, et, wait = model.vsphere, model.image, model.node, model.etcd, model.wait
    if nd.linked_clone and vs.datastores and len(vs.datastores) > 1:
        raise ConfigError(
            "node.linked_clone: true keeps every member's base disk on the template's datastore, so spreading"
            " members over vsphere.datastores would not keep them apart; use full clones or name one datastore"
        )
    net = nd.network
    network = _typed(
        NetworkSettings, net,
        addresses=tuple(a for item in net.addresses for a in parse_addresses(item)),
        gateway=ipaddress.IPv4Address(net.gateway) if net.gateway else None,
        dns=tuple(ipaddress.IPv4Address(d) for d in net.dns),
    )
    return _typed(
        ClusterSettings, wait,
        name=model.cluster, count=model.count, wait_timeout=wait.timeout, source=source,
        vsphere=with_govc_defaults(_typed(VSphereTarget, vs, datastores=tuple(vs.datastores) if vs.datastores else None),
                                   environ),
        image=_typed(
            ImageSettings, im,
            ova=_resolve_source(base_dir, im.ova), sig=_resolve_source(base_dir, im.sig),
            trusted_keys=tuple(trusted_key(k, im.distro, base_dir) for k in im.trusted_keys),
        ),
        node=_typed(NodeSettings, nd, config=resolve(base_dir, nd.config) if nd.config else None, network=network),
        etcd=_typed(
            EtcdSettings, et,
            scheme=et.scheme or ("https" if et.ca_file else "http"),
            ca_file=resolve(base_dir, et.ca_file) if et.ca_file else None,
        ),
    )


def _typed(cls: type[T], section: BaseModel, **resolved: Any) -> T:
    """A settings dataclass from a model section: the fields both name carry over unchanged, `resolved` gives
    the rest. (tests/test_clusterfile.py checks that every key of the model lands in a settings field.)"""
    same = {f.name for f in dataclasses.fields(cls) if f.init} & set(type(section).model_fields) - set(resolved)
    return cls(**{name: getattr(section, name) for name in same}, **resolved)


def _resolve_source(base: Path, value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    return str(resolve(base, value))
