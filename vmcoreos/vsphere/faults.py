"""Faults vCenter answers that must not read as "no value" or a traceback: typed errors naming what and where.

PermissionDenied: a privilege vCenter refused on a call, one line naming the privilege and the object,
exit 2. The up-front check (vsphere/privileges.py) should leave nothing to refuse; this is for what it cannot
see (a permission changed mid-run, a privilege vCenter asks for that the list lacks). Raised by the
session's call wrapper for a NoPermission fault, and by the task waits for a task that failed with one.
"""

from __future__ import annotations

from pyVmomi import vim

from vmcoreos.errors import ConfigError, VSphereError

DOCS = "see docs/real-vcenter.md, \"Privileges\""


class PermissionDenied(ConfigError):
    """vCenter refused a call for a missing privilege (NoPermission)."""

    def __init__(self, message: str, privilege: str, obj):
        super().__init__(message)
        self.privilegeId = privilege  # as on the fault, so callers that read one read the other
        self.object = obj


def describe(session, obj) -> str:
    """'folder 'vm' (group-v3)': the object's kind, name and moref; only what can be learnt."""
    if obj is None:
        return "an object vCenter did not name"
    kind = type(obj).__name__.rsplit(".", 1)[-1]
    kind = {"VirtualMachine": "VM", "ClusterComputeResource": "cluster", "ResourcePool": "resource pool"}.get(kind, kind)
    name = None
    try:
        name = session.retrieve([obj], ["name"], vim.ManagedEntity).get(obj, {}).get("name")
    except Exception:  # the user may not even read it; the moref still names it
        pass
    moref = getattr(obj, "_moId", "?")
    return f"{kind[0].lower() + kind[1:] if kind != 'VM' else kind} {name!r} ({moref})" if name else f"{kind} {moref}"


def permission_denied(session, fault, doing: str) -> PermissionDenied:
    privilege = getattr(fault, "privilegeId", None) or "?"
    obj = getattr(fault, "object", None)
    user = getattr(getattr(session, "conn", None), "username", "this user")
    return PermissionDenied(
        f"{user!r} lacks the privilege {privilege} on {describe(session, obj)}, which {doing} needs; grant it in a"
        f" role on that object or deploy as a user who has it ({DOCS})",
        privilege, obj,
    )


class MissingProperty(VSphereError):
    """vCenter answered a property read with a fault for that property (missingSet), not a value.

    A per-property NoPermission read as "no value" would lead to wrong decisions (govmomi raises these too,
    vim25/mo/retrieve.go).
    """

    def __init__(self, obj, missing):
        fault = getattr(missing, "fault", None)
        fault = getattr(fault, "fault", fault)
        kind = type(fault).__name__.rsplit(".", 1)[-1] if fault is not None else "an unnamed fault"
        privilege = getattr(fault, "privilegeId", None)
        why = f"{kind} ({privilege})" if privilege else kind
        super().__init__(
            f"vCenter would not give property {missing.path!r} of {type(obj).__name__.rsplit('.', 1)[-1]}"
            f" {getattr(obj, '_moId', '?')}: {why}; check the user's role on that object"
        )
        self.obj, self.path, self.fault = obj, missing.path, fault


class ConnectionLost(VSphereError):
    """The connection dropped during a call that must not be resent blindly."""

    def __init__(self, method: str, reason: str):
        super().__init__(f"the connection to vCenter dropped during {method} ({reason})")
        self.method = method
