"""Node and template names: one rule serves both the name given at clone time and the inventory's match."""

from __future__ import annotations

import pytest

from vmcoreos import naming


@pytest.mark.parametrize("index, name", [(1, "lab-01"), (9, "lab-09"), (10, "lab-10"), (123, "lab-123")])
def test_a_node_name_reads_back_as_its_index(index, name):
    assert naming.node_name("lab", index) == name
    assert naming.node_index("lab", name) == index
    assert naming.named_like_ours("lab", name)


@pytest.mark.parametrize("name", ["lab-1", "lab-01x", "lab2-01", "other-01", "lab-", "xlab-01"])
def test_other_names_are_not_nodes(name):
    assert naming.node_index("lab", name) is None


def test_a_template_name_is_ours_but_not_a_node():
    name = naming.template_name("lab", "flatcar", "4593.2.5")
    assert name == "lab-template-flatcar-4593.2.5"
    assert naming.named_like_ours("lab", name) and naming.node_index("lab", name) is None
    assert not naming.named_like_ours("la", name)
