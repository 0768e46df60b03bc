"""Fedora CoreOS's etcd: the podman unit vmcoreos supplies, and a user's own unit kept or refused."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.guest.validation import cluster_with, problems_of
from vmcoreos.guest import compose, nodeconfig, podman

USER_ONLY = {"ignition": {"version": "3.4.0"},
             "passwd": {"users": [{"name": "ops", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3Nza ops@lab"]}]}}


def _plan(tmp_path, doc, **kw):
    settings = cluster_with(tmp_path, json.dumps(doc), distro="fedora-coreos", name="node.ign", **kw)
    return compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)


def _files(doc) -> dict[str, str]:
    return {f["path"]: urllib.parse.unquote(f["contents"]["source"].removeprefix("data:,"))
            for f in doc["storage"]["files"]}


def _unit(doc) -> dict:
    return next(u for u in doc["systemd"]["units"] if u["name"] == "etcd-member.service")


def test_fcos_gets_etcd_as_a_podman_unit_with_the_membership_in_its_env_file(tmp_path):
    nodes = _plan(tmp_path, USER_ONLY)
    doc = json.loads(nodes[1].config_text)
    unit = _unit(doc)
    assert unit["enabled"] is True and "dropins" not in unit  # a drop-in's Environment= would reach podman only
    text = unit["contents"]
    assert f"--env-file {podman.MEMBER_ENV}" in text and "--volume /var/lib/etcd:/var/lib/etcd:Z" in text
    assert "Restart=on-failure" in text and "ExecStartPre=/usr/bin/mkdir -p /var/lib/etcd" in text
    assert podman.DEFAULT_IMAGE in text and "@sha256:" in podman.DEFAULT_IMAGE
    env = dict(line.split("=", 1) for line in _files(doc)[podman.MEMBER_ENV].splitlines())
    assert env["ETCD_NAME"] == "lab-02" and env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.22:2379"
    assert env["ETCD_INITIAL_CLUSTER"].count("=http://") == 3 and "ETCD_IMAGE" not in env
    assert doc["passwd"] == USER_ONLY["passwd"]  # the user's part kept as written


def test_etcd_image_replaces_the_default(tmp_path):
    nodes = _plan(tmp_path, USER_ONLY, etcd={"image": "registry.lab:5000/coreos/etcd:v3.5.17"})
    text = _unit(json.loads(nodes[0].config_text))["contents"]
    assert "registry.lab:5000/coreos/etcd:v3.5.17 /usr/local/bin/etcd" in text and podman.DEFAULT_IMAGE not in text


def test_a_users_own_etcd_unit_is_kept(tmp_path):
    mine = ("[Service]\nExecStart=/usr/bin/podman run --rm --network host --env-file /etc/vmcoreos/etcd-member.env"
            " -v /srv/etcd:/var/lib/etcd:Z quay.io/coreos/etcd:v3.5.17 /usr/local/bin/etcd\n"
            "[Install]\nWantedBy=multi-user.target\n")
    doc = dict(USER_ONLY, systemd={"units": [{"name": "etcd-member.service", "enabled": True, "contents": mine}]})
    merged = json.loads(_plan(tmp_path, doc)[0].config_text)
    assert _unit(merged)["contents"] == mine
    assert podman.MEMBER_ENV in _files(merged)


def test_a_users_podman_unit_that_passes_nothing_in_is_refused(tmp_path):
    # The README's old advice: an ordinary podman unit, membership in Environment= lines that stop at podman.
    mine = ("[Service]\nExecStart=/usr/bin/podman run --rm --network host quay.io/coreos/etcd:v3.5.17"
            " /usr/local/bin/etcd\n")
    doc = dict(USER_ONLY, systemd={"units": [{"name": "etcd-member.service", "enabled": True, "contents": mine}]})
    text = json.dumps(doc, indent=2)
    found = problems_of(tmp_path, text, distro="fedora-coreos", name="node.ign")
    assert len(found) == 1 and "runs podman but hands none of vmcoreos's membership to the container" in found[0]
    assert f"--env-file {podman.MEMBER_ENV}" in found[0]


@pytest.mark.parametrize("words, passes", [
    ("podman run --env-file /etc/vmcoreos/etcd-member.env img", True),
    ("podman run --env-file=/etc/vmcoreos/etcd-member.env img", True),
    ("podman run -e 'ETCD_*' img", True),
    ("podman run --env-host img", True),
    ("podman run -e ETCD_NAME=x img", False),
    ("podman run img", False),
])
def test_what_counts_as_passing_the_membership_in(words, passes):
    assert podman.passes_membership(words) is passes


def test_an_image_that_could_break_the_unit_line_is_refused():
    from vmcoreos.errors import ConfigError

    with pytest.raises(ConfigError, match="etcd.image would be written into a systemd unit line"):
        podman.member_unit("quay.io/x\nExecStartPre=/bin/sh -c evil")
