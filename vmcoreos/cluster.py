"""Plans and runs deploy from the pieces: settings, node configs, image, vSphere, etcd.

The order matters and is the point of this module: everything that can be
checked offline (settings, node configs, the image's signature) is checked
before the first change in vSphere, and nodes that already exist and are
ours are left alone, so running deploy twice gives the same cluster.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol

import tenacity
from pyVmomi import vim

from vmcoreos import etcd
from vmcoreos.errors import ConfigError, NotJoinedError, VSphereError
from vmcoreos.guest import nodeconfig
from vmcoreos.guest.nodeconfig import NodeConfig
from vmcoreos.images import source
from vmcoreos.images.ova import OvaArchive
from vmcoreos.settings import ClusterSettings, Connection
from vmcoreos.vsphere import importer, inventory, vms
from vmcoreos.vsphere.session import Session, connect
from vmcoreos.vsphere.waits import Watch, wait_task


class Reporter(Protocol):
    def event(self, message: str) -> None: ...

    def transfer(self, label: str, done: int, total: int) -> None: ...


class QuietReporter:
    def event(self, message: str) -> None:
        pass

    def transfer(self, label: str, done: int, total: int) -> None:
        pass


@dataclass
class NodeStatus:
    name: str
    action: str = ""  # created / unchanged / started
    power: str = ""
    tools: str | None = None
    ip: str | None = None
    member_id: str | None = None
    healthy: bool = False
    stage: str = "planned"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class DeployResult:
    cluster: str
    nodes: list[NodeStatus]
    template: str | None = None
    image_version: str | None = None
    uploaded: bool = False
    created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cluster": self.cluster,
            "template": self.template,
            "image_version": self.image_version,
            "uploaded": self.uploaded,
            "created": self.created,
            "nodes": [n.as_dict() for n in self.nodes],
        }


def template_name(settings: ClusterSettings, image: source.VerifiedImage) -> str:
    return f"{settings.name}-template-{image.distro}-{image.version}"


def prepare(settings: ClusterSettings, count: int) -> list[NodeConfig]:
    """Everything checkable offline, before any vSphere call."""
    user = nodeconfig.load_user_config(settings)
    return nodeconfig.plan(settings, user, count=count)


def resolve_image(settings: ClusterSettings, reporter: Reporter) -> source.VerifiedImage:
    image = settings.image
    if image.ova is None:
        raise ConfigError("no image given; pass --ova FILE --sig FILE.sig or set image.ova in the cluster file")
    if source.is_url(image.ova):
        reporter.event(f"downloading {image.ova}")
        return source.download_verified(image, image.ova, _cache_dir())
    reporter.event(f"verifying {image.ova}")
    return source.verify_local_ova(image)


def _cache_dir():
    import os
    from pathlib import Path

    from platformdirs import user_cache_dir

    from vmcoreos.settings import ENV_CACHE_DIR

    return Path(os.environ.get(ENV_CACHE_DIR) or user_cache_dir("vmcoreos"))


class Deployer:
    def __init__(self, settings: ClusterSettings, conn: Connection, reporter: Reporter, *, parallel: int = 4):
        self.settings = settings
        self.conn = conn
        self.reporter = reporter
        self.parallel = max(1, parallel)
        self.session: Session | None = None

    def run(self, count: int) -> DeployResult:
        configs = prepare(self.settings, count)
        self.session = connect(self.conn)
        try:
            return self._run(configs)
        finally:
            self.session.close()

    def _run(self, configs: list[NodeConfig]) -> DeployResult:
        session, settings = self.session, self.settings
        placement = inventory.locate(session, settings.vsphere)
        names = {c.name for c in configs}
        existing = {v.name: v for v in vms.list_vms(session, placement, names) if not v.template}
        for vm in existing.values():
            vms.require_owned(vm, settings.name, "reuse")
        result = DeployResult(settings.name, [NodeStatus(c.name) for c in configs])
        status = {n.name: n for n in result.nodes}
        missing = [c for c in configs if c.name not in existing]
        for name, vm in existing.items():
            status[name].action = "unchanged"
            if vm.power != "poweredOn":
                self.reporter.event(f"{name}: powering on")
                vms.power_on(session, vm)
                status[name].action = "started"

        if missing:
            image = resolve_image(settings, self.reporter)
            result.image_version = image.version
            template, uploaded = self._template(placement, image)
            result.template, result.uploaded = template.name, uploaded
            live = self._live_endpoint(existing)
            if live is None:
                self._create(placement, template, image, missing, status)
            else:
                for config in missing:
                    self._join(placement, template, image, config, live, status)
            result.created = [c.name for c in missing]

        deadline = time.monotonic() + settings.wait_timeout
        self._wait_joined(placement, configs, status, deadline)
        return result

    # -- image and template -------------------------------------------------

    def _template(self, placement, image: source.VerifiedImage) -> tuple[vms.VmInfo, bool]:
        session, settings = self.session, self.settings
        name = template_name(settings, image)
        for vm in vms.list_vms(session, placement, {name}):
            vms.require_owned(vm, settings.name, "use as template")
            if vm.template and vm.extra.get(vms.MARK_SHA512) == image.sha512:
                self.reporter.event(f"template {name} already imported")
                return vm, False
            raise VSphereError(
                f"VM {name!r} exists but is not a finished template of this image; delete it with"
                " `vmcoreos destroy --templates` or remove it by hand"
            )
        self.reporter.event(f"importing {image.path.name} as template {name}")
        extra = vms.marks(settings.name, "template", distro=image.distro, version=image.version, sha512=image.sha512)
        with OvaArchive(image.path) as archive:
            ref = importer.import_ova(
                session,
                archive,
                placement,
                name,
                extra,
                on_bytes=lambda done, total: self.reporter.transfer(f"uploading {image.path.name}", done, total),
            )
        try:
            ref.MarkAsTemplate()
        except Exception as exc:
            wait_task(session, ref.Destroy_Task(), what=f"removing {name}")
            raise VSphereError(f"could not mark {name} as a template: {getattr(exc, 'msg', exc)}") from None
        info = vms.refresh(session, vms.VmInfo(ref, name, True, "poweredOff", None, None))
        return info, True

    # -- node creation ------------------------------------------------------

    def _clone(self, placement, template, image, config: NodeConfig) -> None:
        settings = self.settings
        extra = dict(config.guestinfo)
        extra.update(
            vms.marks(settings.name, "node", distro=image.distro, version=image.version, digest=config.digest)
        )
        spec = vms.clone_spec(placement, cpus=settings.node.cpus, memory_mb=settings.node.memory_mb, extra=extra)
        self.reporter.event(f"{config.name}: cloning from {template.name}")
        ref = vms.clone(self.session, template, config.name, placement, spec)
        vm = vms.refresh(self.session, vms.VmInfo(ref, config.name, False, "", None, None))
        # Some vCenters (and the simulator) create the clone powered off despite spec.powerOn.
        vms.power_on(self.session, vm)

    def _create(self, placement, template, image, configs: list[NodeConfig], status) -> None:
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = [pool.submit(self._clone, placement, template, image, c) for c in configs]
            errors = []
            for config, fut in zip(configs, futures):
                try:
                    fut.result()
                    status[config.name].action = "created"
                    status[config.name].stage = "powered on"
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]

    def _live_endpoint(self, existing: dict[str, vms.VmInfo]) -> str | None:
        port = self.settings.etcd.client_port
        for vm in existing.values():
            if vm.ip:
                endpoint = f"http://{vm.ip}:{port}"
                try:
                    etcd.member_list(endpoint)
                    return endpoint
                except Exception:
                    continue
        return None

    def _join(self, placement, template, image, config: NodeConfig, endpoint: str, status) -> None:
        """Add one node to a running cluster: member add first, then boot it with state existing."""
        view = etcd.member_list(endpoint)
        peers = {m.name: m.peer_urls[0] for m in view.members if m.name and m.peer_urls}
        user = nodeconfig.load_user_config(self.settings)
        count = max(int(n.rsplit("-", 1)[-1]) for n in [config.name, *peers] if n.rsplit("-", 1)[-1].isdigit())
        joined = nodeconfig.plan(self.settings, user, count=count, only=[config.name], existing_members=peers)[0]
        peer_url = f"http://{joined.ip}:{self.settings.etcd.peer_port}"
        if not any(peer_url in m.peer_urls for m in view.members):
            self.reporter.event(f"{config.name}: etcd member add {peer_url}")
            etcd.member_add(endpoint, peer_url)
        # The digest marks the config the cluster file renders, not the one-off join variant.
        joined = NodeConfig(joined.name, joined.index, joined.address, joined.config_text, joined.guestinfo, config.digest)
        self._clone(placement, template, image, joined)
        status[config.name].action = "created"
        deadline = time.monotonic() + self.settings.wait_timeout
        self._wait_joined(placement, [config], status, deadline)

    # -- waiting ------------------------------------------------------------

    def _wait_joined(self, placement, configs: list[NodeConfig], status, deadline: float) -> None:
        session = self.session
        found = {v.name: v for v in vms.list_vms(session, placement, {c.name for c in configs}) if not v.template}
        refs = {found[c.name].ref: c.name for c in configs if c.name in found}
        props = ["runtime.powerState", "guest.toolsRunningStatus", "guest.ipAddress"]

        def ready(values):
            for ref, name in refs.items():
                v = values.get(ref, {})
                st = status[name]
                st.power = v.get("runtime.powerState", st.power)
                st.tools = v.get("guest.toolsRunningStatus", st.tools)
                st.ip = v.get("guest.ipAddress") or st.ip
                if st.power == "poweredOn":
                    st.stage = "powered on"
                if st.tools == "guestToolsRunning":
                    st.stage = "tools running"
                if st.ip:
                    st.stage = "has IP"
            return all(
                status[n].tools == "guestToolsRunning" and status[n].ip for n in refs.values()
            )

        self.reporter.event("waiting for guest tools and IP addresses")
        with Watch(session, list(refs), props, vim.VirtualMachine) as watch:
            try:
                watch.until(ready, deadline, "guests")
            except TimeoutError:
                self._not_joined(status, configs)
        self.reporter.event("waiting for etcd membership")
        port = self.settings.etcd.client_port
        for config in configs:
            st = status[config.name]
            endpoint = f"http://{st.ip}:{port}"
            retrying = tenacity.Retrying(
                wait=tenacity.wait_exponential(multiplier=0.1, max=2),
                stop=tenacity.stop_after_delay(max(0.0, deadline - time.monotonic())),
                retry=tenacity.retry_if_result(lambda ok: not ok),
            )
            try:
                retrying(self._member_ready, endpoint, st)
            except tenacity.RetryError:
                self._not_joined(status, configs)
            self.reporter.event(f"{config.name}: healthy etcd member {st.member_id}")

    def _member_ready(self, endpoint: str, st: NodeStatus) -> bool:
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
        st.stage = "healthy"
        return True

    def _not_joined(self, status, configs) -> None:
        late = [status[c.name] for c in configs if not status[c.name].healthy]
        detail = ", ".join(f"{s.name} reached '{s.stage}'" for s in late)
        raise NotJoinedError(
            f"nodes did not join etcd within {self.settings.wait_timeout:.0f}s: {detail};"
            " the VMs are kept for inspection (see their consoles or `vmcoreos status`)",
        )


def deploy(settings: ClusterSettings, conn: Connection, *, count: int, reporter: Reporter, parallel: int = 4) -> DeployResult:
    return Deployer(settings, conn, reporter, parallel=parallel).run(count)
