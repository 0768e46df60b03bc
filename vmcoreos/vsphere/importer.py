"""Importing a verified OVA as a template, streaming the disk straight out of the tar.

One upload per image version: nodes are clones of the template. The NFC
lease is kept alive by a ticker that reports the same byte counter the
upload advances (vsphere/lease.py); any failure aborts the lease and removes the half-made VM.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from typing import Callable
from urllib.parse import urlsplit

from pyVmomi import vim, vmodl

from vmcoreos import watchdog
from vmcoreos.errors import VmcoreosError, VSphereError
from vmcoreos.images.archive.ova import CheckedArchive
from vmcoreos.images.transfer.taps import CHUNK, BackgroundTap, TeeReader
from vmcoreos.vsphere.targets import Placement
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.tls import ThumbprintMismatch, ca_context, host_port, pinned_context, unverified_context
from vmcoreos.vsphere.vms import option_values
from vmcoreos.text import reason
from vmcoreos.vsphere import hostcert, lease as nfc
from vmcoreos.vsphere.lease import ByteCounter, LeaseKeepalive
from vmcoreos.vsphere.waits import TASK_STALL, Stall, Watch, until_stalled

# Seconds an upload may move no byte (wait.upload_stall): the ESXi host's socket is cut then, and the
# import starts over. Never a limit on the whole upload, which takes as long as the image is big.
UPLOAD_STALL = 300.0
# NFC uploads cannot resume: a broken one is aborted, cleaned up and started over, this many times in all.
IMPORT_ATTEMPTS = 3


class UploadInterrupted(VSphereError):
    """The disk upload broke off: worth one more import from the start."""


def import_spec(session: Session, archive: CheckedArchive, placement: Placement, name: str, extra: dict[str, str]):
    manager = session.content.ovfManager
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=name,
        diskProvisioning="thin",
        hostSystem=placement.host,
        networkMapping=[
            vim.OvfManager.NetworkMapping(name=n, network=placement.network) for n in archive.descriptor.networks
        ],
    )
    result = manager.CreateImportSpec(archive.descriptor.text, placement.resource_pool, placement.datastore, params)
    if result.error:
        raise VSphereError(f"vCenter cannot import {archive.name}: {result.error[0].localizedMessage or result.error[0].fault}")
    spec = result.importSpec
    config = spec.configSpec
    # The OVA declares guestinfo vApp properties with the com.vmware.guestInfo transport.
    # Left in place, vSphere would hand the guest an OVF environment, and coreos-cloudinit
    # then reads only that and ignores our extraConfig keys. We drop the vApp options.
    config.vAppConfig = None
    config.vAppConfigRemoved = True
    config.extraConfig = list(config.extraConfig or []) + option_values(extra)
    return spec, list(result.fileItem or [])


def import_ova(
    session: Session,
    archive: CheckedArchive,
    placement: Placement,
    name: str,
    extra: dict[str, str],
    *,
    on_bytes: Callable[[int, int], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    stall: float = TASK_STALL,
    upload_stall: float = UPLOAD_STALL,
    attempts: int = IMPORT_ATTEMPTS,
):
    """Import, retrying from the start after a broken or stalled upload; see _import_once.

    stall: seconds vCenter may spend getting the lease ready without a change
    (wait.task_stall); upload_stall: seconds the upload may move no byte.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _import_once(session, archive, placement, name, extra, on_bytes=on_bytes, stall=stall,
                                upload_stall=upload_stall)
        except UploadInterrupted as exc:
            if attempt == attempts:
                raise VSphereError(f"{exc.message}; gave up after {attempts} attempts") from None
            if on_retry:
                on_retry(f"{exc.message}; the half-imported VM was removed, starting over ({attempt + 1}/{attempts})")


def _import_once(
    session: Session,
    archive: CheckedArchive,
    placement: Placement,
    name: str,
    extra: dict[str, str],
    *,
    on_bytes: Callable[[int, int], None] | None = None,
    stall: float = TASK_STALL,
    upload_stall: float = UPLOAD_STALL,
):
    """Import and return the new VM (not yet a template). Nothing is left behind on failure."""
    archive.verify_descriptor_against_manifest()
    spec, items = import_spec(session, archive, placement, name, extra)
    try:
        # Without DRS vCenter needs the host here (InvalidArgument "host" otherwise).
        lease = placement.resource_pool.ImportVApp(spec, folder=placement.folder, host=placement.host)
    except vmodl.MethodFault as exc:
        raise VSphereError(f"vCenter refused to import {archive.name} as {name}: {exc.msg or type(exc).__name__}") from None
    entity = None
    try:
        info = _wait_ready(session, lease, name, stall)
        entity = info.entity
        with contextlib.ExitStack() as streams:
            # Each file is opened once: its size adds to the total, its stream is what goes up.
            opened = []
            for item in items:
                stream, size = archive.open(item.path)
                streams.callback(stream.close)
                opened.append((stream, size))
            counter = ByteCounter(sum(size for _, size in opened), on_bytes)
            with LeaseKeepalive(lease, counter):
                for item, (stream, size) in zip(items, opened):
                    url, pin = _device_url(info, item, session)
                    _upload(session, archive, item, stream, size, url, pin, counter, upload_stall)
        # What went up must be what was verified: the file unchanged, and for an image verified by the
        # upload's own read (images/verified_upload.py) every check's verdict, before the lease completes.
        archive.verify_uploaded()
        lease.HttpNfcLeaseProgress(100)
        lease.HttpNfcLeaseComplete()
        return entity
    except BaseException as exc:
        _abandon(session, lease, entity or _lease_entity(lease))
        if isinstance(exc, (VmcoreosError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, vmodl.MethodFault):
            raise VSphereError(f"importing {archive.name} failed: {exc.msg}") from None
        raise VSphereError(f"importing {archive.name} failed: {exc}") from None


def _lease_entity(lease):
    try:
        return lease.info.entity if lease.info else None
    except Exception:
        return None


def _abandon(session: Session, lease, entity) -> None:
    nfc.abort(lease)
    if entity is not None:
        try:
            from vmcoreos.vsphere.waits import wait_task

            wait_task(session, entity.Destroy_Task(), timeout=120, what="removing the half-imported VM")
        except Exception:
            pass


def _wait_ready(session: Session, lease, name: str, stall: float):
    """Until vCenter has created the VM and its disks; as long as it takes while initializeProgress moves."""
    props = ["state", "initializeProgress"]
    with Watch(session, [lease], props, vim.HttpNfcLease) as watch:
        try:
            until_stalled(watch, lambda v: v[lease].get("state") in ("ready", "error"),
                          lambda v: tuple(v[lease].get(p) for p in props), Stall(stall), "lease")
        except TimeoutError:
            at = watch.values[lease].get("initializeProgress")
            raise VSphereError(
                f"vCenter made no progress getting the import of {name} ready for {stall:g}s"
                f" (lease {watch.values[lease].get('state') or 'not reported'}{f' at {at}%' if at else ''});"
                " look at the import task in vCenter, or raise wait.task_stall in the cluster file if it is only slow"
            ) from None
        state = watch.values[lease].get("state")
    if state == "error":
        err = lease.error
        raise VSphereError(f"vCenter refused the import: {getattr(err, 'msg', None) or err}")
    return lease.info


def _device_url(info, item, session: Session) -> tuple[str, str | None]:
    """The upload URL for item and the SHA-1 thumbprint vCenter gave for its host (None if it gave none)."""
    for dev in info.deviceUrl or []:
        if dev.importKey == item.deviceId:
            # vCenter may answer with host '*': it means "the host you are talking to".
            # Keep its port too (govc does; pyvmomi's sample drops it and breaks on non-443).
            parts = urlsplit(dev.url)
            if parts.hostname == "*":
                netloc = host_port(session.conn.host, session.conn.port)
                return parts._replace(netloc=netloc).geturl(), None
            return dev.url, dev.sslThumbprint or None
    raise VSphereError(f"vCenter gave no upload URL for {item.path}")


def _open_host(session: Session, parts, pin: str | None, stall: float) -> http.client.HTTPConnection:
    """A connection to the ESXi host an NFC URL names, trusted as govc does.

    The host has its own certificate, not vCenter's: it is verified with the CA
    (--ca-file, else the system's) when that validates it, otherwise pinned to the
    thumbprint the lease carries, which came over the verified vCenter session.
    --insecure skips both; the --thumbprint pin is vCenter's and never applies here.
    Its socket timeout is the stall limit: no send or receive may wait longer.
    """
    host, port = parts.hostname, parts.port
    if parts.scheme != "https":
        conn = http.client.HTTPConnection(host, port or 80, timeout=stall, blocksize=CHUNK)
        _connect_host(conn, host)
        return conn
    where = host_port(host, port or 443)
    first = unverified_context() if session.conn.insecure else ca_context(session.conn)
    try:
        return _connect_host(_https(host, port, first, stall), where)
    except ssl.SSLCertVerificationError as exc:
        if not hostcert.may_pin(exc.verify_code):
            # govc's rule: the thumbprint stands in for an unknown issuer or another name, never an expiry.
            raise VSphereError(
                f"ESXi host {where}'s TLS certificate is refused ({exc.verify_message}), which no thumbprint"
                " excuses; renew or fix the host's certificate in vCenter (Certificates > Renew)"
            ) from None
        if not pin:
            raise VSphereError(
                f"ESXi host {where}'s TLS certificate is not trusted ({exc.verify_message}) and vCenter gave no"
                " thumbprint for it; add the hosts' CA (VMCA) to --ca-file, or use --insecure in a lab"
            ) from None
    try:
        conn = _connect_host(_https(host, port, pinned_context(pin, "the lease's sslThumbprint"), stall), where)
    except ThumbprintMismatch:
        raise VSphereError(
            f"ESXi host {where}'s TLS certificate is not the one vCenter vouches for (its lease thumbprint);"
            " something between here and the host answered in its place"
        ) from None
    why = hostcert.outside_validity(conn.sock.getpeercert(binary_form=True))
    if why:
        conn.close()
        raise VSphereError(f"ESXi host {where}'s TLS certificate is refused ({why}), even pinned by the lease's"
                           " thumbprint; renew the host's certificate in vCenter (Certificates > Renew)")
    return conn


def _https(host: str, port: int | None, context: ssl.SSLContext, stall: float) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(host, port or 443, context=context, timeout=stall, blocksize=CHUNK)


def _connect_host(conn, where: str):
    """conn connected; a host that cannot be resolved or spoken TLS with is one final error, not a retry."""
    try:
        conn.connect()
        return conn
    except (ssl.SSLCertVerificationError, ThumbprintMismatch):
        conn.close()
        raise
    except socket.gaierror as exc:
        conn.close()
        raise VSphereError(
            f"cannot resolve ESXi host {where}, where vCenter sends the upload ({reason(exc)});"
            " make the hosts' names resolvable from this machine (DNS or /etc/hosts)"
        ) from None
    except ssl.SSLError as exc:
        conn.close()
        raise VSphereError(f"TLS with ESXi host {where} failed ({reason(exc)}); check the host's certificate setup") from None
    except OSError as exc:
        conn.close()
        raise UploadInterrupted(f"cannot connect to ESXi host {where} for the upload ({reason(exc)})") from None


def _upload(
    session: Session, archive: CheckedArchive, item, stream, size: int, url: str, pin: str | None, counter: ByteCounter,
    stall: float = UPLOAD_STALL,
) -> None:
    check = archive.manifest_check(item.path)
    parts = urlsplit(url)
    conn = _open_host(session, parts, pin, stall)
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
        # Its answer within `stall` of wall clock, however the host paces it (watchdog.py cuts the read).
        with watchdog.deadline(stall, "the upload's answer") as phase:
            watchdog.watch(conn)
            try:
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                if phase.expired:
                    raise TimeoutError from None
                raise
            if phase.expired:
                raise TimeoutError
        if resp.status >= 500:
            raise UploadInterrupted(f"uploading {item.path} failed: HTTP {resp.status} {resp.reason}")
        if resp.status not in (200, 201):
            raise VSphereError(f"uploading {item.path} failed: HTTP {resp.status} {resp.reason}")
        sent_all = True
    except TimeoutError:  # socket.timeout: the host took nothing (or said nothing) for `stall` seconds
        sent = counter.done - sent_before
        raise UploadInterrupted(
            f"uploading {item.path} to ESXi host {host_port(conn.host, conn.port)} moved no bytes for"
            f" {stall:g}s (stalled after {sent} of {size} bytes; wait.upload_stall)"
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        sent = counter.done - sent_before
        raise UploadInterrupted(
            f"uploading {item.path} broke off after {sent} of {size} bytes ({reason(exc)})"
        ) from None
    finally:
        conn.close()
        if tap is not None and not sent_all:
            tap.abort()
    if tap is not None:
        tap.finish()  # explicitly, after the last byte: a short read must not skip it

