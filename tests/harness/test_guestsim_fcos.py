"""The guest simulator as Fedora CoreOS: upstream Ignition only, spec 3, no coreos-cloudinit, no etcd of its own."""

from __future__ import annotations

import json

from tests.harness.guestboots import b64, fcos_config, ignition, NIC, unit_text
from tests.harness import guestsim as gs


def _boot(extra):
    return gs.simulate_boot(extra, NIC, lease=lambda: "127.0.200.10", distro=gs.FCOS)


def _ign(config: str, key: str = "ignition") -> dict[str, str]:
    return {f"guestinfo.{key}.config.data": b64(config), f"guestinfo.{key}.config.data.encoding": "base64"}


def test_the_podman_unit_runs_and_spec_2_is_refused():
    assert _boot(_ign(fcos_config(unit_text()))).etcd is not None
    spec2 = _boot(_ign(ignition(version="2.3.0")))
    assert spec2.etcd is None and spec2.errors == ['Ignition failed: unsupported config version "2.3.0"']


def test_flatcars_etcd_member_does_not_exist_on_fcos():
    # A drop-in for Flatcar's vendor unit: on Fedora CoreOS there is no unit for it to configure.
    result = _boot(_ign(ignition(version="3.4.0")))
    assert result.etcd is None
    assert result.errors == ["Failed to enable unit: Unit file etcd-member.service does not exist."]
    assert gs.simulate_boot(_ign(ignition(version="3.4.0")), NIC, lease=lambda: "x").etcd is not None  # Flatcar


def test_no_coreos_cloudinit_and_no_coreos_config_keys():
    cloud = _boot(_ign("#cloud-config\nhostname: n1\n"))
    assert cloud.applied is False and cloud.errors and cloud.errors[0].startswith("Ignition failed:")
    old_key = _boot(_ign(json.dumps({"ignition": {"version": "3.4.0"}}), key="coreos"))
    assert old_key.user_data is None and old_key.applied is False and old_key.etcd is None
