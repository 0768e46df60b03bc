"""The guest simulator's podman: etcd in a container gets only what podman passes in (podman-run(1)).

These are the readers that make the FCOS tests mean something: a membership left in the unit's
Environment= (the README's old advice) must not reach etcd, as it would not on a real node.
"""

from __future__ import annotations


from tests.harness.guestboots import fcos_config, ignition_boot, MEMBERSHIP, unit_text
from tests.harness import guestsim as gs



def test_env_file_reaches_etcd_and_the_unit_environment_does_not():
    dropin = "[Service]\nEnvironment=ETCD_INITIAL_CLUSTER_STATE=new ETCD_IMAGE=x\n"
    result = ignition_boot(fcos_config(unit_text(), dropin=dropin))
    assert result.errors == []
    assert result.etcd.env == {"ETCD_NAME": "n1", "ETCD_INITIAL_CLUSTER": "n1=http://127.0.1.51:2380",
                               "ETCD_DATA_DIR": "/var/lib/etcd"}


def test_the_readmes_old_advice_leaves_etcd_without_its_membership():
    # Membership only in the drop-in: podman has it, the container does not; etcd would be "default" alone.
    dropin = "[Service]\n" + "".join(f'Environment="{line}"\n' for line in MEMBERSHIP.splitlines())
    result = ignition_boot(fcos_config(unit_text(opts=""), env_file=None, dropin=dropin))
    assert result.errors == [] and result.etcd.env == {"ETCD_DATA_DIR": "/var/lib/etcd"}


def test_env_names_and_prefixes_take_podmans_own_values():
    dropin = "[Service]\n" + "".join(f'Environment="{line}"\n' for line in MEMBERSHIP.splitlines())
    result = ignition_boot(fcos_config(unit_text(opts="-e 'ETCD_INITIAL*' --env ETCD_NAME --env NOPE"),
                                       env_file=None, dropin=dropin))
    assert result.etcd.env == {"ETCD_NAME": "n1", "ETCD_INITIAL_CLUSTER": "n1=http://127.0.1.51:2380",
                               "ETCD_DATA_DIR": "/var/lib/etcd"}
    host = ignition_boot(fcos_config(unit_text(opts="--env-host"), env_file=None, dropin=dropin))
    assert host.etcd.env["ETCD_NAME"] == "n1"


def test_what_stops_the_real_container_is_an_error():
    missing = ignition_boot(fcos_config(unit_text(), env_file=None))
    assert missing.etcd is None and "open /etc/etcd.env: no such file" in missing.errors[0]
    no_dir = ignition_boot(fcos_config(unit_text(mkdir=False)))
    assert no_dir.etcd is None and "statfs /var/lib/etcd" in no_dir.errors[0]
    unlabelled = ignition_boot(fcos_config(unit_text().replace("/var/lib/etcd:Z", "/var/lib/etcd")))
    assert unlabelled.etcd is None and "SELinux" in unlabelled.errors[0]
    bridged = ignition_boot(fcos_config(unit_text().replace(" --network host", "")))
    assert bridged.etcd is None and "host network" in bridged.errors[0]
    unreachable = ignition_boot(fcos_config(unit_text().replace("quay.io/", "registry.invalid/")))
    assert unreachable.etcd is None and "no such host" in unreachable.errors[0]


def test_an_enabled_unit_without_install_section_does_not_start():
    result = ignition_boot(fcos_config(unit_text(install=False)))
    assert result.etcd is None and any("no [Install] section" in w for w in result.warnings)


def test_exec_words_expand_like_systemd():
    env = {"IMG": "quay.io/x:1", "OPTS": "--a  --b"}
    assert gs.exec_words("-/usr/bin/podman run ${IMG} $OPTS $UNSET end", env) == [
        "/usr/bin/podman", "run", "quay.io/x:1", "--a", "--b", "end"]


def test_podman_env_file_values_are_literal():
    assert gs.parse_podman_env_file('# c\nA="q"\nB=x=y\n\n') == {"A": '"q"', "B": "x=y"}
