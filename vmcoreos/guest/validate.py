"""Checking a node config before anything is touched: findings with line numbers.

The cloud-config rules are coreos-cloudinit's own `-validate` rules (its
config structs, `valid:` and `deprecated:` tags, and config/validate/rules.go),
run on the raw text before `$private_ipv4` substitution, as the guest's
validator does. Where the guest would silently drop or misread what the user
wrote, we make the finding an error rather than the validator's warning:
a wasted boot costs minutes, a refused run costs seconds.

  error   unknown keys, hyphenated keys (Flatcar ignores them), wrong types,
          invalid values, undecodable write_files, writes under /usr, YAML errors
  warning deprecated keys, values vmcoreos replaces per node

Messages name key paths and lines, never the values of secrets (file contents,
password hashes, keys): only values of fields with a fixed set of valid
values are quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from vmcoreos.guest import encoding
from vmcoreos.guest.schema import CLOUD_CONFIG, REPLACED, Field

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, order=True)
class Finding:
    line: int  # 1-based; 0 when no line applies
    level: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.level}: {self.message}"


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == ERROR]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == WARNING]


# The schema is in schema.py.


# -- walking the YAML with line numbers ----------------------------------------


Path = tuple  # of str keys and int list indexes


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Located:
    """The composed YAML: each value's node (with its line) by path."""

    root: yaml.Node | None
    nodes: dict = field(default_factory=dict)  # path -> value node
    key_lines: dict = field(default_factory=dict)  # path -> line of its key (1-based)

    def line(self, path: Path) -> int:
        if path in self.key_lines:
            return self.key_lines[path]
        node = self.nodes.get(path)
        return node.start_mark.line + 1 if node is not None else 0

    def value_line(self, path: Path, offset: int = 0) -> int:
        """Line of the `offset`-th line of a (block) scalar's text."""
        node = self.nodes.get(path)
        if node is None:
            return 0
        first = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            first += 1  # the text starts under the indicator
        return first + offset


def locate(text: str) -> Located:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    loc = Located(root)
    if root is not None:
        _index(root, (), loc)
    return loc


def _index(node: yaml.Node, path: Path, loc: Located) -> None:
    loc.nodes[path] = node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = path + (key.value,)
                loc.key_lines.setdefault(child, key.start_mark.line + 1)
                _index(value, child, loc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), loc)


_TAG = "tag:yaml.org,2002:"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "map"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    tag = node.tag[len(_TAG):] if node.tag.startswith(_TAG) else "str"
    return {"null": "null", "int": "int", "float": "float", "bool": "bool"}.get(tag, "str")


def _compatible(have: str, want: str) -> bool:
    # coreos-cloudinit validate/rules.go isCompatible: YAML scalars convert to a string field.
    if want == "str":
        return have in ("str", "int", "float", "bool")
    if want == "float":
        return have in ("float", "int")
    return have == want


# -- cloud-config ----------------------------------------------------------------

HEADER = "#cloud-config"


def yaml_error_finding(exc: yaml.YAMLError) -> Finding:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    context = getattr(exc, "context", None)
    # Only the parser's own words: its snippet of the line could show a secret.
    text = f"{problem} ({context})" if context else problem
    return Finding(mark.line + 1 if mark else 1, ERROR, f"YAML: {text}")


def check_cloud_config(text: str) -> tuple[list[Finding], Located | None]:
    """coreos-cloudinit's -validate rules, with our stricter levels; returns the located tree too."""
    findings: list[Finding] = []
    if text.split("\n", 1)[0].rstrip() != HEADER:
        findings.append(Finding(1, ERROR, f'the first line must be exactly "{HEADER}"'))
    try:
        loc = locate(text)
    except yaml.YAMLError as exc:
        return findings + [yaml_error_finding(exc)], None
    if loc.root is None:
        return findings, loc
    if not isinstance(loc.root, yaml.MappingNode):
        return findings + [Finding(loc.root.start_mark.line + 1, ERROR, "a cloud-config must be a YAML mapping")], None
    _check_node(loc.root, CLOUD_CONFIG, (), findings)
    _check_write_files(loc, findings)
    for path, what in REPLACED.items():
        if path in loc.nodes:
            findings.append(Finding(loc.line(path), WARNING, f"{dotted(path)} is set per node by vmcoreos ({what});"
                                    " the value here is replaced"))
    _check_discovery_url(loc, findings)
    findings += nameless_users(loc)
    return sorted(set(findings)), loc


def _check_node(node: yaml.Node, schema: Field, path: Path, out: list[Finding]) -> None:
    have = _kind(node)
    if have == "null":
        return
    name = dotted(path) or "the config"
    if not _compatible(have, schema.kind):
        out.append(Finding(node.start_mark.line + 1, ERROR, f"incorrect type for '{name}' (want {schema.human})"))
        return
    if schema.kind == "map":
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            kname = key.value if isinstance(key, yaml.ScalarNode) else "?"
            where = f" in {dotted(path)}" if path else ""
            if kname in seen:
                out.append(Finding(line, ERROR, f"duplicate key '{kname}'{where} (first at line {seen[kname]});"
                                   " the guest refuses the whole file"))
                continue
            seen[kname] = line
            child = schema.fields.get(kname) if isinstance(kname, str) else None
            if child is None:
                out.append(_unknown_key(kname, path, schema, line))
                continue
            if child.deprecated:
                out.append(Finding(line, WARNING, f"deprecated key '{kname}'{where} ({child.deprecated})"))
            _check_node(value, child, path + (kname,), out)
    elif schema.kind == "list":
        for i, item in enumerate(node.value):
            _check_node(item, schema.item, path + (i,), out)
    else:
        if schema.valid and node.value != "" and not re.search(schema.valid, node.value):
            shown = "" if schema.secret else f" {node.value!r}"
            out.append(Finding(node.start_mark.line + 1, ERROR, f"invalid value{shown} for '{name}'"
                               f" ({_valid_text(schema.valid)})"))


def _valid_text(valid: str) -> str:
    m = re.fullmatch(r"\^\(([\w|\\+-]+)\)\$", valid)
    if m:
        return "one of " + ", ".join(a.replace("\\", "") for a in m.group(1).split("|"))
    return f"must match {valid}"


def _unknown_key(kname: str, path: Path, schema: Field, line: int) -> Finding:
    where = f" in {dotted(path)}" if path else ""
    if isinstance(kname, str) and "-" in kname and kname.replace("-", "_") in schema.fields:
        return Finding(line, ERROR, f"unrecognized key '{kname}'{where}: write '{kname.replace('-', '_')}';"
                       " Flatcar's coreos-cloudinit silently ignores keys with '-'")
    if path == ("coreos",) and kname == "write_files":
        return Finding(line, ERROR, "write_files doesn't belong under coreos; move it to the top level")
    return Finding(line, ERROR, f"unrecognized key '{kname}'{where}; the guest would ignore it")


def _check_write_files(loc: Located, out: list[Finding]) -> None:
    files = loc.nodes.get(("write_files",))
    if not isinstance(files, yaml.SequenceNode):
        return
    for i, item in enumerate(files.value):
        if not isinstance(item, yaml.MappingNode):
            continue
        base = ("write_files", i)
        path_node = loc.nodes.get(base + ("path",))
        if not isinstance(path_node, yaml.ScalarNode) or not path_node.value:
            out.append(Finding(item.start_mark.line + 1, ERROR, f"{dotted(base)} has no path"))
        elif _dirname(path_node.value).startswith("/usr"):
            out.append(Finding(loc.line(base + ("path",)), ERROR,
                               f"{dotted(base)}.path: file cannot be written to a read-only filesystem (/usr)"))
        perm = loc.nodes.get(base + ("permissions",))
        if isinstance(perm, yaml.ScalarNode) and _kind(perm) == "int" and perm.style is None:
            out.append(Finding(perm.start_mark.line + 1, ERROR,
                               f"{dotted(base)}.permissions must be quoted, e.g. '0644': YAML reads an unquoted"
                               " 0644 as the number 420"))
        enc = loc.nodes.get(base + ("encoding",))
        content = loc.nodes.get(base + ("content",))
        if isinstance(enc, yaml.ScalarNode) and enc.value in encoding.DECODERS and isinstance(content, yaml.ScalarNode):
            try:
                encoding.decode(content.value, enc.value)
            except (encoding.DecodeError, UnicodeEncodeError):
                out.append(Finding(content.start_mark.line + 1, ERROR,
                                   f"{dotted(base)}.content cannot be decoded as '{enc.value}'"))


def _dirname(path: str) -> str:
    import posixpath

    return posixpath.dirname(path)


def _check_discovery_url(loc: Located, out: list[Finding]) -> None:
    from urllib.parse import urlsplit

    path = ("coreos", "etcd", "discovery")
    node = loc.nodes.get(path)
    if isinstance(node, yaml.ScalarNode) and node.value:
        parts = urlsplit(node.value)
        if not parts.scheme or not (parts.netloc or parts.path.startswith("/")):
            out.append(Finding(loc.line(path), WARNING, "discovery URL is not valid"))


def nameless_users(loc: Located) -> list[Finding]:
    """users[] items without a name: coreos-cloudinit logs "User object has no 'name' field, skipping" and drops
    them, groups and keys included, while its -validate says nothing. Usually an indentation slip: the keys were
    meant for the user above, so the finding says so (the user's name is no secret; keys' values are never quoted)."""
    users = loc.nodes.get(("users",))
    if not isinstance(users, yaml.SequenceNode):
        return []
    out = []
    for i, item in enumerate(users.value):
        if not isinstance(item, yaml.MappingNode):
            continue
        fields = {k.value: v for k, v in item.value if isinstance(k, yaml.ScalarNode)}
        name = fields.get("name")
        if isinstance(name, yaml.ScalarNode) and name.value.strip():
            continue
        keys = ", ".join(k for k in fields if k != "name") or "nothing"
        above = _user_name(users.value[i - 1]) if i > 0 else None
        fix = (f"if they belong to the user above ({above!r}), indent them under it, without the '- ' that starts"
               " a new user" if above else "give it a name")
        out.append(Finding(item.start_mark.line + 1, ERROR, f"users[{i}] has no name, so coreos-cloudinit skips it"
                           f" and its {keys} are lost; {fix}"))
    return out


def _user_name(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == "name" and isinstance(v, yaml.ScalarNode) and v.value:
                return v.value
    return None


# -- values in the text ----------------------------------------------------------

_VAR_RE = re.compile(r"(?<!\\)\$(private|public)_ipv(4|6)\b")


def substitution_lines(text: str) -> list[tuple[int, str]]:
    """(line, variable) for every `$private_ipv4`-style variable coreos-cloudinit would substitute."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        for m in _VAR_RE.finditer(line):
            out.append((n, m.group(0)))
    return out
