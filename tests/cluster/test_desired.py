"""One desired state, one diff: every field the cluster file decides, compared with what a node is, as reasons."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmcoreos.cluster import plan
from vmcoreos.cluster.desired import Desired, changed_sections, drift, sections, sections_mark
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_DIGEST, MARK_DISTRO, MARK_ROLE, MARK_SECTIONS, MARK_VERSION, VmInfo

CONFIG = """#cloud-config
hostname: lab-01
users:
  - name: core
write_files:
  - path: /etc/motd
    content: hello
coreos:
  units:
    - name: etcd-member.service
      command: start
  etcd2:
    listen-client-urls: http://0.0.0.0:2379
"""


def _config(text=CONFIG, name="lab-01"):
    digest = str(abs(hash(text)))
    return NodeConfig(name, int(name[-2:]), None, text, {"guestinfo.coreos.config.data": "x"}, digest)


def _vm(config: NodeConfig, *, cpus=2, memory_mb=2048, networks=("network-7",), datastores=("datastore-1",),
        version="4593.2.5", power="poweredOn"):
    extra = {MARK_CLUSTER: "lab", MARK_ROLE: "node", MARK_DISTRO: "flatcar", MARK_VERSION: version,
             MARK_DIGEST: config.digest, MARK_SECTIONS: sections_mark(config)}
    return VmInfo(object(), config.name, False, power, None, None, extra, cpus=cpus, memory_mb=memory_mb,
                  networks=networks, datastores=datastores)


WANT = Desired("flatcar", None, 2, 2048, "network-7", "VM Network", ("datastore-1",), "LocalDS_0",
               {"network-7": "VM Network", "dvportgroup-9": "DC0_DVPG0", "datastore-1": "LocalDS_0",
                "datastore-2": "LocalDS_1"})

EDITED = CONFIG.replace("name: core", "name: ops").replace("content: hello", "content: bye")


@pytest.mark.parametrize("node, want, config, replace, reconfigure", [
    (dict(), WANT, CONFIG, (), ()),  # as the file says: nothing
    (dict(cpus=4), WANT, CONFIG, (), ("cpus 4 → 2",)),
    (dict(memory_mb=4096), WANT, CONFIG, (), ("memory 4096 → 2048 MB",)),
    (dict(), WANT, EDITED, ("config changed (users, write_files)",), ()),
    (dict(networks=("dvportgroup-9",)), WANT, CONFIG, ("network DC0_DVPG0 → VM Network",), ()),
    (dict(datastores=("datastore-2",)), WANT, CONFIG, ("datastore LocalDS_1 → LocalDS_0",), ()),
    # vsphere.datastores: placement spreads nodes over them, so any of them is where the file wants a node.
    (dict(datastores=("datastore-2",)), Desired("flatcar", None, 2, 2048, datastores=("datastore-1", "datastore-2")),
     CONFIG, (), ()),
    (dict(version="4593.2.4"), Desired("flatcar", "4593.2.5", 2, 2048), CONFIG, ("image 4593.2.4 → 4593.2.5",), ()),
    (dict(version="4593.2.6"), Desired("flatcar", "4593.2.5", 2, 2048), CONFIG, (), ()),  # never a downgrade
    (dict(cpus=4, networks=("dvportgroup-9",)), WANT, EDITED,
     ("config changed (users, write_files)", "network DC0_DVPG0 → VM Network"), ("cpus 4 → 2",)),
    (dict(cpus=None, networks=(), datastores=()), WANT, CONFIG, (), ()),  # not reported by vCenter: not compared
])
def test_drift_names_every_field_that_differs(node, want, config, replace, reconfigure):
    deployed = _vm(_config(), **node)
    found = drift(deployed, _config(config), want)
    assert (found.replace, found.reconfigure) == (replace, reconfigure)
    assert found.action == ("replace" if replace else "reconfigure" if reconfigure else None)


def test_a_config_changed_under_coreos_names_the_subsection_and_an_old_node_says_config_changed():
    before = _config()
    after = _config(CONFIG.replace("0.0.0.0:2379", "0.0.0.0:4001"))
    assert changed_sections(sections_mark(before), sections(after)) == ["coreos.etcd2"]
    old = _vm(before)
    del old.extra[MARK_SECTIONS]  # deployed before the sections mark existed
    assert drift(old, after, WANT).replace == ("config changed",)
    # A mangled mark reads as "everything changed", never as an error.
    assert changed_sections("garbage", {"users": "1"}) == ["users"]


def test_deploy_plans_replace_and_reconfigure_with_reasons_and_starts_a_stopped_node():
    configs = [_config(name=f"lab-0{i}") for i in (1, 2, 3)]
    nodes = {"lab-01": _vm(configs[0], cpus=4),
             "lab-02": _vm(configs[1], power="poweredOff"),
             "lab-03": _vm(_config(EDITED, "lab-03"))}
    planned = plan.plan_deploy(configs, Inventory("lab", nodes), WANT)
    assert planned.steps() == [("lab-01", "reconfigure", ("cpus 4 → 2",)), ("lab-02", "start", ("powered off",)),
                               ("lab-03", "replace", ("config changed (users, write_files)",))]
    assert [c.name for c in planned.changes] == ["lab-01", "lab-03"] and planned.replaces
    assert not plan.plan_deploy(configs[:1], Inventory("lab", {"lab-01": _vm(configs[0])}), WANT).steps()[0].reasons


@pytest.mark.parametrize("count, file_count, flag, text", [
    (3, 3, False, "3 nodes (count in the cluster file)"),
    (3, 3, True, "3 nodes (--count, as the cluster file says)"),
    (5, 3, True, "5 nodes (--count, a one-off: the cluster file says 3, and a later run without --count"
                 " converges back to that)"),
])
def test_the_plan_says_where_the_count_comes_from(count, file_count, flag, text):
    assert str(plan.CountSource(count, file_count, flag)) == text


def test_the_planners_import_no_pyvmomi():
    code = ("import sys, vmcoreos.cluster.plan, vmcoreos.cluster.desired, vmcoreos.cluster.inventory;"
            " print(sorted(m for m in sys.modules if m.startswith('pyVmomi')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("version, ova, pinned", [
    ("current", None, None),  # a channel's newest: rebuild's to roll onto, not deploy's
    ("4593.2.5", None, "4593.2.5"),  # pinned in the cluster file: deploy holds nodes to it
    ("4593.2.5", "/srv/flatcar.ova", None),  # a local OVA's build is known only once it is read
])
def test_deploy_compares_the_image_only_where_the_cluster_file_pins_it(version, ova, pinned):
    from types import SimpleNamespace

    from vmcoreos.cluster.desired import pinned_version

    assert pinned_version(SimpleNamespace(image=SimpleNamespace(version=version, ova=ova))) == pinned


def test_a_new_discovery_token_or_a_larger_count_is_not_config_drift(tmp_path):
    """Bootstrap-only membership (the peer list, a --discovery-etcd token) is left out of the comparison."""
    from dataclasses import replace as with_

    from vmcoreos.guest import compose, nodeconfig
    from vmcoreos.guest.sections import changed_sections
    from vmcoreos.clusterfile import load_cluster_file

    node = tmp_path / "node.json"
    node.write_text('{"ignition": {"version": "3.3.0"}}')
    cluster = tmp_path / "c.yaml"
    cluster.write_text("cluster: lab\ncount: 3\nimage: {distro: flatcar}\nnode:\n  config: node.json\n"
                       "  network: {mode: dhcp}\netcd: {bootstrap: discovery, discovery: 'http://127.0.0.1:1/v2/keys/a'}\n"
                       "vsphere: {datacenter: DC0}\n")
    settings = load_cluster_file(cluster)
    user = nodeconfig.load_user_config(settings)
    first = compose.node_configs(settings, user, count=3)[0]
    again = with_(settings, etcd=with_(settings.etcd, discovery="http://127.0.0.1:1/v2/keys/b"))
    later = compose.node_configs(again, user, count=4)[0]
    assert first.digest != later.digest  # the rendered configs do differ...
    assert changed_sections(";".join(f"{k}={v}" for k, v in first.sections), later.sections) == []  # ...not in what counts
    edited = with_(settings, node=with_(settings.node, cpus=4))
    assert compose.node_configs(edited, user, count=3)[0].sections == first.sections  # hardware is not config
