"""Node executors: clone, boot, join, remove. Membership changes go one node at a time, checks first."""

from __future__ import annotations

import contextlib

from vmcoreos import etcd, naming
from vmcoreos.cluster import spread
from vmcoreos.cluster.desired import sections_mark
from vmcoreos.cluster.results import NodeStatus
from vmcoreos.cluster.run import Run
from vmcoreos.cluster.template import Template
from vmcoreos.cluster.joining import join_deadline, wait_guests, wait_joined
from vmcoreos.cluster.members import settled
from vmcoreos.errors import EtcdError
from vmcoreos.guest import compose, guestinfo
from vmcoreos.guest.configvalues import IGNITION, NodeConfig
from vmcoreos.images import verified
from vmcoreos.reporting import stage
from vmcoreos.vsphere import power, vms


def _spec(run: Run, template: Template, image: verified.VerifiedImage, config: NodeConfig, marked: NodeConfig,
          nic, backing, where):
    settings = run.settings
    extra = dict(config.guestinfo)
    extra.update(vms.marks(settings.name, "node", distro=image.distro, version=image.version, digest=marked.digest,
                           sections=sections_mark(marked), sha512=image.sha512,
                           signed=None if image.signed is None else str(image.signed)))
    linked = " (linked clone)" if template.linked_snapshot is not None else ""
    run.reporter.event(f"{config.name}: cloning from {template.name}{linked} onto network {run.placement.network_name}")
    host, datastore = where
    return vms.clone_spec(
        run.placement, cpus=settings.node.cpus, memory_mb=settings.node.memory_mb, extra=extra,
        linked_snapshot=template.linked_snapshot, host=host, datastore=datastore,
        # The MAC the node's config names its NIC by (guest/macs.py), and vsphere.network if the template's differs.
        devices=tuple(e for e in [vms.nic_edit(nic, config.mac or None, backing)] if e is not None) if nic is not None
        else (),
    )


def clone(run: Run, template: Template, image: verified.VerifiedImage, config: NodeConfig, marked: NodeConfig) -> None:
    clone_all(run, template, image, [(config, marked)])


def clone_all(run: Run, template: Template, image: verified.VerifiedImage,
              jobs: list[tuple[NodeConfig, NodeConfig]], nodes: dict[str, vms.VmInfo] | None = None) -> None:
    """Clone and boot nodes, `parallel` clones at a time, each batch's clones awaited together.

    Then one look at all of them, and one wait over the power-ons that are still needed: a look and a
    wait per batch cost 5 requests a batch, and the last batch boots no later this way.
    Each job is (the config the node boots with, the config its marks record: the cluster file's render).
    """
    refs: list = []
    names: list[str] = []
    # Placed all at once, apart from the nodes there are (nodes: the caller knows them; else one listing).
    nodes = run.inventory().nodes if nodes is None else nodes
    where = spread.choose(run, [config.name for config, _ in jobs], nodes)
    nic = vms.first_nic(run.session, template.vm)
    backing = vms.network_backing(run.session, template.vm, nic, run.placement)
    for at in range(0, len(jobs), run.parallel):
        batch = jobs[at : at + run.parallel]
        specs = [(config.name, _spec(run, template, image, config, marked, nic, backing, where[config.name]))
                 for config, marked in batch]
        refs += vms.clone_many(run.session, template.vm, specs, run.placement, cluster=run.name,
                              stall=run.settings.task_stall, note=run.reporter.event)
        names += [name for name, _ in specs]
        for name, _ in specs:
            stage(run.reporter, name, "cloned")
    made = vms.refresh_many(run.session, [vms.VmInfo(ref, name, False, "", None, None) for ref, name in zip(refs, names)])
    spread.keep_rule(run, nodes, made)  # on a DRS cluster, before they power on
    power.on_many(run.session, made)
    for name in names:
        stage(run.reporter, name, "powered on")


def bootstrap(run: Run, template: Template, image, configs: list[NodeConfig]) -> float:
    """A new cluster: every node at once, all with initial_cluster_state new. Returns their join deadline.

    The members' clock starts once all are cloned and powered on: none can
    form the cluster before the others are up.
    """
    clone_all(run, template, image, [(c, c) for c in configs], nodes={})  # a new cluster: none yet
    deadline = join_deadline(run)
    if run.dhcp and run.user.kind != IGNITION:
        # First boot done without etcd; now each node's leased address goes into every config.
        # (Ignition nodes boot once and work out their own address: guest/leased.py.)
        names = [c.name for c in configs]
        guests = wait_guests(run, names, deadline)
        leases = {n: st.ip for n, st in guests.items()}
        count = max(c.index for c in configs)
        final = compose.node_configs(run.settings, run.user, count=count, only=names, leases=leases)
        marked = {c.name: c for c in configs}
        nodes = run.inventory().nodes
        run.in_parallel(second_boot, [(run, nodes[f.name], f, marked[f.name]) for f in final])
    return deadline


def second_boot(run: Run, vm: vms.VmInfo, config: NodeConfig, marked: NodeConfig) -> None:
    """A DHCP node gets its membership for the address it leased, and boots again to apply it.

    coreos-cloudinit reads guestinfo on every boot, so the new keys take effect
    on the next one; the node is fresh, so a power cycle loses nothing.
    """
    extra = dict(config.guestinfo)
    extra[vms.MARK_DIGEST] = marked.digest
    extra[vms.MARK_SECTIONS] = sections_mark(marked)
    run.reporter.event(f"{config.name}: leased {config.ip}; writing its membership and booting it again")
    vms.reconfigure(run.session, vm, extra, run.name)
    vms.power_off(run.session, vm, run.name)
    power.on(run.session, vms.refresh(run.session, vm))


def join(run: Run, template: Template, image, config: NodeConfig, endpoint: str) -> NodeStatus:
    """Add one node to a running cluster: member add first, then boot it with state existing.

    Its wait.timeout starts once its clone is powered on, so joins one after
    another (a scale-up, a rebuild) each get the whole of it.
    """
    view = etcd.check_view(run.members.client.member_list(endpoint), run.name, endpoint)
    peers = {m.name: m.peer_urls[0] for m in view.members if m.name and m.peer_urls}
    peers.pop(config.name, None)
    count = max([config.index] + [naming.node_index(run.name, n) or 0 for n in peers])
    if run.dhcp and run.user.kind == IGNITION:
        return _join_leased(run, template, image, config, endpoint, peers, count)
    leases = None
    if run.dhcp:
        # First boot without etcd, to learn the address the member must be added with.
        clone(run, template, image, config, config)
        deadline = join_deadline(run)
        leases = {config.name: wait_guests(run, [config.name], deadline)[config.name].ip}
    # A re-plan with inputs only now known (the live peers, the lease); the user config is the one parsed.
    joined = compose.node_configs(
        run.settings, run.user, count=count, only=[config.name], existing_members=peers, leases=leases
    )[0]
    added = _add_member(run, config.name, endpoint, view, run.members.peer_url(joined.ip))
    with _taken_back_if_interrupted(run, config, endpoint, added):
        if run.dhcp:
            second_boot(run, run.inventory().nodes[config.name], joined, config)
        else:
            # The mark records the config the cluster file renders, not this one-off join variant.
            clone(run, template, image, joined, config)
            deadline = join_deadline(run)
        return wait_joined(run, [config], deadline)[config.name]


def _join_leased(run: Run, template: Template, image, config: NodeConfig, endpoint: str, peers: dict[str, str],
                 count: int) -> NodeStatus:
    """An Ignition node under DHCP joins in its one boot: it starts with the live peers and works out its own
    address (guest/leased.py); the member is added as soon as guest tools report the lease. Until then its
    etcd is refused by the peers and its unit restarts it."""
    joined = compose.node_configs(run.settings, run.user, count=count, only=[config.name], existing_members=peers)[0]
    clone(run, template, image, joined, config)
    deadline = join_deadline(run)
    ip = wait_guests(run, [config.name], deadline)[config.name].ip
    peer_url = run.members.peer_url(ip)
    view = etcd.check_view(run.members.client.member_list(endpoint), run.name, endpoint)  # the clone took a while: read again
    added = _add_member(run, config.name, endpoint, view, peer_url, f"leased {ip}; ")
    with _taken_back_if_interrupted(run, config, endpoint, added):
        return wait_joined(run, [config], deadline)[config.name]


@contextlib.contextmanager
def _taken_back_if_interrupted(run: Run, config: NodeConfig, endpoint: str, added: etcd.Member | None):
    """Interrupted half way through a join: take back the VM and the member we added (if we added one), so the
    next run starts clean. A node that merely failed to join is kept for inspection instead."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        if added is not None:
            with contextlib.suppress(Exception):
                _rollback_join(run, config, endpoint, added)
        raise


def _add_member(run: Run, name: str, endpoint: str, view, peer_url: str, why: str = "") -> etcd.Member | None:
    """member add for a joining node, unless etcd lists its peer URL already (a resumed run); the added member."""
    if any(peer_url in m.peer_urls for m in view.members):
        return None
    run.members.before_change(endpoint, view, run.inventory().nodes)
    run.reporter.event(f"{name}: {why}etcd member add {peer_url}")
    stage(run.reporter, name, "etcd member add")
    added = run.members.client.member_add(endpoint, peer_url)
    stage(run.reporter, name, "member added")
    return added


def _rollback_join(run: Run, config: NodeConfig, endpoint: str, added: etcd.Member) -> None:
    vm = run.inventory().nodes.get(config.name)
    if vm is not None:
        vms.destroy(run.session, vm, run.name)
    run.members.client.member_remove(endpoint, added.id)


def record_joined(run: Run, names: list[str]) -> None:
    """Once nodes are healthy members: record the cluster ID, and take the Ignition config out of guestinfo.

    Ignition reads its config on the first boot only; left in guestinfo it is
    readable by every vCenter user who can read the VM's configuration.
    Ignition >= 2.14 clears it itself unless masked, so read before writing.
    The config digest mark stays, so re-runs still see the node as up to date.
    """
    nodes = run.inventory().nodes
    cluster_id = run.members.current_cluster_id(nodes)
    batch = []
    for name in names:
        vm = nodes.get(name)
        if vm is None:
            continue
        changes = {}
        if cluster_id and not vm.extra.get(vms.MARK_ETCD_CLUSTER_ID):
            changes[vms.MARK_ETCD_CLUSTER_ID] = cluster_id
        cleared = guestinfo.clear_applied_ignition(vm.extra)
        for key in cleared:
            if key in guestinfo.DATA_KEYS:
                run.reporter.event(f"{name}: joined; clearing {key} (Ignition has applied it)")
        changes.update(cleared)
        if changes:
            batch.append((vm, changes))
    if batch:
        vms.reconfigure_many(run.session, batch, run.name)


def remove_node(run: Run, vm: vms.VmInfo, nodes: dict[str, vms.VmInfo]) -> None:
    """member remove first (keeping quorum), then power off and delete the VM."""
    vms.require_owned(vm, run.name, "remove")
    live = run.members.live_view(nodes, exclude={vm.name})
    if live is not None:
        endpoint, view = live
        member = view.by_name(vm.name) or next(
            (m for m in view.members if any(etcd.same_host(u, vm.ip) for u in m.peer_urls)), None
        )
        if member is not None:
            run.members.before_change(endpoint, view, nodes)
            health = settled(lambda: run.members.health(view), lambda h: _short_of_quorum(view, h, member, vm.name))
            etcd.check_removal(view, health, member, vm.name)
            if etcd.needs_new_leader(view, member):
                _move_leader(run, view, member, health)
            run.reporter.event(f"{vm.name}: etcd member remove {member.id}")
            stage(run.reporter, vm.name, "etcd member remove")
            run.members.client.member_remove(endpoint, member.id)
    spread.leave(run, vm, nodes)
    run.reporter.event(f"{vm.name}: powering off and deleting")
    stage(run.reporter, vm.name, "deleting")
    vms.destroy(run.session, vm, run.name)
    stage(run.reporter, vm.name, "deleted")


def _short_of_quorum(view: etcd.ClusterView, health: dict[str, bool], member: etcd.Member, name: str) -> bool:
    try:
        etcd.check_removal(view, health, member, name)
    except EtcdError:
        return True
    return False


def _move_leader(run: Run, view: etcd.ClusterView, leader: etcd.Member, health: dict[str, bool]) -> None:
    target = etcd.next_leader(view, leader, health)
    if target is None:
        return
    if run.members.lock is not None:
        run.members.lock.check()
    run.reporter.event(f"moving etcd leadership from {leader.name} to {target.name}")
    with contextlib.suppress(Exception):
        run.members.client.move_leader(leader.client_urls[0], target.id)


def resize(run: Run, vm: vms.VmInfo, nodes: dict[str, vms.VmInfo]) -> None:
    """CPUs and memory as the cluster file says: leadership moved away first, powered off, set, started.

    Powered off because CPU and memory hot-add needs the guest's support and never lowers either; etcd
    syncs its log before it answers a write, so a member loses nothing it acknowledged.
    """
    vms.require_owned(vm, run.name, "reconfigure")
    node = run.settings.node
    live = run.members.live_view(nodes)
    if live is not None and vm.power == "poweredOn":
        _, view = live
        member = view.by_name(vm.name)
        if member is not None and etcd.needs_new_leader(view, member):
            _move_leader(run, view, member, run.members.health(view))
    if vm.power == "poweredOn":
        run.reporter.event(f"{vm.name}: powering off to set {node.cpus} CPUs and {node.memory_mb} MB")
        stage(run.reporter, vm.name, "powering off")
        vms.power_off(run.session, vm, run.name)
    stage(run.reporter, vm.name, f"setting {node.cpus} CPUs, {node.memory_mb} MB")
    try:
        vms.set_hardware(run.session, vm, node.cpus, node.memory_mb, run.name)
    except Exception:
        # Refused (a host without that many CPUs, a quota): the node goes back as it was, a member again.
        with contextlib.suppress(Exception):
            power.on(run.session, vms.refresh(run.session, vm))
        raise
    run.reporter.event(f"{vm.name}: powering on")
    power.on(run.session, vms.refresh(run.session, vm))
    stage(run.reporter, vm.name, "powered on")
