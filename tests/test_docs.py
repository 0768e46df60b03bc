"""The generated parts of docs/ are current: the command reference and the environment table.

`make docs` (tools/docs.py) rewrites both; a new flag, help text or environment variable needs
that one command and a commit.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tools import docs
from vmcoreos import environment

PACKAGE = Path(__file__).resolve().parents[1] / "vmcoreos"


@pytest.mark.parametrize("path", [docs.COMMANDS, docs.CONFIGURATION], ids=lambda p: p.name)
def test_the_generated_docs_are_current(path):
    assert path.read_text() == docs.generated()[path], f"{path.name} is stale; run `make docs` and commit it"


def test_the_command_reference_has_every_command():
    text = docs.COMMANDS.read_text()
    for name in docs.command_names():
        assert f"## vmcoreos {name}\n" in text and f"Usage: vmcoreos {name} [OPTIONS]" in text


def test_every_variable_the_package_names_is_in_the_table():
    named = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named |= set(re.findall(r"\b(?:VMCOREOS|GOVC)_[A-Z][A-Z0-9_]*[A-Z0-9]\b", node.value))
    listed = {name for variable in environment.VARIABLES for name in variable.names}
    assert named - listed == set(), "add these to vmcoreos/environment.py's VARIABLES and run `make docs`"
