"""Node configs put through the validation a deploy runs: the settings of a small cluster around one, and the
findings or warnings it gets. Shared by the guest tests (test_validate.py, test_podman.py)."""

from __future__ import annotations

import re

import pytest

from vmcoreos.clusterfile import parse_cluster
from vmcoreos.errors import ConfigError
from vmcoreos.guest import compose, nodeconfig


def cluster_with(tmp_path, text, *, distro="flatcar", version="current", etcd=None, name="cc.yaml", **net):
    """Settings of a three-node static cluster whose node config is text (written to tmp_path/name)."""
    (tmp_path / name).write_text(text)
    network = {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"], "gateway": "10.0.0.1", **net}
    data = {"cluster": "lab", "count": 3, "image": {"distro": distro, "version": version},
            "node": {"config": name, "network": network}, "etcd": etcd or {}}
    return parse_cluster(data, base_dir=tmp_path)


def problems_of(tmp_path, text, **kw) -> list[str]:
    """The findings of a refused config; fails the test if it was accepted."""
    settings = cluster_with(tmp_path, text, **kw)
    with pytest.raises(ConfigError) as err:
        compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)
    assert re.match(r"node config .* has \d+ problems?; fix (them|it) and run again", err.value.message)
    return err.value.findings


def warnings_of(tmp_path, text, **kw) -> list[str]:
    """The warnings of an accepted config."""
    settings = cluster_with(tmp_path, text, **kw)
    user = nodeconfig.load_user_config(settings)
    compose.node_configs(settings, user, count=3)
    return list(user.warnings)
