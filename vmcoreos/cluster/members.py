"""The cluster's etcd as its nodes show it: the live member list, health, and the checks before any change."""

from __future__ import annotations

from typing import Callable, TypeVar

import tenacity

from vmcoreos import etcd
from vmcoreos.errors import EtcdError
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import vms

T = TypeVar("T")
HEALTH_SETTLE = 15.0  # seconds a health verdict that would stop a run is asked for again
HEALTH_RECHECK = 1.0  # seconds between those asks


def settled(ask: Callable[[], T], unsettled: Callable[[T], bool]) -> T:
    """ask() again every HEALTH_RECHECK s, for up to HEALTH_SETTLE s, while unsettled(its answer); the last answer.

    A member restarted (or a peer removed) moments ago can answer unhealthy for a few seconds while an
    election settles, or a quorum read can time out on a busy host: a health verdict that stops a run is
    asked for again before it is believed. One sick all that time is sick.
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(unsettled),
        wait=tenacity.wait_fixed(HEALTH_RECHECK),
        stop=tenacity.stop_after_delay(HEALTH_SETTLE),
        retry_error_callback=lambda state: state.outcome.result(),
        reraise=True,
    )(ask)


class Members:
    lock: etcd.EtcdLock | None = None  # set by locking.cluster_lock while the run holds etcd's lease lock

    def __init__(self, settings: ClusterSettings, client: etcd.Client | None = None):
        self.settings = settings
        # The run's etcd client: one session for the run, trusting etcd.ca_file for https client URLs (and with
        # etcd.scheme https speaking TLS to every member).
        self.client = client if client is not None else etcd.Client(settings.etcd.ca_file, settings.etcd.scheme)

    def endpoint(self, vm: vms.VmInfo) -> str | None:
        return self.endpoint_at(vm.ip) if vm.ip else None

    def endpoint_at(self, ip: str) -> str:
        etcd_settings = self.settings.etcd
        return f"{etcd_settings.scheme}://{ip}:{etcd_settings.client_port}"

    def peer_url(self, ip: str) -> str:
        return f"http://{ip}:{self.settings.etcd.peer_port}"

    def live_view(self, nodes: dict[str, vms.VmInfo], exclude: set[str] = frozenset()) -> tuple[str, etcd.ClusterView] | None:
        """The member list from the first node that answers, skipping `exclude`.

        A list that answers but names members or URLs vmcoreos never made stops
        the run (EtcdError) instead of being skipped: it is never used.
        """
        endpoints = [
            self.endpoint(vm) for name, vm in sorted(nodes.items())
            if name not in exclude and vm.power == "poweredOn" and vm.ip
        ]
        live = etcd.first_view(self.client, endpoints, self.settings.name)
        if live is not None and self.lock is not None:
            self.lock.follow([u for m in live[1].members for u in m.client_urls])
        return live

    def leader_name(self, nodes: dict[str, vms.VmInfo]) -> str | None:
        live = self.live_view(nodes)
        if live is None:
            return None
        return next((m.name for m in live[1].members if m.id == live[1].leader), None)

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

    def current_cluster_id(self, nodes: dict[str, vms.VmInfo]) -> str | None:
        """The cluster ID etcd reports now, refused when it is not the one the nodes record."""
        live = self.live_view(nodes)
        cluster_id = live[1].cluster_id if live else None
        expected = self.expected_cluster_id(nodes)
        if expected is not None and cluster_id not in (None, expected):
            raise EtcdError(
                f"etcd at {live[0]} reports cluster ID {cluster_id}, but the nodes record {expected}; check the"
                " nodes' addresses with `vmcoreos status`"
            )
        return cluster_id

    def health(self, view: etcd.ClusterView) -> dict[str, bool]:
        """member id -> healthy, asking each member on its own client URL (etcd.membership.health)."""
        return etcd.health(self.client, view)
