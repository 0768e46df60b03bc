"""Least privilege: every privilege a run needs is asked up front, per object; one vCenter refuses later is one line.

The list itself and the docs' role table; tests/e2e/test_privileges_bed.py runs it against the strict bed.
"""

from __future__ import annotations

from pathlib import Path

from vmcoreos.vsphere import privileges

DOCS = Path(__file__).resolve().parents[2] / "docs" / "real-vcenter.md"


def test_the_docs_role_table_is_the_checked_list():
    text = DOCS.read_text()
    start = text.index("<!-- privileges:begin -->") + len("<!-- privileges:begin -->\n")
    assert text[start:text.index("<!-- privileges:end -->")] == privileges.role_table()


def test_the_list_names_what_the_reference_says_cloning_and_the_clone_spec_need():
    on = {(n.privilege, n.on) for n in privileges.NEEDS}
    for wanted in [("VirtualMachine.Inventory.CreateFromExisting", "folder"), ("VirtualMachine.Config.CPUCount", "folder"),
                   ("VirtualMachine.Config.Memory", "folder"), ("VirtualMachine.Config.Rename", "folder"),
                   ("VirtualMachine.Provisioning.MarkAsVM", "folder"),
                   ("VirtualMachine.Provisioning.DeployTemplate", "template"),
                   ("Host.Inventory.ModifyCluster", "cluster")]:
        assert wanted in on
