"""What `pip install vmcoreos` gets: declared, bounded dependencies, the pinned
versions the suite ran with, a build with no warnings and a wheel holding every
data file the package reads."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vmcoreos"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [Requirement(r) for r in PROJECT["dependencies"]]
TEST_REQUIREMENTS = [Requirement(r) for r in PROJECT["optional-dependencies"]["test"]]


def _imported_top_levels() -> set[str]:
    names = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"vmcoreos", "__future__"}


def test_every_third_party_import_is_declared():
    declared = {canonicalize_name(r.name) for r in REQUIREMENTS}
    owners = importlib.metadata.packages_distributions()
    for module in sorted(_imported_top_levels()):
        dists = {canonicalize_name(d) for d in owners.get(module, [module])}
        assert dists & declared, f"vmcoreos imports {module} (from {sorted(dists)}) but pyproject does not declare it"


def test_every_dependency_is_bounded_and_the_installed_release_fits():
    for req in REQUIREMENTS + TEST_REQUIREMENTS:
        assert any(spec.operator in ("<", "~=", "==") for spec in req.specifier), f"{req} has no upper bound"
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req.specifier}"


def test_constraints_pin_what_the_venv_holds():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    for req in REQUIREMENTS + TEST_REQUIREMENTS:
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt pins {req.name} outside {req}"
        assert importlib.metadata.version(req.name) == pins[name], f"the venv's {req.name} differs from constraints.txt; run make venv"


def _data_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


def test_wheel_builds_without_warnings_and_ships_every_data_file(tmp_path):
    # Built from a copy, so the build's own build/ and egg-info never land in the checkout.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "ova", "bench", "tests", "*.egg-info", "__pycache__", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # Python warnings print as "file:line: SomeWarning: text"; pip 26 renames setuptools' to BuildBackendWarning.
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r"\b[A-Za-z]+Warning: ", line)]
    assert not warnings, "\n".join(warnings)
    (wheel,) = (tmp_path / "dist").glob("vmcoreos-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    missing = _data_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)}; add them to [tool.setuptools.package-data]"
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_real_vcenter_example_needs_no_checkout():
    # It ran `vmcoreos deploy -c configs/cluster.yaml`, a file a pip or pipx user does not have.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it with a real vCenter"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert "configs/" not in block
    assert "vmcoreos init " in block and "vmcoreos deploy" in block
