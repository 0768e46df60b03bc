"""What vmcoreos accepts from etcd and writes into unit lines (member names, URLs, hostile text in unit lines): small units, mocked at etcd's edge.

The same checks against a real etcd are in test_etcd_real.py.
"""

from pathlib import Path

import pytest

from vmcoreos.cluster.locking import cluster_lock
from vmcoreos.cluster.members import Members
from vmcoreos.cluster.nodes import remove_node
from vmcoreos.cluster.run import Run
from vmcoreos import etcd
from vmcoreos.errors import ConfigError, EtcdError, LockedError
from vmcoreos.guest import cloudconfig, compose, nodeconfig
from vmcoreos.reporting import QuietReporter
from vmcoreos.clusterfile import parse_cluster
from vmcoreos.vsphere.vms import MARK_CLUSTER, MARK_ETCD_CLUSTER_ID, VmInfo

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
INJECTED = 'lab-04"\nExecStartPre=/bin/sh -c "touch /tmp/pwned"\nEnvironment="X=1'


@pytest.mark.parametrize(
    "url,ip,same",
    [
        ("http://10.0.0.2:2380", "10.0.0.2", True),
        ("http://10.0.0.21:2380", "10.0.0.2", False),  # the substring match removed the wrong member
        ("http://10.0.0.2:2380", "10.0.0.21", False),
        ("http://110.0.0.2:2380", "10.0.0.2", False),
        ("https://10.0.0.2:2380", "10.0.0.2", True),
        ("http://[fd00::2]:2380", "fd00::2", True),
        ("http://[fd00::2]:2380", "fd00:0::2", True),  # parsed, not compared as text
        ("http://10.0.0.2.evil.example:2380", "10.0.0.2", False),
        ("http://user@10.0.0.2:2380", "10.0.0.2", False),
        ("http://10.0.0.2:2380/path", "10.0.0.2", False),
        ("http://10.0.0.2", "10.0.0.2", False),  # no port
        ("http://10.0.0.2:2380", None, False),
        ("http://10.0.0.2:2380", "not-an-ip", False),
    ],
)
def test_member_urls_match_a_vm_by_exact_parsed_host(url, ip, same):
    assert etcd.same_host(url, ip) is same


def _view(*members, cluster_id="abc"):
    return etcd.ClusterView([etcd.Member(f"{i + 1:x}", n, p, c) for i, (n, p, c) in enumerate(members)],
                            cluster_id=cluster_id)


GOOD = ("lab-01", ("http://10.0.0.1:2380",), ("http://10.0.0.1:2379",))


@pytest.mark.parametrize(
    "member,message",
    [
        ((INJECTED, ("http://10.0.0.4:2380",), ()), r"member 'lab-04\"\\nExecStartPre="),
        (("lab-99999999", ("http://10.0.0.4:2380",), ()), "NN at most 999"),
        (("other-01", ("http://10.0.0.4:2380",), ()), "'other-01'"),
        (("lab-1", ("http://10.0.0.4:2380",), ()), "'lab-1'"),
        (("lab-04", ("http://evil.example:2380",), ()), "URL 'http://evil.example:2380'"),
        (("lab-04", ("http://10.0.0.4:2380\nExecStart=x",), ()), r"URL 'http://10.0.0.4:2380\\nExecStart=x'"),
        (("lab-04", ("http://10.0.0.4:2380",), ("http://10.0.0.4:2379/x",)), "not http\\(s\\)://<IP>:<port>"),
    ],
)
def test_a_member_list_with_names_or_urls_we_never_made_is_refused(member, message):
    with pytest.raises(EtcdError, match=message):
        etcd.check_view(_view(GOOD, member), "lab", "http://10.0.0.1:2379")


def test_members_we_made_and_an_unstarted_member_pass():
    view = _view(GOOD, ("lab-999", ("http://10.0.0.2:2380",), ()), ("", ("http://[fd00::3]:2380",), ()))
    assert etcd.check_view(view, "lab", "http://10.0.0.1:2379") is view


@pytest.mark.parametrize("bad", ['"', "\\", "%", "\n", "\r", "\x00", "\x1b", "\x7f"])
def test_unit_values_that_could_leave_their_line_are_refused(bad):
    with pytest.raises(ConfigError, match="ETCD_NAME would be written into a systemd unit line"):
        cloudconfig.environment_lines({"ETCD_NAME": f"lab{bad}01"})


def _settings(tmp_path, config: str, **etcd_settings):
    name = "node.json" if config.endswith(".json") else "node.yaml"
    (tmp_path / name).write_text((CONFIGS / config).read_text())
    data = {"cluster": "lab", "count": 3,
            "node": {"config": name, "network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.24/24"]}}}
    if etcd_settings:
        data["etcd"] = etcd_settings
    return parse_cluster(data, base_dir=tmp_path)


@pytest.mark.parametrize("config", ["flatcar-etcd-member.yaml", "flatcar-ignition.json", "coreos-etcd2.yaml"])
def test_renderers_refuse_an_injected_member_name_whatever_its_source(tmp_path, config):
    settings = _settings(tmp_path, config)
    if config.startswith("coreos"):
        from dataclasses import replace

        settings = replace(settings, image=replace(settings.image, distro="coreos"))
    user = nodeconfig.load_user_config(settings)
    peers = {"lab-01": "http://10.0.0.21:2380", INJECTED: "http://10.0.0.9:2380"}
    with pytest.raises(ConfigError, match="ETCD_INITIAL_CLUSTER|coreos.etcd2.initial_cluster"):
        compose.node_configs(settings, user, count=4, only=["lab-04"], existing_members=peers)


def test_a_user_value_with_a_systemd_specifier_is_refused_too(tmp_path):
    settings = _settings(tmp_path, "flatcar-etcd-member.yaml", bootstrap="discovery",
                         discovery="https://discovery.example/%n")
    with pytest.raises(ConfigError, match="ETCD_DISCOVERY .*'%'"):
        compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)


KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize("wrap", ["yaml", "data-url", "base64-url"])
def test_one_warning_when_a_node_config_carries_a_private_key(tmp_path, wrap):
    import base64
    import json
    import urllib.parse

    if wrap == "yaml":
        text = "#cloud-config\nwrite_files:\n  - path: /root/.ssh/id\n    content: |\n" + "".join(
            f"      {line}\n" for line in KEY.splitlines())
        name = "node.yaml"
    else:
        source = ("data:," + urllib.parse.quote(KEY) if wrap == "data-url"
                  else "data:;base64," + base64.b64encode(KEY.encode()).decode())
        doc = json.loads((CONFIGS / "flatcar-ignition.json").read_text())
        doc.setdefault("storage", {}).setdefault("files", []).append(
            {"path": "/root/.ssh/id", "mode": 384, "contents": {"source": source}})
        text = json.dumps(doc)
        name = "node.json"
    (tmp_path / name).write_text(text)
    settings = parse_cluster({"cluster": "lab", "node": {"config": name, "network": {
        "mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"]}}}, base_dir=tmp_path)
    warnings = [w for w in nodeconfig.load_user_config(settings).warnings if "private key" in w]
    assert warnings == [nodeconfig.PRIVATE_KEY_WARNING]
    assert "guestinfo" in warnings[0] and "vCenter" in warnings[0]


def test_no_private_key_warning_for_public_keys(tmp_path):
    settings = _settings(tmp_path, "flatcar-etcd-member.yaml")
    assert not [w for w in nodeconfig.load_user_config(settings).warnings if "private key" in w]


# -- membership changes: the right member, the right cluster, our lock -------------------------------


def _vm(i, ip, cluster_id=None):
    extra = {MARK_CLUSTER: "lab"}
    if cluster_id:
        extra[MARK_ETCD_CLUSTER_ID] = cluster_id
    return VmInfo(object(), f"lab-0{i}", False, "poweredOn", "guestToolsRunning", ip, extra)


def _cluster(mocker, view):
    c = object.__new__(Run)
    c.settings = mocker.Mock()
    c.settings.name = "lab"
    c.session = mocker.Mock()
    c.reporter = QuietReporter()
    c.members = Members(c.settings)
    mocker.patch("vmcoreos.cluster.spread.leave")  # placement is not what these tests are about
    mocker.patch.object(Members, "live_view", return_value=("http://10.0.0.1:2379", view))
    mocker.patch.object(Members, "health", return_value={m.id: True for m in view.members})
    return c


def test_removing_a_vm_never_removes_a_member_whose_ip_merely_contains_its_own(mocker):
    # The VM at 10.0.0.2 is not listed by name; the member at 10.0.0.21 must not be taken for it.
    view = _view(GOOD, ("", ("http://10.0.0.21:2380",), ()), ("lab-03", ("http://10.0.0.3:2380",), ()))
    c = _cluster(mocker, view)
    remove = mocker.patch.object(etcd.Client, "member_remove")
    mocker.patch("vmcoreos.vsphere.vms.destroy")
    nodes = {"lab-01": _vm(1, "10.0.0.1"), "lab-03": _vm(3, "10.0.0.3")}
    remove_node(c, _vm(2, "10.0.0.2"), nodes)
    remove.assert_not_called()


def test_no_member_is_removed_from_an_etcd_with_another_cluster_id(mocker):
    view = _view(GOOD, ("lab-02", ("http://10.0.0.2:2380",), ()), ("lab-03", ("http://10.0.0.3:2380",), ()),
                 cluster_id="f00d")
    c = _cluster(mocker, view)
    remove = mocker.patch.object(etcd.Client, "member_remove")
    destroy = mocker.patch("vmcoreos.vsphere.vms.destroy")
    nodes = {f"lab-0{i}": _vm(i, f"10.0.0.{i}", "abc") for i in (1, 2, 3)}
    with pytest.raises(EtcdError, match="reports cluster ID f00d, but the nodes record abc"):
        remove_node(c, nodes["lab-02"], nodes)
    remove.assert_not_called()
    destroy.assert_not_called()


def test_nodes_without_the_mark_are_accepted_and_the_id_recorded_later(mocker):
    view = _view(GOOD, ("lab-02", ("http://10.0.0.2:2380",), ()), ("lab-03", ("http://10.0.0.3:2380",), ()))
    c = _cluster(mocker, view)
    remove = mocker.patch.object(etcd.Client, "member_remove")
    mocker.patch("vmcoreos.vsphere.vms.destroy")
    nodes = {f"lab-0{i}": _vm(i, f"10.0.0.{i}") for i in (1, 2, 3)}
    remove_node(c, nodes["lab-02"], nodes)
    remove.assert_called_once_with("http://10.0.0.1:2379", "2")


def test_a_lapsed_lock_stops_the_run_before_the_next_membership_change(mocker):
    view = _view(GOOD, ("lab-02", ("http://10.0.0.2:2380",), ()), ("lab-03", ("http://10.0.0.3:2380",), ()))
    c = _cluster(mocker, view)
    remove = mocker.patch.object(etcd.Client, "member_remove")
    c.members.lock = etcd.EtcdLock(c.members.client, ["http://10.0.0.1:2379"], "lab", "host:1", ttl=60)
    c.members.lock._renewed -= 41  # no keepalive got through for two thirds of the TTL
    nodes = {f"lab-0{i}": _vm(i, f"10.0.0.{i}") for i in (1, 2, 3)}
    with pytest.raises(LockedError, match="no longer held"):
        remove_node(c, nodes["lab-02"], nodes)
    remove.assert_not_called()


def test_the_etcd_lock_fails_closed(mocker):
    view = _view(GOOD)
    c = _cluster(mocker, view)
    mocker.patch.object(etcd.EtcdLock, "acquire", side_effect=EtcdError("etcd at x answered HTTP 500: 'boom'"))
    ran = []
    with pytest.raises(EtcdError, match="could not take the etcd lock of cluster 'lab' at .*nothing was changed"):
        with cluster_lock(c, {"lab-01": _vm(1, "10.0.0.1")}):
            ran.append(True)
    assert ran == []


def test_etcd_replies_are_read_with_a_size_limit(mocker):
    resp = mocker.MagicMock()
    resp.__enter__.return_value = resp
    resp.iter_content.return_value = iter([b"x" * (64 << 10)] * 17 + [b"x"] * 10**6)
    mocker.patch("requests.Session.request", return_value=resp)
    with pytest.raises(EtcdError, match="reply over 1 MiB"):
        etcd.Client().member_list("http://10.0.0.1:2379")


def test_etcd_error_text_is_quoted_before_it_is_shown(mocker):
    resp = mocker.MagicMock(status_code=500)
    resp.__enter__.return_value = resp
    resp.iter_content.return_value = iter([b'{"error": "bad\\n\\u001b[31mred"}'])
    mocker.patch("requests.Session.request", return_value=resp)
    with pytest.raises(EtcdError) as err:
        etcd.Client().member_remove("http://10.0.0.1:2379", "2")
    assert "\n" not in err.value.message and "\x1b" not in err.value.message
    assert r"'bad\n\x1b[31mred'" in err.value.message


def test_a_v2_only_etcd_gives_its_cluster_id_in_a_header(mocker):
    def reply(method, url, **kwargs):
        resp = mocker.MagicMock()
        resp.__enter__.return_value = resp
        if url.endswith("/v2/members"):
            resp.status_code, resp.headers = 200, {"X-Etcd-Cluster-Id": "6d3e9ab1b2c3d4e5"}
            resp.iter_content.return_value = iter([b'{"members": [{"id": "8e9e05c52164694d", "name": "lab-01",'
                                                   b' "peerURLs": ["http://10.0.0.1:2380"], "clientURLs": []}]}'])
        else:
            resp.status_code, resp.headers = 404, {}
            resp.iter_content.return_value = iter([b"404 page not found"])
        return resp

    mocker.patch("requests.Session.request", side_effect=reply)
    view = etcd.Client().member_list("http://10.0.0.1:2379")
    assert view.cluster_id == "6d3e9ab1b2c3d4e5" and view.members[0].name == "lab-01"
