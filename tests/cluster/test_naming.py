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


CLUSTER_52 = "a" * 40 + "-lab-staging"  # the longest cluster name the cluster file allows


def test_a_template_name_too_long_for_vcenter_is_shortened_the_same_way_every_time():
    full = f"{CLUSTER_52}-template-fedora-coreos-41.20241027.3.0"
    assert len(full) >= 80  # what vCenter refuses (InvalidName), after the download
    name = naming.template_name(CLUSTER_52, "fedora-coreos", "41.20241027.3.0")
    assert len(name) < 80
    assert name == naming.template_name(CLUSTER_52, "fedora-coreos", "41.20241027.3.0")
    assert name.startswith(f"{CLUSTER_52}-template-")
    assert naming.named_like_ours(CLUSTER_52, name) and naming.node_index(CLUSTER_52, name) is None
    # Another release gets another name, though both are cut at the same place.
    assert name != naming.template_name(CLUSTER_52, "fedora-coreos", "41.20241027.3.1")


def test_a_template_name_that_fits_is_the_one_older_runs_imported_under():
    name = naming.template_name("a" * 40, "flatcar", "4593.2.5")
    assert name == "a" * 40 + "-template-flatcar-4593.2.5"


def test_node_names_longer_than_a_hostname_are_refused():
    from vmcoreos.errors import ConfigError

    naming.check_node_names(CLUSTER_52, 99)
    with pytest.raises(ConfigError, match="hostnames .at most 63.*shorten the cluster name or lower the count"):
        naming.check_node_names(CLUSTER_52, 10 ** 10)


def test_the_lock_folder_name_is_fixed_per_cluster_never_a_node_and_fits_vcenter():
    assert naming.lock_folder_name("lab") == "vmcoreos-lock-lab"
    assert not naming.named_like_ours("lab", naming.lock_folder_name("lab"))
    longest = naming.lock_folder_name("a" * 80)
    assert len(longest) <= naming.MAX_ENTITY_NAME and longest == naming.lock_folder_name("a" * 80)
    assert longest != naming.lock_folder_name("a" * 79)


def test_only_ascii_digits_number_a_node_and_nothing_trails_a_name():
    # \d also matches Arabic-Indic and other Unicode digits, which int() reads: lab-٠٥ was node 5.
    from vmcoreos import naming

    assert naming.node_index("lab", "lab-05") == 5
    for name in ("lab-٠٥", "lab-0５", "lab-05\n"):
        assert naming.node_index("lab", name) is None
