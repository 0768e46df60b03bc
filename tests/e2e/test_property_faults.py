"""A property vCenter answers with a fault (missingSet) is an error naming object, property and fault, never "no value"."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from tests.e2e.direct import session_on
from tests.harness.services import Vcsim
from vmcoreos.vsphere.faults import MissingProperty

pytestmark = pytest.mark.e2e


def test_a_property_a_wait_may_not_read_is_a_typed_error(tmp_path):
    import time

    from vmcoreos.vsphere.waits import Watch

    sim = Vcsim(tmp_path / "vcsim", strict=True, deny=("System.Read@DC0_C0_RP0_VM0",)).start()
    try:
        s = session_on(sim)
        try:
            vm = s.content.searchIndex.FindByInventoryPath("DC0/vm/DC0_C0_RP0_VM0")
            with pytest.raises(MissingProperty) as raised:
                with Watch(s, [vm], ["runtime.powerState"], vim.VirtualMachine) as watch:
                    watch.until(lambda values: False, time.monotonic() + 5, "the test's wait")
        finally:
            s.close()
    finally:
        sim.stop()
    assert raised.value.path == "runtime.powerState" and "NoPermission (System.Read)" in raised.value.message


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


def test_a_property_read_after_the_session_expired_logs_in_again(tmp_path):
    import time

    # The strict bed refuses RetrievePropertiesEx without a session (NotAuthenticated), as vCenter does;
    # the plain simulator would answer it and the re-login would never be needed.
    sim = Vcsim(tmp_path / "vcsim", strict=True, session_idle=1).start()
    try:
        s = session_on(sim)
        try:
            root = s.content.rootFolder
            assert s.retrieve([root], ["name"], vim.Folder)[root]["name"]
            before = s.generation
            time.sleep(2.5)
            assert s.retrieve([root], ["name"], vim.Folder)[root]["name"]
            assert s.generation == before + 1
        finally:
            s.close()
    finally:
        sim.stop()
