"""The house rules, checked from the source: module and class sizes, no import cycle inside vmcoreos,
no module-level __getattr__ forwarding, no reaching into another module's private names, environment
variables read in one module, no two modules (or test files) of one name, no test module importing another,
no issue numbers for names, README a front page.

Each check reads the files with the ast module, so it runs in milliseconds and names what to fix.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vmcoreos"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
MAX_README_LINES = 300

# KNOWN CYCLES, to be emptied: an import cycle that exists while another branch removes it, as the set
# of modules in it. Empty now; test_the_known_cycles_still_exist fails when an entry outlives its cycle.
KNOWN_CYCLES: set[frozenset[str]] = set()

# KNOWN E2E OUTSIDE tests/e2e/, to be emptied: a module that mixes unit and e2e tests while it is split.
KNOWN_E2E_OUTSIDE: set[str] = set()

# KNOWN LONG CLASSES, to be emptied: a class over the limit while its owner splits it (name -> its lines).
KNOWN_LONG_CLASSES: dict[str, int] = {}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The vmcoreos modules `name` imports, at module level or inside functions (a lazy import is still
    a dependency); `from pkg import mod` counts as importing pkg.mod when that is a module."""
    tree = parsed(path)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these modules (at most {MAX_MODULE_LINES} lines each)"


def test_no_class_over_200_lines():
    long = {}
    for name, path in modules().items():
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    over = {name: n for name, n in long.items() if n > KNOWN_LONG_CLASSES.get(name, MAX_CLASS_LINES)}
    assert over == {}, f"split these classes (at most {MAX_CLASS_LINES} lines each)"


def test_no_import_cycle_inside_vmcoreos():
    found = set(cycles(import_graph()))
    assert found - KNOWN_CYCLES == set(), "new import cycles: move what both sides need to a module below both"


def test_the_known_cycles_still_exist():
    # Keeps KNOWN_CYCLES honest: an entry whose cycle is gone must go too.
    assert KNOWN_CYCLES - set(cycles(import_graph())) == set(), "remove these entries from KNOWN_CYCLES"


def test_no_module_level_getattr_forwarding():
    forwarding = [name for name, path in modules().items()
                  if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                         for node in parsed(path).body)]
    assert forwarding == [], "import names from the module that defines them instead of forwarding"


def test_environment_variables_are_read_only_in_vmcoreos_environment():
    readers = []
    for name, path in modules().items():
        if name == "vmcoreos.environment":
            continue
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.append(f"{name}:{node.lineno}")
    assert readers == [], "ask vmcoreos.environment (value, lookup or a typed reader) instead"


def test_readme_is_a_front_page():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_only_tests_under_tests_e2e_are_end_to_end():
    marks = re.compile(r"@pytest\.mark\.e2e|^pytestmark\s*=.*\be2e\b", re.M)
    marked = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
              if p.relative_to(ROOT / "tests").parts[0] != "e2e" and marks.search(p.read_text())]
    assert set(marked) - KNOWN_E2E_OUTSIDE == set(), "move these end-to-end tests to tests/e2e/ (the bed's fixtures live there)"


def test_no_two_modules_share_a_name():
    """A name says one job: `keys.py` in two folders makes "where is X?" two answers. Tests the same,
    so a failure's file name alone says where it is (pytest also needs them unique without __init__)."""
    for root, pattern in ((PACKAGE, "*.py"), (ROOT / "tests", "test_*.py")):
        seen: dict[str, list[str]] = {}
        for path in sorted(root.rglob(pattern)):
            if path.name != "__init__.py":
                seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
        shared = {name: places for name, places in seen.items() if len(places) > 1}
        assert shared == {}, "rename one of each so its name says its job"


def test_no_module_reaches_into_another_s_private_names():
    """`vms._extra(...)` from drsrule.py is a dependency nobody sees from vms.py: make the name public or move it."""
    found = modules()
    reached = []
    for name, path in found.items():
        tree = parsed(path)
        aliases = {}  # local name -> the vmcoreos module it is
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vmcoreos"):
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in found:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in found and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                reached.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert reached == [], "make these names public where they are defined (and say what they are for)"


def test_no_test_module_imports_from_another():
    """What tests share lives in a helper module (tests/harness/, tests/e2e/helpers.py, direct.py, a folder's
    conftest.py), not in another test module: importing one runs its module code and hides what it shares."""
    tests = ROOT / "tests"
    borrowed = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted(tests.rglob("*.py"))
                for node in ast.walk(parsed(path)) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("tests.") and node.module.rsplit(".", 1)[-1].startswith("test_")]
    assert borrowed == [], "move what these import into a helper module"


def test_code_and_tests_say_what_not_which_issue():
    """An issue number means nothing to the next reader (and the tracker may move): say the behaviour."""
    label = re.compile(r"\bissues? ?#?\d+", re.I)
    labelled = [f"{path.relative_to(ROOT)}:{n}" for folder in ("vmcoreos", "tests", "bench", "tools")
                for path in sorted((ROOT / folder).rglob("*.py"))
                for n, line in enumerate(path.read_text().splitlines(), 1) if label.search(line)]
    assert labelled == [], "name the behaviour instead of the issue"


def test_the_cycle_finder_finds_a_cycle_and_a_lazy_import():
    # The finder itself: a three-module cycle, a lone edge and a self-import.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
