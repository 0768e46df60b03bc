"""What a datastore is charged for the bytes a run writes, counted as vSphere counts them.

Thin disks take what is written; a datastore without thin provisioning (perFileThinProvisioningSupported
false) gives every disk its whole capacity. vSAN reports raw free space while its storage policy writes
every byte more than once: the datastore's default policy is read through PBM (Storage Policy Based
Management, vCenter's /pbm endpoint) where it answers; otherwise the vSAN default (FTT=1, RAID-1: twice) is
assumed, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from http.cookies import SimpleCookie

from pyVmomi import pbm, vim, VmomiSupport
from pyVmomi.SoapAdapter import SoapStubAdapter

from vmcoreos.vsphere.session import Session, api_timeout

# vSAN's default storage policy: one failure to tolerate by mirroring, so two copies of every byte.
VSAN_DEFAULT = Fraction(2)


@dataclass(frozen=True)
class Room:
    free: int
    thin: bool  # disks can be thin here
    factor: Fraction  # datastore bytes per byte a VM writes
    note: str | None = None  # what was found or assumed about the datastore, for the run to say

    def charge(self, written: int) -> int:
        return -(-written * self.factor.numerator // self.factor.denominator)  # rounded up


def room(session: Session, datastore) -> Room:
    props = session.retrieve([datastore], ["summary.freeSpace", "summary.type",
                                           "capability.perFileThinProvisioningSupported"], vim.Datastore)[datastore]
    free = int(props.get("summary.freeSpace") or 0)
    thin = props.get("capability.perFileThinProvisioningSupported") is not False  # unset: as most datastores
    if str(props.get("summary.type", "")).lower() != "vsan":
        return Room(free, thin, Fraction(1))
    try:
        policy = _default_policy(session, datastore)
    except Exception as exc:  # PBM is an optional service: any failure means "not reachable"
        policy, why = None, f"PBM did not answer: {type(exc).__name__}"
    else:
        why = "PBM names no default storage policy for it"
    if policy is None:
        return Room(free, thin, VSAN_DEFAULT,
                    f"a vSAN datastore; {why}, so vmcoreos assumes vSAN's default (FTT=1, RAID-1) and counts every"
                    " byte twice; a policy with more copies needs more room than checked")
    name, factor, rule = policy
    return Room(free, thin, factor, f"a vSAN datastore whose default storage policy {name!r} ({rule}) writes"
                                    f" every byte x{factor_text(factor)}")


def factor_text(factor: Fraction) -> str:
    return str(factor.numerator) if factor.denominator == 1 else f"{float(factor):.2f}"


def replication(ftt: int, erasure: bool) -> tuple[Fraction, str]:
    """Bytes written per byte for a vSAN policy: RAID-1 keeps FTT+1 copies; RAID-5 (FTT=1) 4/3, RAID-6 (FTT=2) 3/2."""
    if erasure and ftt in (1, 2):
        return (Fraction(4, 3), "FTT=1, RAID-5") if ftt == 1 else (Fraction(3, 2), "FTT=2, RAID-6")
    return Fraction(ftt + 1), f"FTT={ftt}, RAID-1"


def _default_policy(session: Session, datastore) -> tuple[str, Fraction, str] | None:
    """(name, factor, rule) of the datastore's default storage policy, through PBM on the vCenter session."""
    stub = session.si._stub
    cookie = SimpleCookie(stub.cookie).get("vmware_soap_session")
    context = {"vcSessionCookie": cookie.value} if cookie is not None else {}
    pbm_stub = SoapStubAdapter(host=session.conn.host, port=session.conn.port, path="/pbm",  # as govmomi's pbm client
                               version=VmomiSupport.newestVersions.GetName("pbm"), sslContext=session.ssl,
                               requestContext=context, httpConnectionTimeout=api_timeout())
    pbm_stub.cookie = stub.cookie
    manager = pbm.ServiceInstance("ServiceInstance", pbm_stub).RetrieveContent().profileManager
    hub = pbm.placement.PlacementHub(hubType="Datastore", hubId=datastore._moId)
    profile_id = manager.QueryDefaultRequirementProfile(hub)
    if profile_id is None:
        return None
    (profile,) = manager.RetrieveContent([profile_id])
    values = {}
    for sub in getattr(profile.constraints, "subProfiles", None) or []:
        for capability in sub.capability or []:
            for constraint in capability.constraint or []:
                for prop in constraint.propertyInstance or []:
                    values[prop.id] = prop.value
    ftt = int(values.get("hostFailuresToTolerate", 1))
    erasure = "erasure" in str(values.get("replicaPreference", "")).lower()
    factor, rule = replication(ftt, erasure)
    return profile.name, factor, rule
