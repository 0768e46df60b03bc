"""Importing a verified OVA as a template, streaming the disk straight out of the tar.

One upload per image version: nodes are clones of the template. The NFC
lease is kept alive by a ticker that reports the same byte counter the
upload advances; any failure aborts the lease and removes the half-made VM.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

from pyVmomi import vim, vmodl

from vmcoreos.errors import VmcoreosError, VSphereError
from vmcoreos.images.ova import OvaArchive
from vmcoreos.images.stream import CHUNK, BackgroundTap, TeeReader
from vmcoreos.vsphere.inventory import Placement
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.vms import option_values
from vmcoreos.vsphere.waits import Watch
from vmcoreos.text import reason

LEASE_TICK = 2.0  # seconds between HttpNfcLeaseProgress calls; leases time out after minutes
UPLOAD_TIMEOUT = 300
# NFC uploads cannot resume: a broken one is aborted, cleaned up and started over, this many times in all.
IMPORT_ATTEMPTS = 3


class UploadInterrupted(VSphereError):
    """The disk upload broke off: worth one more import from the start."""


class ByteCounter:
    """The one counter both the progress display and the lease keepalive read."""

    def __init__(self, total: int, on_bytes: Callable[[int, int], None] | None = None):
        self.total = max(total, 1)
        self.done = 0
        self._lock = threading.Lock()
        self.on_bytes = on_bytes

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
        if self.on_bytes:
            self.on_bytes(self.done, self.total)

    @property
    def percent(self) -> int:
        return min(99, int(self.done * 100 / self.total))


class LeaseKeepalive:
    def __init__(self, lease, counter: ByteCounter):
        self.lease = lease
        self.counter = counter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfc-keepalive", daemon=True)

    def __enter__(self) -> "LeaseKeepalive":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(LEASE_TICK):
            try:
                # A 0 % report still renews the lease.
                self.lease.HttpNfcLeaseProgress(self.counter.percent)
            except Exception:
                return  # the upload itself will fail and say why


def import_spec(session: Session, archive: OvaArchive, placement: Placement, name: str, extra: dict[str, str]):
    manager = session.content.ovfManager
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=name,
        diskProvisioning="thin",
        networkMapping=[
            vim.OvfManager.NetworkMapping(name=n, network=placement.network) for n in _ovf_networks(archive)
        ],
    )
    result = manager.CreateImportSpec(archive.descriptor.text, placement.resource_pool, placement.datastore, params)
    if result.error:
        raise VSphereError(f"vCenter cannot import {archive.path.name}: {result.error[0].localizedMessage or result.error[0].fault}")
    spec = result.importSpec
    config = spec.configSpec
    # The OVA declares guestinfo vApp properties with the com.vmware.guestInfo transport.
    # Left in place, vSphere would hand the guest an OVF environment, and coreos-cloudinit
    # then reads only that and ignores our extraConfig keys. We drop the vApp options.
    config.vAppConfig = None
    config.vAppConfigRemoved = True
    config.extraConfig = list(config.extraConfig or []) + option_values(extra)
    return spec, list(result.fileItem or [])


def _ovf_networks(archive: OvaArchive) -> list[str]:
    import xml.etree.ElementTree as ET

    from vmcoreos.images.ova import OVF_NS

    root = ET.fromstring(archive.descriptor.text)
    return [n.get(f"{{{OVF_NS}}}name") for n in root.iter(f"{{{OVF_NS}}}Network") if n.get(f"{{{OVF_NS}}}name")]


def import_ova(
    session: Session,
    archive: OvaArchive,
    placement: Placement,
    name: str,
    extra: dict[str, str],
    *,
    on_bytes: Callable[[int, int], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    timeout: float = 600,
    attempts: int = IMPORT_ATTEMPTS,
):
    """Import, retrying from the start after a broken upload; see _import_once."""
    for attempt in range(1, attempts + 1):
        try:
            return _import_once(session, archive, placement, name, extra, on_bytes=on_bytes, timeout=timeout)
        except UploadInterrupted as exc:
            if attempt == attempts:
                raise VSphereError(f"{exc.message}; gave up after {attempts} attempts") from None
            if on_retry:
                on_retry(f"{exc.message}; the half-imported VM was removed, starting over ({attempt + 1}/{attempts})")


def _import_once(
    session: Session,
    archive: OvaArchive,
    placement: Placement,
    name: str,
    extra: dict[str, str],
    *,
    on_bytes: Callable[[int, int], None] | None = None,
    timeout: float = 600,
):
    """Import and return the new VM (not yet a template). Nothing is left behind on failure."""
    archive.verify_descriptor_against_manifest()
    spec, items = import_spec(session, archive, placement, name, extra)
    lease = placement.resource_pool.ImportVApp(spec, folder=placement.folder)
    entity = None
    try:
        info = _wait_ready(session, lease, timeout)
        entity = info.entity
        total = sum(archive.size(i.path) for i in items)
        counter = ByteCounter(total, on_bytes)
        with LeaseKeepalive(lease, counter):
            for item in items:
                url = _device_url(info, item, session)
                _upload(session, archive, item, url, counter)
        # What went up was read from the verified descriptor; it must not have been written to meanwhile.
        archive.check_unchanged()
        lease.HttpNfcLeaseProgress(100)
        lease.HttpNfcLeaseComplete()
        return entity
    except BaseException as exc:
        _abandon(session, lease, entity or _lease_entity(lease))
        if isinstance(exc, (VmcoreosError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, vmodl.MethodFault):
            raise VSphereError(f"importing {archive.path.name} failed: {exc.msg}") from None
        raise VSphereError(f"importing {archive.path.name} failed: {exc}") from None


def _lease_entity(lease):
    try:
        return lease.info.entity if lease.info else None
    except Exception:
        return None


def _abandon(session: Session, lease, entity) -> None:
    try:
        lease.HttpNfcLeaseAbort()
    except Exception:
        pass
    if entity is not None:
        try:
            from vmcoreos.vsphere.waits import wait_task

            wait_task(session, entity.Destroy_Task(), timeout=120, what="removing the half-imported VM")
        except Exception:
            pass


def _wait_ready(session: Session, lease, timeout: float):
    deadline = time.monotonic() + timeout
    with Watch(session, [lease], ["state"], vim.HttpNfcLease) as watch:
        try:
            watch.until(lambda v: v[lease].get("state") in ("ready", "error"), deadline, "lease")
        except TimeoutError:
            raise VSphereError(f"vCenter did not get the import ready within {timeout:.0f}s") from None
        state = watch.values[lease].get("state")
    if state == "error":
        err = lease.error
        raise VSphereError(f"vCenter refused the import: {getattr(err, 'msg', None) or err}")
    return lease.info


def _device_url(info, item, session: Session) -> str:
    for dev in info.deviceUrl or []:
        if dev.importKey == item.deviceId:
            # vCenter may answer with host '*': it means "the host you are talking to".
            # Keep its port too (govc does; pyvmomi's sample drops it and breaks on non-443).
            parts = urlsplit(dev.url)
            if parts.hostname == "*":
                netloc = f"{session.conn.host}:{session.conn.port}"
                return parts._replace(netloc=netloc).geturl()
            return dev.url
    raise VSphereError(f"vCenter gave no upload URL for {item.path}")


def _upload(session: Session, archive: OvaArchive, item, url: str, counter: ByteCounter) -> None:
    stream, size = archive.open(item.path)
    check = archive.manifest_check(item.path)
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, context=session.ssl, timeout=UPLOAD_TIMEOUT, blocksize=CHUNK
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=UPLOAD_TIMEOUT, blocksize=CHUNK)
    tap = BackgroundTap(check) if check else None
    body = TeeReader(stream, [tap] if tap else [], counter.add)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Content-Type": "application/x-vnd.vmware-streamVmdk",
        "Content-Length": str(size),
        "Overwrite": "t",
    }
    sent_before = counter.done
    sent_all = False
    try:
        conn.request("PUT" if item.create else "POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 500:
            raise UploadInterrupted(f"uploading {item.path} failed: HTTP {resp.status} {resp.reason}")
        if resp.status not in (200, 201):
            raise VSphereError(f"uploading {item.path} failed: HTTP {resp.status} {resp.reason}")
        sent_all = True
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        sent = counter.done - sent_before
        raise UploadInterrupted(
            f"uploading {item.path} broke off after {sent} of {size} bytes ({reason(exc)})"
        ) from None
    finally:
        conn.close()
        stream.close()
        if tap is not None and not sent_all:
            tap.abort()
    if tap is not None:
        tap.finish()  # explicitly, after the last byte: a short read must not skip it

