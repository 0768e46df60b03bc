"""Plans and runs deploy, scale, rebuild, destroy and status from the pieces.

The order of steps is the point of this module:
* everything checkable offline (settings, node configs, the image's
  signature) is checked before the first change in vSphere;
* nodes that exist and are ours are left alone, so deploy twice = deploy once;
* membership changes go one node at a time and never leave etcd without
  quorum: `member remove` before a VM goes, `member add` before one comes;
* every step is idempotent, so a run that stops anywhere is resumed by the next.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import requests
import tenacity
from pyVmomi import vim

from vmcoreos import etcd, locks, state
from vmcoreos.errors import EtcdError, LockedError, NotJoinedError, VSphereError
from vmcoreos.guest import guestinfo, nodeconfig
from vmcoreos.guest.nodeconfig import NodeConfig
from vmcoreos.images import source
from vmcoreos.reporting import QuietReporter, Reporter
from vmcoreos.settings import ClusterSettings, Connection
from vmcoreos.vsphere import importer, inventory, vms
from vmcoreos.vsphere.session import Session, connect
from vmcoreos.vsphere.waits import Watch, wait_task


@dataclass
class NodeStatus:
    name: str
    action: str = ""  # created / unchanged / started / removed / rebuilt
    power: str = ""
    tools: str | None = None
    ip: str | None = None
    image_version: str | None = None
    member_id: str | None = None
    healthy: bool = False
    leader: bool = False
    drift: bool = False
    stage: str = "planned"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunResult:
    cluster: str
    nodes: list[NodeStatus]
    template: str | None = None
    image_version: str | None = None
    uploaded: bool = False
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["nodes"] = [n.as_dict() for n in self.nodes]
        return data

    @property
    def changed(self) -> bool:
        return bool(self.created or self.removed or self.rebuilt or self.uploaded)


def template_name(settings: ClusterSettings, image: source.VerifiedImage) -> str:
    return f"{settings.name}-template-{image.distro}-{image.version}"


def prepare(settings: ClusterSettings, count: int) -> list[NodeConfig]:
    """Everything checkable offline, before any vSphere call."""
    user = nodeconfig.load_user_config(settings)
    return nodeconfig.plan(settings, user, count=count)


def resolve_image(settings: ClusterSettings, reporter: Reporter, nodes=()) -> source.VerifiedImage:
    """The verified image; a channel's "current" may not be older than what `nodes` (VmInfo) already run."""
    from vmcoreos.images.cache import default_cache_dir
    from vmcoreos.images.fetch import obtain
    from vmcoreos.images.releases import version_key

    deployed = [vm.extra.get(vms.MARK_VERSION) for vm in nodes if vm.extra.get(vms.MARK_DISTRO) == settings.image.distro]
    floor = max((v for v in deployed if version_key(v) is not None), key=version_key, default=None)
    return obtain(settings.image, cache_dir=default_cache_dir(), reporter=reporter, floor=floor)


def node_index(cluster: str, name: str) -> int | None:
    match = re.fullmatch(re.escape(cluster) + r"-(\d{2,})", name)
    return int(match.group(1)) if match else None


KEPT = "the VMs are kept for inspection (see `vmcoreos status`; deploy --rollback removes them instead)"


def quorum(size: int) -> int:
    return size // 2 + 1


class Cluster:
    """One cluster: the cluster file's intent, and the VMs and etcd members that exist."""

    lock: etcd.EtcdLock | None = None  # set by _etcd_lock while the run holds it

    def __init__(
        self, settings: ClusterSettings, session: Session, reporter: Reporter, *, parallel: int = 4,
        adopt_template: bool = False,
    ):
        self.settings = settings
        self.adopt_template = adopt_template  # --adopt-template: the operator vouches for an unrecorded template
        self.session = session
        self.reporter = reporter
        self.parallel = max(1, parallel)
        self.placement = inventory.locate(session, settings.vsphere)
        self._user = None
        self.linked_snapshot = None  # set by template() when node.linked_clone is on
        etcd.use_ca(settings.etcd.ca_file)

    # -- what exists ----------------------------------------------------------

    def vms(self) -> tuple[dict[str, vms.VmInfo], list[vms.VmInfo]]:
        """(nodes by name, templates) of this cluster: VMs named like ours AND carrying our mark."""
        nodes, templates, _ = self.inventory()
        return nodes, templates

    def inventory(self) -> tuple[dict[str, vms.VmInfo], list[vms.VmInfo], list[vms.VmInfo]]:
        """Ours (nodes, templates) and foreign: VMs named like our nodes without our mark."""
        name = self.settings.name
        pattern = re.compile(re.escape(name) + r"-(\d{2,}|template-.+)")
        found = vms.list_vms(self.session, self.placement, predicate=lambda n: bool(pattern.fullmatch(n)))
        nodes, templates, foreign = {}, [], []
        for vm in found:
            if not vm.owned_by(name):
                foreign.append(vm)
            elif vm.template or vm.role == "template":
                templates.append(vm)
            elif node_index(name, vm.name) is not None:
                nodes[vm.name] = vm
        return nodes, templates, foreign

    def user_config(self):
        if self._user is None:
            self._user = nodeconfig.load_user_config(self.settings)
        return self._user

    def endpoint(self, vm: vms.VmInfo) -> str | None:
        return self.endpoint_at(vm.ip) if vm.ip else None

    def endpoint_at(self, ip: str) -> str:
        etcd_settings = self.settings.etcd
        return f"{etcd_settings.scheme}://{ip}:{etcd_settings.client_port}"

    def live_view(self, nodes: dict[str, vms.VmInfo], exclude: set[str] = frozenset()) -> tuple[str, etcd.ClusterView] | None:
        """The member list from the first node that answers, skipping `exclude`.

        A list that answers but names members or URLs vmcoreos never made stops
        the run (EtcdError) instead of being skipped: it is never used.
        """
        for name in sorted(nodes):
            vm = nodes[name]
            if name in exclude or vm.power != "poweredOn" or not vm.ip:
                continue
            endpoint = self.endpoint(vm)
            try:
                view = etcd.member_list(endpoint)
            except Exception:
                continue
            etcd.check_view(view, self.settings.name, endpoint)
            if self.lock is not None:
                self.lock.follow([u for m in view.members for u in m.client_urls])
            return endpoint, view
        return None

    def expected_cluster_id(self, nodes: dict[str, vms.VmInfo]) -> str | None:
        """The etcd cluster ID the nodes' marks record; None for nodes deployed before the mark existed."""
        ids = {vm.extra[vms.MARK_ETCD_CLUSTER_ID] for vm in nodes.values() if vm.extra.get(vms.MARK_ETCD_CLUSTER_ID)}
        if len(ids) > 1:
            raise EtcdError(
                f"nodes of {self.settings.name!r} record different etcd cluster IDs ({', '.join(sorted(ids))});"
                f" fix the {vms.MARK_ETCD_CLUSTER_ID} extraConfig value of the odd ones before any change"
            )
        return next(iter(ids), None)

    def before_change(self, endpoint: str, view: etcd.ClusterView, nodes: dict[str, vms.VmInfo]) -> None:
        """Checks before every member add/remove and leader move: our lock, our etcd, our members."""
        if self.lock is not None:
            self.lock.check()
        etcd.check_view(view, self.settings.name, endpoint)
        expected = self.expected_cluster_id(nodes)
        if expected is not None and view.cluster_id != expected:
            raise EtcdError(
                f"etcd at {endpoint} reports cluster ID {view.cluster_id or 'none'}, but the nodes record"
                f" {expected}; it is another etcd cluster (a stale address?), so no member is changed there."
                " Check the nodes' addresses with `vmcoreos status`"
            )

    def after_join(self, name: str, cluster_id: str | None) -> None:
        """Once a node is a healthy member: record the cluster ID, and take the Ignition config out of guestinfo.

        Ignition reads its config on the first boot only; left in guestinfo it is
        readable by every vCenter user who can read the VM's configuration.
        Ignition >= 2.14 clears it itself unless masked, so read before writing.
        The config digest mark stays, so re-runs still see the node as up to date.
        """
        vm = self.vms()[0].get(name)
        if vm is None:
            return
        changes = {}
        if cluster_id and not vm.extra.get(vms.MARK_ETCD_CLUSTER_ID):
            changes[vms.MARK_ETCD_CLUSTER_ID] = cluster_id
        if vm.extra.get(guestinfo.IGNITION_DATA, "") not in ("", guestinfo.IGNITION_CLEARED):
            changes[guestinfo.IGNITION_DATA] = guestinfo.IGNITION_CLEARED
            changes[guestinfo.IGNITION_DATA + ".encoding"] = "base64"
            self.reporter.event(f"{name}: joined; clearing {guestinfo.IGNITION_DATA} (Ignition has applied it)")
        if changes:
            vms.reconfigure(self.session, vm, changes, self.settings.name)

    def record_joined(self, names: list[str]) -> None:
        """after_join for every named node, with the cluster ID etcd reports now."""
        nodes = self.vms()[0]
        live = self.live_view(nodes)
        cluster_id = live[1].cluster_id if live else None
        expected = self.expected_cluster_id(nodes)
        if expected is not None and cluster_id not in (None, expected):
            raise EtcdError(
                f"etcd at {live[0]} reports cluster ID {cluster_id}, but the nodes record {expected}; check the"
                " nodes' addresses with `vmcoreos status`"
            )
        for name in names:
            self.after_join(name, cluster_id)

    def health(self, view: etcd.ClusterView) -> dict[str, bool]:
        """member id -> healthy, asking each member on its own client URL."""
        out = {}
        for m in view.members:
            out[m.id] = bool(m.client_urls) and any(etcd.healthy(u) for u in m.client_urls)
        return out

    # -- image and template -----------------------------------------------------

    def template(self, image: source.VerifiedImage, templates: list[vms.VmInfo]) -> tuple[vms.VmInfo, bool]:
        session, settings = self.session, self.settings
        name = template_name(settings, image)
        for vm in templates:
            if vm.name == name and vm.template and vm.extra.get(vms.MARK_SHA512) == image.sha512:
                self._check_imported_here(vm)
                self.reporter.event(f"template {name} already imported")
                self._linked_base(vm)
                return vm, False
        for vm in vms.list_vms(session, self.placement, {name}):
            vms.require_owned(vm, settings.name, "use as template")
            if not vm.template:
                # A template whose import was cut short: ours, unfinished, safe to replace.
                self.reporter.event(f"removing unfinished template {name}")
                vms.destroy(session, vm, settings.name)
            else:
                raise VSphereError(
                    f"template {name!r} exists but holds a different image; delete it with"
                    " `vmcoreos destroy --templates` first"
                )
        self.reporter.event(f"importing {image.path.name} as template {name}")
        extra = vms.marks(settings.name, "template", distro=image.distro, version=image.version, sha512=image.sha512)
        with image.archive() as archive:
            ref = importer.import_ova(
                session,
                archive,
                self.placement,
                name,
                extra,
                on_bytes=lambda done, total: self.reporter.transfer(f"uploading {image.path.name}", done, total),
                on_retry=self.reporter.event,
            )
        try:
            # Snapshot while it is still a VM: vSphere takes none of a template.
            self._linked_base(vms.VmInfo(ref, name, False, "poweredOff", None, None, extra))
            ref.MarkAsTemplate()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                wait_task(session, ref.Destroy_Task(), what=f"removing {name}")
            if isinstance(exc, VSphereError):
                raise
            if isinstance(exc, Exception):
                raise VSphereError(f"could not mark {name} as a template: {getattr(exc, 'msg', exc)}") from None
            raise
        made = vms.refresh(session, vms.VmInfo(ref, name, True, "poweredOff", None, None))
        state.remember_template(
            session.vcenter_id, name, state.TemplateRecord(made.instance_uuid or "", made.moref, image.sha512)
        )
        return made, True

    def _check_imported_here(self, vm: vms.VmInfo) -> None:
        """Clone only from a template this host imported: a mark alone can be forged by anyone who may edit VMs."""
        record = state.template_record(self.session.vcenter_id, vm.name)
        if record is not None and (record.instance_uuid, record.moref, record.sha512) == (
            vm.instance_uuid or "", vm.moref, vm.extra.get(vms.MARK_SHA512)
        ):
            return
        if self.adopt_template:
            self.reporter.event(f"adopting template {vm.name} ({vm.moref}) on your word (--adopt-template)")
            state.remember_template(
                self.session.vcenter_id, vm.name,
                state.TemplateRecord(vm.instance_uuid or "", vm.moref, vm.extra.get(vms.MARK_SHA512) or ""),
            )
            return
        why = "this host has no record of importing it" if record is None else "it is not the one this host imported"
        raise VSphereError(
            f"template {vm.name!r} ({vm.moref}) carries cluster {self.settings.name!r}'s marks but {why}, so its disk"
            " is not trusted; if it was planted, delete that template in vCenter and run again to import a verified"
            " copy; if you know where it came from (an older vmcoreos, another host), run again with --adopt-template"
        )

    def _linked_base(self, template: vms.VmInfo) -> None:
        """With node.linked_clone, the template snapshot the clones' child disks grow from."""
        if self.settings.node.linked_clone:
            self.linked_snapshot = vms.snapshot_linked_base(
                self.session, template, self.placement, self.settings.name
            )

    def check_room(self, image: source.VerifiedImage, templates: list[vms.VmInfo], new_nodes: int) -> None:
        """Refuse before the first upload when the datastore cannot hold the disks.

        Disks are thin, but a thin disk grows to its capacity, so full clones
        are counted at capacity; linked clones share the template's disk.
        """
        with image.archive() as archive:
            per_disk = archive.disk_capacity()
        have_template = any(
            t.name == template_name(self.settings, image) and t.extra.get(vms.MARK_SHA512) == image.sha512
            for t in templates
        )
        disks = (0 if have_template else 1) + (0 if self.settings.node.linked_clone else new_nodes)
        need = disks * per_disk
        free = inventory.free_space(self.session, self.placement.datastore)
        if need > free:
            gib = 1 << 30
            raise VSphereError(
                f"datastore {self.settings.vsphere.datastore or 'chosen'} has {free / gib:.1f} GiB free but {disks}"
                f" disk(s) of up to {per_disk / gib:.1f} GiB need {need / gib:.1f} GiB; free space, pick another"
                " datastore (vsphere.datastore), lower the count, or use node.linked_clone: true"
            )

    # -- creating nodes ---------------------------------------------------------

    def clone(self, template: vms.VmInfo, image: source.VerifiedImage, config: NodeConfig, digest: str) -> None:
        settings = self.settings
        extra = dict(config.guestinfo)
        extra.update(vms.marks(settings.name, "node", distro=image.distro, version=image.version, digest=digest))
        spec = vms.clone_spec(
            self.placement, cpus=settings.node.cpus, memory_mb=settings.node.memory_mb, extra=extra,
            linked_snapshot=self.linked_snapshot,
        )
        linked = " (linked clone)" if self.linked_snapshot is not None else ""
        self.reporter.event(f"{config.name}: cloning from {template.name}{linked}")
        ref = vms.clone(self.session, template, config.name, self.placement, spec, cluster=settings.name)
        vm = vms.refresh(self.session, vms.VmInfo(ref, config.name, False, "", None, None))
        # Some vCenters (and the simulator) create the clone powered off despite spec.powerOn.
        vms.power_on(self.session, vm)

    @property
    def dhcp(self) -> bool:
        return self.settings.node.network.mode == "dhcp"

    def bootstrap(self, template, image, configs: list[NodeConfig], deadline: float) -> None:
        """A new cluster: every node at once, all with initial_cluster_state new."""
        self._parallel(self.clone, [(template, image, c, c.digest) for c in configs])
        if self.dhcp:
            # First boot done without etcd; now each node's leased address goes into every config.
            names = [c.name for c in configs]
            leases = {n: st.ip for n, st in self.wait_guests(names, deadline).items()}
            count = max(c.index for c in configs)
            final = nodeconfig.plan(self.settings, self.user_config(), count=count, only=names, leases=leases)
            digests = {c.name: c.digest for c in configs}
            self._parallel(self.second_boot, [(f, digests[f.name]) for f in final])

    def _parallel(self, fn, calls: list[tuple]) -> None:
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = [pool.submit(fn, *args) for args in calls]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            raise failed[0]

    def second_boot(self, config: NodeConfig, digest: str) -> None:
        """A DHCP node gets its membership for the address it leased, and boots again to apply it.

        coreos-cloudinit reads guestinfo on every boot, so the new keys take effect
        on the next one; the node is fresh, so a power cycle loses nothing.
        """
        vm = self.vms()[0][config.name]
        extra = dict(config.guestinfo)
        extra[vms.MARK_DIGEST] = digest
        self.reporter.event(f"{config.name}: leased {config.ip}; writing its membership and booting it again")
        vms.reconfigure(self.session, vm, extra, self.settings.name)
        vms.power_off(self.session, vm, self.settings.name)
        vms.power_on(self.session, vms.refresh(self.session, vm))

    def join(self, template, image, config: NodeConfig, endpoint: str, deadline: float) -> NodeStatus:
        """Add one node to a running cluster: member add first, then boot it with state existing."""
        view = etcd.check_view(etcd.member_list(endpoint), self.settings.name, endpoint)
        peers = {m.name: m.peer_urls[0] for m in view.members if m.name and m.peer_urls}
        peers.pop(config.name, None)
        count = max([config.index] + [node_index(self.settings.name, n) or 0 for n in peers])
        leases = None
        if self.dhcp:
            # First boot without etcd, to learn the address the member must be added with.
            self.clone(template, image, config, config.digest)
            leases = {config.name: self.wait_guests([config.name], deadline)[config.name].ip}
        joined = nodeconfig.plan(
            self.settings, self.user_config(), count=count, only=[config.name], existing_members=peers, leases=leases
        )[0]
        peer_url = f"http://{joined.ip}:{self.settings.etcd.peer_port}"
        added = None
        if not any(peer_url in m.peer_urls for m in view.members):
            self.before_change(endpoint, view, self.vms()[0])
            self.reporter.event(f"{config.name}: etcd member add {peer_url}")
            added = etcd.member_add(endpoint, peer_url)
        try:
            if self.dhcp:
                self.second_boot(joined, config.digest)
            else:
                # The mark records the config the cluster file renders, not this one-off join variant.
                self.clone(template, image, joined, config.digest)
            return self.wait_joined([config], deadline)[config.name]
        except (KeyboardInterrupt, SystemExit):
            # Interrupted half way: take back the VM and the member we added, so the next run starts
            # clean. A node that merely failed to join is kept for inspection instead.
            if added is not None:
                with contextlib.suppress(Exception):
                    self._rollback_join(config, endpoint, added)
            raise

    def _rollback_join(self, config: NodeConfig, endpoint: str, added: etcd.Member) -> None:
        vm = self.vms()[0].get(config.name)
        if vm is not None:
            vms.destroy(self.session, vm, self.settings.name)
        etcd.member_remove(endpoint, added.id)

    # -- waiting ----------------------------------------------------------------

    def wait_joined(self, configs: list[NodeConfig], deadline: float) -> dict[str, NodeStatus]:
        """Guest tools and IP first (one PropertyCollector wait), then each node's etcd, polled in parallel."""
        status = self.wait_guests([c.name for c in configs], deadline)

        def member(st: NodeStatus) -> bool:
            # Polled with a short backoff: etcd only answers once the node is up, and a node
            # noticed late costs the whole deploy that delay.
            retrying = tenacity.Retrying(
                wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
                stop=tenacity.stop_after_delay(max(0.0, deadline - time.monotonic())),
                retry=tenacity.retry_if_result(lambda ok: not ok),
            )
            try:
                retrying(self._member_ready, self.endpoint_at(st.ip), st)
            except tenacity.RetryError:
                return False
            self.reporter.event(f"{st.name}: healthy etcd member {st.member_id}")
            return True

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(status)))) as pool:
            joined = list(pool.map(member, [status[n] for n in sorted(status)]))
        if not all(joined):
            self._not_joined(status)
        return status

    def wait_guests(self, names: list[str], deadline: float) -> dict[str, NodeStatus]:
        """Until guest tools run and report an IP on every named node (one PropertyCollector filter)."""
        status = {n: NodeStatus(n) for n in names}
        nodes, _ = self.vms()
        refs = {nodes[n].ref: n for n in names if n in nodes}
        props = ["runtime.powerState", "guest.toolsRunningStatus", "guest.ipAddress"]

        def ready(values):
            for ref, name in refs.items():
                v = values.get(ref, {})
                st = status[name]
                st.power = v.get("runtime.powerState", st.power)
                st.tools = v.get("guest.toolsRunningStatus", st.tools)
                st.ip = v.get("guest.ipAddress") or st.ip
                st.stage = "tools running" if st.tools == "guestToolsRunning" else (
                    "powered on" if st.power == "poweredOn" else st.stage
                )
                if st.ip and st.tools == "guestToolsRunning":
                    st.stage = "has IP"
            return all(status[n].stage == "has IP" for n in refs.values())

        self.reporter.event("waiting for guest tools and IP addresses of " + ", ".join(sorted(status)))
        with Watch(self.session, list(refs), props, vim.VirtualMachine) as watch:
            try:
                watch.until(ready, deadline, "guests")
            except TimeoutError:
                self._not_joined(status)
        return status

    @staticmethod
    def _member_ready(endpoint: str, st: NodeStatus) -> bool:
        try:
            view = etcd.member_list(endpoint)
        except Exception:  # not up yet: refused, reset, or answering garbage while it starts
            return False
        st.stage = "etcd reachable"
        member = view.by_name(st.name)
        if member is None or not member.client_urls:
            return False
        st.member_id = member.id
        st.stage = "member listed"
        if not etcd.healthy(endpoint):
            return False
        st.healthy = True
        st.leader = view.leader == member.id
        st.stage = "healthy"
        return True

    def _not_joined(self, status: dict[str, NodeStatus]) -> None:
        late = [s for s in status.values() if not s.healthy]
        detail = ", ".join(f"{s.name} reached '{s.stage}'" for s in late)
        hint = ""
        if self.settings.image.distro == "flatcar" and any(s.stage == "has IP" for s in late):
            # etcd-member.service pulls etcd's container image at first boot; without the registry it never starts.
            image = self.settings.etcd.image or "quay.io/coreos/etcd (the default)"
            hint = (f" first check that the nodes can pull the etcd image {image}: `journalctl -u etcd-member` on a"
                    " node shows the pull; set etcd.image in the cluster file to a registry mirror if they cannot;")
        raise NotJoinedError(
            f"nodes did not join etcd within {self.settings.wait_timeout:.0f}s: {detail};{hint}"
            f" {KEPT}",
        )

    # -- removing nodes ---------------------------------------------------------

    def remove_node(self, vm: vms.VmInfo, nodes: dict[str, vms.VmInfo]) -> None:
        """member remove first (keeping quorum), then power off and delete the VM."""
        vms.require_owned(vm, self.settings.name, "remove")
        live = self.live_view(nodes, exclude={vm.name})
        if live is not None:
            endpoint, view = live
            member = view.by_name(vm.name) or next(
                (m for m in view.members if any(etcd.same_host(u, vm.ip) for u in m.peer_urls)), None
            )
            if member is not None:
                self.before_change(endpoint, view, nodes)
                health = self.health(view)
                size = len(view.members) - 1
                healthy_after = sum(ok for mid, ok in health.items() if mid != member.id)
                if size and healthy_after < quorum(size):
                    raise EtcdError(
                        f"removing {vm.name} would leave {healthy_after} healthy of {size} members, below quorum"
                        f" ({quorum(size)}); repair the unhealthy members first (`vmcoreos status`)"
                    )
                if view.leader == member.id and size:
                    self._move_leader(view, member, health)
                self.reporter.event(f"{vm.name}: etcd member remove {member.id}")
                etcd.member_remove(endpoint, member.id)
        self.reporter.event(f"{vm.name}: powering off and deleting")
        vms.destroy(self.session, vm, self.settings.name)

    def _move_leader(self, view: etcd.ClusterView, leader: etcd.Member, health: dict[str, bool]) -> None:
        target = next((m for m in view.members if m.id != leader.id and health.get(m.id)), None)
        if target is None or not leader.client_urls:
            return
        if self.lock is not None:
            self.lock.check()
        self.reporter.event(f"moving etcd leadership from {leader.name} to {target.name}")
        with contextlib.suppress(Exception):
            etcd.move_leader(leader.client_urls[0], target.id)


# -- the operations the CLI runs ---------------------------------------------------


@contextlib.contextmanager
def _session(conn: Connection) -> Iterator[Session]:
    session = connect(conn)
    try:
        yield session
    finally:
        session.close()


@contextlib.contextmanager
def _etcd_lock(cluster: Cluster, nodes: dict[str, vms.VmInfo]) -> Iterator[None]:
    """The etcd lease lock, once there is an etcd to hold it (the host lock is taken before).

    It fails closed: an etcd that answers but cannot grant the lock stops the
    run. Only an etcd without the v3 lease API at all (v2-only, answering 404)
    leaves the host lock as the only protection.
    """
    live = cluster.live_view(nodes)
    if live is None:
        yield
        return
    endpoints = [live[0]] + [u for m in live[1].members for u in m.client_urls]
    lock = etcd.EtcdLock(endpoints, cluster.settings.name, f"{socket.gethostname()}:{os.getpid()}")
    try:
        got = lock.acquire()
    except FileNotFoundError:
        got = None
        cluster.reporter.event("etcd has no v3 lease API; only this host's lock guards the run")
    except (EtcdError, requests.RequestException, ValueError, KeyError) as exc:
        detail = exc.message if isinstance(exc, EtcdError) else type(exc).__name__
        raise EtcdError(
            f"could not take cluster {cluster.settings.name!r}'s etcd lock at {live[0]} ({detail}); nothing was"
            " changed. Check etcd with `vmcoreos status` and run again"
        ) from None
    if got is False:
        holder = None
        with contextlib.suppress(Exception):
            holder = lock.holder_of()
        # The holder comes from etcd: quoted, so it cannot forge output lines.
        raise LockedError(
            f"another vmcoreos run ({repr(holder) if holder else 'unknown'}) holds cluster {cluster.settings.name!r}'s etcd lock;"
            " it expires a minute after that run dies"
        )
    cluster.lock = lock if got else None
    try:
        yield
    finally:
        cluster.lock = None
        if got:
            lock.release()


def deploy(
    settings: ClusterSettings,
    conn: Connection,
    *,
    count: int,
    reporter: Reporter,
    parallel: int = 4,
    rollback: bool = False,
    adopt_template: bool = False,
) -> RunResult:
    configs = prepare(settings, count)
    with locks.host_lock(settings.name), _session(conn) as session:
        cluster = Cluster(settings, session, reporter, parallel=parallel, adopt_template=adopt_template)
        return _converge(cluster, configs, rollback=rollback)


def _roll_back(cluster: Cluster, names: list[str]) -> None:
    """--rollback: take out the nodes this run created, membership first, so a failed deploy leaves nothing."""
    cluster.reporter.event(f"rolling back: removing {', '.join(names)}")
    for name in sorted(names, key=lambda n: -(node_index(cluster.settings.name, n) or 0)):
        nodes = cluster.vms()[0]
        if name in nodes:
            with contextlib.suppress(Exception):
                cluster.remove_node(nodes[name], nodes)


def _converge(cluster: Cluster, configs: list[NodeConfig], *, rollback: bool = False) -> RunResult:
    settings, session = cluster.settings, cluster.session
    nodes, templates, foreign = cluster.inventory()
    for vm in foreign:
        if vm.name in {c.name for c in configs}:
            vms.require_owned(vm, settings.name, "use")
    result = RunResult(settings.name, [])
    wanted = {c.name for c in configs}
    extra = sorted((n for n in nodes if n not in wanted), key=lambda n: -(node_index(settings.name, n) or 0))
    missing = [c for c in configs if c.name not in nodes]
    deadline = time.monotonic() + settings.wait_timeout
    with _etcd_lock(cluster, nodes):
        for name in extra:
            cluster.remove_node(nodes.pop(name), nodes)
            result.removed.append(name)
        for name in sorted(n for n in nodes if n in wanted):
            if nodes[name].power != "poweredOn":
                cluster.reporter.event(f"{name}: powering on")
                vms.power_on(session, nodes[name])
        try:
            if missing:
                image = resolve_image(settings, cluster.reporter, nodes.values())
                result.image_version = image.version
                cluster.check_room(image, templates, len(missing))
                template, result.uploaded = cluster.template(image, templates)
                result.template = template.name
                live = cluster.live_view(nodes)
                result.created = [c.name for c in missing]
                if live is None and not nodes:
                    cluster.bootstrap(template, image, missing, deadline)
                elif live is None:
                    raise EtcdError(
                        f"nodes {', '.join(sorted(nodes))} exist but none answers etcd, so new nodes cannot join;"
                        " check them with `vmcoreos status`"
                    )
                else:
                    for config in missing:
                        cluster.join(template, image, config, live[0], deadline)
                        live = cluster.live_view(cluster.vms()[0]) or live
            status = cluster.wait_joined(configs, deadline)
            cluster.record_joined([c.name for c in configs])
        except NotJoinedError as exc:
            if not (rollback and result.created):
                raise
            _roll_back(cluster, result.created)
            raise NotJoinedError(exc.message.replace(KEPT, "the nodes this run created were removed (--rollback)"))
        except BaseException:
            if rollback and result.created:
                _roll_back(cluster, result.created)
            raise
    created = set(result.created)
    for config in configs:
        st = status[config.name]
        st.action = "created" if config.name in created else "unchanged"
        st.drift = False
        result.nodes.append(st)
    return result


def rebuild(
    settings: ClusterSettings,
    conn: Connection,
    *,
    reporter: Reporter,
    force: bool = False,
    to_version: str | None = None,
    parallel: int = 4,
    adopt_template: bool = False,
) -> RunResult:
    """Replace nodes one at a time with the channel's newest release (or to_version)."""
    from dataclasses import replace

    configs = prepare(settings, settings.count)
    if to_version is not None:
        settings = replace(settings, image=replace(settings.image, version=to_version))
    with locks.host_lock(settings.name), _session(conn) as session:
        cluster = Cluster(settings, session, reporter, parallel=parallel, adopt_template=adopt_template)
        nodes, templates = cluster.vms()
        result = RunResult(settings.name, [])
        if not nodes:
            raise VSphereError(f"cluster {settings.name!r} has no nodes to rebuild; run `vmcoreos deploy` first")
        image = resolve_image(settings, reporter, nodes.values())
        result.image_version = image.version
        pending = [c for c in configs if c.name not in nodes or force or _runs_older(nodes[c.name], image)]
        if force and not pending:
            pending = list(configs)
        if not pending:
            result.message = f"all nodes run {image.version}; nothing to do"
            return result
        deadline_per_node = settings.wait_timeout
        with _etcd_lock(cluster, nodes):
            template, result.uploaded = cluster.template(image, templates)
            result.template = template.name
            # Resuming: nodes an interrupted run already replaced must be healthy before the roll goes on.
            done = [c for c in configs if c.name in nodes and c not in pending]
            if done:
                cluster.wait_joined(done, time.monotonic() + deadline_per_node)
            for config in _roll_order(cluster, nodes, pending):
                nodes = cluster.vms()[0]
                vm = nodes.get(config.name)
                if vm is not None and not force and not _runs_older(vm, image):
                    continue  # done by an earlier, interrupted run
                peer = f"http://{config.ip}:{settings.etcd.peer_port}" if config.ip else None
                _check_healthy(cluster, nodes, skip=config.name, skip_peer=peer)
                if vm is not None:
                    cluster.remove_node(vm, nodes)
                    nodes.pop(config.name)
                live = cluster.live_view(nodes)
                if live is None:
                    raise EtcdError(f"no etcd member answers after removing {config.name}; the roll stopped here")
                cluster.reporter.event(f"{config.name}: creating on {image.version}")
                cluster.join(template, image, config, live[0], time.monotonic() + deadline_per_node)
                result.rebuilt.append(config.name)
            status = cluster.wait_joined(configs, time.monotonic() + settings.wait_timeout)
            cluster.record_joined([c.name for c in configs])
        result.nodes = [status[c.name] for c in configs]
        for st in result.nodes:
            st.action = "rebuilt" if st.name in result.rebuilt else "unchanged"
        return result


_RELEASE = re.compile(r"\d+(\.\d+)*")


def _runs_older(vm: vms.VmInfo, image: source.VerifiedImage) -> bool:
    """True when the node should move to the target image.

    Release versions (4593.2.5) only move forward, so a channel that briefly
    serves an older release never triggers a downgrade; local builds have no
    order, so any different build counts.
    """
    current = vm.extra.get(vms.MARK_VERSION)
    if current is None:
        return True
    if current == image.version:
        return False
    if vm.extra.get(vms.MARK_DISTRO) != image.distro:
        return True
    if _RELEASE.fullmatch(current) and _RELEASE.fullmatch(image.version):
        return tuple(map(int, current.split("."))) < tuple(map(int, image.version.split(".")))
    return True


def _roll_order(cluster: Cluster, nodes: dict[str, vms.VmInfo], pending: list[NodeConfig]) -> list[NodeConfig]:
    """Missing nodes first (an interrupted run left the cluster a member short), then followers, leader last.

    Replacing followers first means one leader election for the whole roll, not one per node.
    """
    live = cluster.live_view(nodes)
    leader = None
    if live is not None:
        leader = next((m.name for m in live[1].members if m.id == live[1].leader), None)
    return sorted(pending, key=lambda c: (c.name in nodes, c.name == leader, c.index))


def _check_healthy(cluster: Cluster, nodes: dict[str, vms.VmInfo], skip: str, skip_peer: str | None = None) -> None:
    """Every member but the one about to be replaced must be healthy.

    The one being replaced may show up by name, or (added by an interrupted
    run, never started) only by its peer URL.
    """
    live = cluster.live_view(nodes, exclude={skip})
    if live is None:
        raise EtcdError("no etcd member answers; the cluster is down, so the roll stops before touching it")
    _, view = live
    health = cluster.health(view)
    sick = [
        m.name or m.id
        for m in view.members
        if not health.get(m.id) and m.name != skip and not (skip_peer and skip_peer in m.peer_urls)
    ]
    if sick:
        raise EtcdError(
            f"etcd members {', '.join(sick)} are not healthy; the roll stops before {skip} with quorum intact."
            " Repair them and run again to resume"
        )


@dataclass
class DestroyPlan:
    cluster: str
    nodes: list[vms.VmInfo]
    templates: list[vms.VmInfo]
    skipped: list[str] = field(default_factory=list)  # named like ours, not marked ours

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.nodes + self.templates]


def plan_destroy(settings: ClusterSettings, session: Session, *, templates: bool) -> DestroyPlan:
    cluster = Cluster(settings, session, QuietReporter())
    nodes, tpls, foreign = cluster.inventory()
    return DestroyPlan(
        settings.name,
        [nodes[n] for n in sorted(nodes)],
        sorted(tpls, key=lambda v: v.name) if templates else [],
        sorted(v.name for v in foreign),
    )


def destroy(session: Session, plan: DestroyPlan, *, reporter: Reporter, parallel: int = 4) -> list[str]:
    """Power off and delete every VM in the plan; each one's mark is checked again just before."""

    def one(vm: vms.VmInfo) -> str:
        fresh = vms.refresh(session, vm)
        vms.require_owned(fresh, plan.cluster, "delete")
        reporter.event(f"{fresh.name}: powering off and deleting")
        vms.destroy(session, fresh, plan.cluster)
        return fresh.name

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(one, vm) for vm in plan.nodes]
        done = [f.result() for f in futures]
        done += [f.result() for f in [pool.submit(one, vm) for vm in plan.templates]]
    return done


@contextlib.contextmanager
def session_for(settings: ClusterSettings, conn: Connection, *, lock: bool = True) -> Iterator[Session]:
    with (locks.host_lock(settings.name) if lock else contextlib.nullcontext()), _session(conn) as session:
        yield session


def status(settings: ClusterSettings, conn: Connection) -> RunResult:
    """One row per node as vSphere and etcd see it; drift compares the config digest with a fresh render."""
    configs = {c.name: c for c in prepare(settings, settings.count)}
    with _session(conn) as session:
        cluster = Cluster(settings, session, QuietReporter())
        nodes, _ = cluster.vms()
        live = cluster.live_view(nodes)
        view = live[1] if live else etcd.ClusterView([])
        health = cluster.health(view) if live else {}
        result = RunResult(settings.name, [])
        names = sorted(set(configs) | set(nodes), key=lambda n: node_index(settings.name, n) or 0)
        for name in names:
            vm = nodes.get(name)
            st = NodeStatus(name)
            if vm is None:
                st.stage = "missing"
            else:
                st.power, st.tools, st.ip = vm.power, vm.tools, vm.ip
                st.image_version = vm.extra.get(vms.MARK_VERSION)
                expected = configs.get(name)
                st.drift = expected is None or vm.extra.get(vms.MARK_DIGEST) != expected.digest
                member = view.by_name(name)
                if member is not None:
                    st.member_id = member.id
                    st.healthy = health.get(member.id, False)
                    st.leader = view.leader == member.id
                    st.stage = "healthy" if st.healthy else "unhealthy"
                else:
                    st.stage = "not a member" if vm.power == "poweredOn" else vm.power
            result.nodes.append(st)
        return result
