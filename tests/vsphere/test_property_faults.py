"""A property vCenter answers with a fault (missingSet) is an error naming object, property and fault, never "no value"."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from tests.harness.services import Vcsim
from tests.vsphere.test_real_vcenter import session_on
from vmcoreos.vsphere.session import MissingProperty

pytestmark = pytest.mark.e2e


def test_a_property_the_user_may_not_read_is_a_typed_error(tmp_path):
    sim = Vcsim(tmp_path / "vcsim", strict=True, deny=("System.Read@DC0_C0_RP0_VM0",)).start()
    try:
        s = session_on(sim)
        try:
            with pytest.raises(MissingProperty) as raised:
                s.retrieve_all(s.content.rootFolder, vim.VirtualMachine, ["runtime.powerState"])
        finally:
            s.close()
    finally:
        sim.stop()
    err = raised.value
    assert err.path == "runtime.powerState" and isinstance(err.fault, vim.fault.NoPermission)
    assert "property 'runtime.powerState' of VirtualMachine vm-" in err.message
    assert "NoPermission (System.Read)" in err.message
