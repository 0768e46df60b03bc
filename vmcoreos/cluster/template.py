"""The verified image and the template nodes are cloned from: resolve, check room, import once, trust."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vmcoreos import naming, state
from vmcoreos.cluster import spread
from vmcoreos.cluster.run import Run
from vmcoreos.errors import ConfigError, VmcoreosError, VSphereError
from vmcoreos.images import verified
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import importer, targets, vms
from vmcoreos.vsphere.waits import wait_task

if TYPE_CHECKING:  # imported by the run that streams, not by every start-up
    from vmcoreos.images.verified_upload import StreamedOva


@dataclass(frozen=True)
class Template:
    vm: vms.VmInfo
    uploaded: bool  # imported by this run
    linked_snapshot: Any = None  # with node.linked_clone: the snapshot clones' child disks grow from

    @property
    def name(self) -> str:
        return self.vm.name


def template_name(settings: ClusterSettings, image: verified.VerifiedImage) -> str:
    return naming.template_name(settings.name, image.distro, image.version)


def _deployed(settings: ClusterSettings, nodes):
    """What the nodes (VmInfo) of this distro run, from their marks (images/trust/binding.py): the floor."""
    from vmcoreos.images.trust.binding import Deployed
    from vmcoreos.images.sources.releases import version_key

    ours = [vm.extra for vm in nodes if vm.extra.get(vms.MARK_DISTRO) == settings.image.distro]
    versions = [x.get(vms.MARK_VERSION) for x in ours]
    signed = [int(x[vms.MARK_SIGNED]) for x in ours if str(x.get(vms.MARK_SIGNED, "")).isascii()
              and str(x.get(vms.MARK_SIGNED, "")).isdigit()]
    images = {x[vms.MARK_SHA512]: x.get(vms.MARK_VERSION) or "" for x in ours if x.get(vms.MARK_SHA512)}
    return Deployed(max((v for v in versions if version_key(v) is not None), key=version_key, default=None),
                    max(signed, default=None), images)


def _floor(settings: ClusterSettings, nodes) -> str | None:
    """The highest release the nodes (VmInfo) of this distro already run: a channel's "current" may not be older."""
    return _deployed(settings, nodes).version


def begin_streamed(run: Run, templates, nodes=()) -> StreamedOva | None:
    """A fresh local OVA to verify in the read that uploads it, when no template of the cluster could be reused.

    With any template present the image is verified first (resolve_image): its SHA-512 may name one.
    """
    if any(t.template for t in templates):
        return None
    from vmcoreos.images.fetch import begin_local

    return begin_local(run.settings.image, cache_dir=run.cache_dir, reporter=run.reporter, retries=run.retries,
                       deployed=_deployed(run.settings, nodes))


def resolve_image(run: Run, nodes=()) -> verified.VerifiedImage:
    """The verified image, in the run's cache (--cache-dir) with its retries."""
    from vmcoreos.images.fetch import obtain

    return obtain(run.settings.image, cache_dir=run.cache_dir, reporter=run.reporter, retries=run.retries,
                  deployed=_deployed(run.settings, nodes))


@dataclass(frozen=True)
class PlannedImage:
    """What a dry run can say about the image without reading it: release metadata only."""

    distro: str
    version: str | None  # None: a local --ova, whose version is known only by reading it
    template: str | None  # the template nodes would be cloned from, when the version is known
    imported: bool | None  # whether that template would be imported (None: unknown without reading the OVA)

    def as_dict(self) -> dict:
        return {"distro": self.distro, "version": self.version, "template": self.template, "import": self.imported}


def plan_image(run: Run, nodes, templates) -> PlannedImage:
    """The image a run would use, from the signed release metadata; the OVA itself is neither downloaded nor read."""
    from vmcoreos.images.fetch import resolve_release

    settings = run.settings
    release = resolve_release(settings.image, cache_dir=run.cache_dir, reporter=run.reporter, retries=run.retries,
                              floor=_floor(settings, nodes))
    if release is None and not Path(settings.image.ova).is_file():  # a stat, not a read
        raise ConfigError(f"OVA {settings.image.ova} is not a file; check --ova or image.ova")
    if release is None or not release.version:
        return PlannedImage(settings.image.distro, None, None, None)
    name = naming.template_name(settings.name, release.distro, release.version)
    return PlannedImage(release.distro, release.version, name, not any(t.name == name for t in templates))


def check_privileges(run: Run, templates=()) -> None:
    """Before any download or upload: the user may do everything the run will do, on the objects it touches.

    templates: the cluster's existing ones, each asked for DeployTemplate itself.
    """
    from vmcoreos.vsphere import privileges

    privileges.require(run.session, run.placement, linked_clone=run.settings.node.linked_clone,
                       templates=[t for t in templates if t.template], warn=run.reporter.warn)


def check_room(run: Run, image: verified.VerifiedImage | None, archive: Callable[[], Any], templates,
               new_nodes: int) -> None:
    """Refuse before the first upload when a datastore cannot hold what the run writes to it.

    Thin disks take what is written, not their capacity: the import writes the
    OVA's populated bytes (its disk file's size when the OVF says 0 or nothing,
    as Flatcar's does), and a full clone copies the template's committed bytes
    (a linked clone's child disk starts empty). A datastore without thin disks
    takes every disk's capacity; vSAN writes every byte more than once
    (vsphere/space.py). Each node powered on also gets a swap file of its memory
    (vmcoreos sets no reservation). Provisioned capacity beyond the free space is
    only a warning: thin disks can grow into it later. archive() opens the OVA,
    only when its sizes count: with the template present and linked clones
    nothing of the image is read.
    """
    settings = run.settings
    gib = 1 << 30
    have = None
    if image is not None:  # None: an image verified as it is imported, which no template holds yet
        name = template_name(settings, image)
        have = next((t for t in templates if t.name == name and t.extra.get(vms.MARK_SHA512) == image.sha512), None)
    populated = archive().disk_populated() if have is None else 0
    per_clone = targets.committed_bytes(run.session, have.ref) if have is not None else populated
    swap = settings.node.memory_mb << 20
    # Members spread over the datastores (cluster/spread.py); the template goes on the first.
    shares = spread.datastore_shares(run, new_nodes)
    first = next(iter(run.placement.topology.datastores))
    for ds_name, store in run.placement.topology.datastores.items():
        nodes = shares.get(ds_name, 0)
        imports = ds_name == first and have is None
        if nodes or imports:
            _check_one(run, archive, store, ds_name, populated if imports else None, per_clone, swap, nodes, gib)


def _check_one(run: Run, archive, store, ds_name: str, imported: int | None, per_clone: int, swap: int, new_nodes: int,
               gib: int) -> None:
    """One datastore: what it receives (the import, if imported is not None; full clones; swap files)."""
    from vmcoreos.vsphere import space

    settings = run.settings
    copies = 0 if settings.node.linked_clone else new_nodes
    ds = space.room(run.session, store)
    if ds.note:
        run.reporter.event(f"datastore {ds_name}: {ds.note}")
    if not ds.thin and (imported is not None or copies):  # every disk takes its capacity here
        capacity = archive().disk_capacity()
        imported = capacity if imported is not None else None
        per_clone = max(per_clone, capacity)
    need = ds.charge((imported or 0) + copies * per_clone + new_nodes * swap)
    free = ds.free
    where = f"datastore {ds_name}"
    times = f", each byte x{space.factor_text(ds.factor)} on vSAN" if ds.factor != 1 else ""
    if need > free:
        parts = [f"the template import {imported / gib:.1f} GiB"] if imported is not None else []
        parts += [f"{copies} full clone(s) of {per_clone / gib:.1f} GiB", f"{new_nodes} swap file(s) of {swap / gib:.1f} GiB"]
        raise VSphereError(
            f"{where} has {free / gib:.1f} GiB free but this run writes {need / gib:.1f} GiB ({', '.join(parts)}{times});"
            " free space, pick another datastore (vsphere.datastore), lower the count or node.memory_mb,"
            " or use node.linked_clone: true"
        )
    disks = (0 if imported is None else 1) + copies
    provisioned = ds.charge((disks * archive().disk_capacity() if disks else 0) + new_nodes * swap)
    if provisioned > free:
        run.reporter.warn(
            f"{where} has {free / gib:.1f} GiB free, less than the {provisioned / gib:.1f} GiB these thin disks"
            " and swap files may grow to; the run goes on, but watch the datastore as the nodes write"
        )


def ensure_template(run: Run, image: verified.VerifiedImage, templates, archive=None) -> Template:
    """The cluster's template for image: the trusted one already imported, or a fresh import.

    archive: the run's opened OVA; without one it is opened here, and only if an import is needed.
    """
    settings = run.settings
    name = template_name(settings, image)
    for vm in templates:
        if vm.name == name and vm.template and vm.extra.get(vms.MARK_SHA512) == image.sha512:
            _check_imported_here(run, vm)
            run.reporter.event(f"template {name} already imported")
            return Template(vm, False, _linked_base(run, vm))
    _clear_unfinished(run, name)
    run.reporter.event(f"importing {image.path.name} as template {name}")
    extra = vms.marks(settings.name, "template", distro=image.distro, version=image.version, sha512=image.sha512,
                      signed=None if image.signed is None else str(image.signed))
    from vmcoreos.images.verified_upload import upload_read

    with (contextlib.nullcontext(archive) if archive is not None else upload_read(image)) as opened:
        ref = _import(run, opened, name, extra, image.path.name)
    return _make_template(run, ref, name, extra, image)


def stream_template(run: Run, pending: StreamedOva) -> tuple[verified.VerifiedImage, Template]:
    """A fresh local OVA imported and verified in the same read (images/verified_upload.py).

    Its name and marks hold the image's SHA-512, known only after the last byte: it is imported under
    a provisional name without them, and renamed, marked, made a template and recorded only after every
    check passed. A failed check aborts the import, which leaves nothing behind.
    """
    settings = run.settings
    provisional = naming.template_name(settings.name, settings.image.distro, "importing")
    _clear_unfinished(run, provisional)
    run.reporter.event(f"importing {pending.path.name} as {provisional} while verifying it")
    extra = vms.marks(settings.name, "template", distro=settings.image.distro)
    ref = _import(run, pending, provisional, extra, pending.path.name)
    image = pending.image
    name = template_name(settings, image)
    extra = vms.marks(settings.name, "template", distro=image.distro, version=image.version, sha512=image.sha512,
                      signed=None if image.signed is None else str(image.signed))
    try:
        _clear_unfinished(run, name)
        vms.rename_and_mark(run.session, vms.VmInfo(ref, provisional, False, "poweredOff", None, None, extra),
                            name, extra, settings.name)
    except BaseException as exc:
        _remove(run, ref, provisional)
        if isinstance(exc, Exception) and not isinstance(exc, VmcoreosError):
            raise VSphereError(f"could not name the verified import {name}: {getattr(exc, 'msg', exc)}") from None
        raise
    return image, _make_template(run, ref, name, extra, image)


def _clear_unfinished(run: Run, name: str) -> None:
    """Remove our VM of that name whose import was cut short; refuse if it is a finished template."""
    for vm in vms.list_vms(run.session, run.placement, {name}):
        vms.require_owned(vm, run.settings.name, "use as template")
        if not vm.template:
            # A template whose import was cut short: ours, unfinished, safe to replace.
            run.reporter.event(f"removing unfinished template {name}")
            vms.destroy(run.session, vm, run.settings.name)
        else:
            raise VSphereError(
                f"template {name!r} exists but holds a different image; delete it with"
                " `vmcoreos destroy --templates` first"
            )


def _import(run: Run, archive, name: str, extra: dict[str, str], file_name: str):
    return importer.import_ova(
        run.session, archive, run.placement, name, extra,
        on_bytes=lambda done, total: run.reporter.transfer(f"uploading {file_name}", done, total),
        on_retry=run.reporter.event, stall=run.settings.task_stall, upload_stall=run.settings.upload_stall,
    )


def _remove(run: Run, ref, name: str) -> None:
    with contextlib.suppress(Exception):
        wait_task(run.session, ref.Destroy_Task(), what=f"removing {name}")


def _make_template(run: Run, ref, name: str, extra: dict[str, str], image: verified.VerifiedImage) -> Template:
    """The imported VM made a template (snapshotted first for linked clones), and recorded as imported here."""
    session = run.session
    try:
        # Snapshot while it is still a VM: vSphere takes none of a template.
        snapshot = _linked_base(run, vms.VmInfo(ref, name, False, "poweredOff", None, None, extra))
        ref.MarkAsTemplate()
    except BaseException as exc:
        _remove(run, ref, name)
        if isinstance(exc, VmcoreosError):
            raise
        if isinstance(exc, Exception):
            raise VSphereError(f"could not mark {name} as a template: {getattr(exc, 'msg', exc)}") from None
        raise
    made = vms.refresh(session, vms.VmInfo(ref, name, True, "poweredOff", None, None))
    state.remember_template(
        session.vcenter_id, name, state.TemplateRecord(made.instance_uuid or "", made.moref, image.sha512),
        cache_root=run.cache_dir,
    )
    return Template(made, True, snapshot)


def _check_imported_here(run: Run, vm: vms.VmInfo) -> None:
    """Clone only from a template this host imported: a mark alone can be forged by anyone who may edit VMs."""
    vcenter = run.session.vcenter_id
    record = state.template_record(vcenter, vm.name, cache_root=run.cache_dir)
    if record is not None and (record.instance_uuid, record.moref, record.sha512) == (
        vm.instance_uuid or "", vm.moref, vm.extra.get(vms.MARK_SHA512)
    ):
        return
    vouching = f"the record of imported templates that user {state.current_user()!r} keeps ({state.state_dir() / state.TEMPLATES_FILE})"
    if run.adopt_template:
        run.reporter.event(f"adopting template {vm.name} ({vm.moref}) on your word (--adopt-template), into {vouching}")
        state.remember_template(
            vcenter, vm.name, state.TemplateRecord(vm.instance_uuid or "", vm.moref, vm.extra.get(vms.MARK_SHA512) or ""),
            cache_root=run.cache_dir,
        )
        return
    why = "has no entry for it" if record is None else "names another template by that name"
    raise VSphereError(
        f"template {vm.name!r} ({vm.moref}) carries the marks of cluster {run.name!r} but {vouching} {why}, so"
        " its disk is not trusted; if it was planted, delete that template in vCenter and run again to import a"
        " verified copy; if you know where it came from (an older vmcoreos, another host, another user's cache),"
        " run again with --adopt-template as the user that will run vmcoreos from now on (cron and the timer run"
        " as 'vmcoreos'), so that user's record vouches for it"
    )



def _linked_base(run: Run, template: vms.VmInfo):
    """With node.linked_clone, the template snapshot the clones' child disks grow from; None otherwise."""
    if not run.settings.node.linked_clone:
        return None
    return vms.snapshot_linked_base(run.session, template, run.placement, run.settings.name)
