package simulator

// vmcoreos: a role that lacks privileges, enforced as vCenter enforces it.
// -deny-privilege names privilege IDs the one user lacks everywhere ("Priv.Id")
// or on the entities of one name only ("Priv.Id@name", e.g. a template):
// HasPrivilegeOnEntities answers "not granted" for them (deny-privilege.patch)
// and every call this file guards faults with NoPermission naming the
// privilege and the object (strict-simulator-authz.patch calls strictAuthorize),
// as the vSphere API reference's "Required privileges" for each method say.

import (
	"strings"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// privilegeDenied: whether the user lacks id on ref.
func privilegeDenied(ref types.ManagedObjectReference, id string) bool {
	if DeniedPrivileges[id] {
		return true
	}
	if e, ok := Map.Get(ref).(mo.Entity); ok {
		return DeniedPrivileges[id+"@"+e.Entity().Name]
	}
	return false
}

type needed struct {
	ref *types.ManagedObjectReference
	id  string
}

// configNeeds: what a ConfigSpec (reconfigure or a clone's) asks of the object it applies on.
func configNeeds(on *types.ManagedObjectReference, spec *types.VirtualMachineConfigSpec) []needed {
	if spec == nil {
		return nil
	}
	var n []needed
	if spec.Name != "" {
		n = append(n, needed{on, "VirtualMachine.Config.Rename"})
	}
	if spec.NumCPUs != 0 {
		n = append(n, needed{on, "VirtualMachine.Config.CPUCount"})
	}
	if spec.MemoryMB != 0 {
		n = append(n, needed{on, "VirtualMachine.Config.Memory"})
	}
	if len(spec.ExtraConfig) > 0 {
		n = append(n, needed{on, "VirtualMachine.Config.AdvancedConfig"})
	}
	if len(spec.DeviceChange) > 0 {
		n = append(n, needed{on, "VirtualMachine.Config.EditDevice"}) // e.g. a NIC's MAC
	}
	return n
}

// privilegesFor: the privileges a call needs, on which objects (nil: the call's own object).
func privilegesFor(this types.ManagedObjectReference, body interface{}) []needed {
	self := &this
	switch req := body.(type) {
	case *types.ImportVApp:
		return []needed{{self, "VApp.Import"}, {req.Folder, "VApp.Import"}}
	case *types.CloneVM_Task:
		n := []needed{{&req.Folder, "VirtualMachine.Inventory.CreateFromExisting"}}
		if vm, ok := Map.Get(this).(*VirtualMachine); ok && vm.Config != nil && vm.Config.Template {
			n = append(n, needed{self, "VirtualMachine.Provisioning.DeployTemplate"})
		} else {
			n = append(n, needed{self, "VirtualMachine.Provisioning.Clone"})
		}
		loc := req.Spec.Location
		n = append(n, needed{loc.Pool, "Resource.AssignVMToPool"}, needed{loc.Datastore, "Datastore.AllocateSpace"})
		// The new VM does not exist yet: what its spec sets is checked on the folder it goes to.
		n = append(n, configNeeds(&req.Folder, req.Spec.Config)...)
		if req.Spec.PowerOn {
			n = append(n, needed{&req.Folder, "VirtualMachine.Interact.PowerOn"})
		}
		return n
	case *types.CreateVM_Task:
		return []needed{{self, "VirtualMachine.Inventory.Create"}, {&req.Pool, "Resource.AssignVMToPool"}}
	case *types.MarkAsTemplate:
		return []needed{{self, "VirtualMachine.Provisioning.MarkAsTemplate"}}
	case *types.MarkAsVirtualMachine:
		return []needed{{self, "VirtualMachine.Provisioning.MarkAsVM"}, {&req.Pool, "Resource.AssignVMToPool"}}
	case *types.ReconfigVM_Task:
		return configNeeds(self, &req.Spec)
	case *types.Rename_Task:
		if this.Type == "VirtualMachine" {
			return []needed{{self, "VirtualMachine.Config.Rename"}}
		}
	case *types.PowerOnVM_Task:
		return []needed{{self, "VirtualMachine.Interact.PowerOn"}}
	case *types.PowerOffVM_Task:
		return []needed{{self, "VirtualMachine.Interact.PowerOff"}}
	case *types.Destroy_Task:
		switch this.Type {
		case "VirtualMachine":
			return []needed{{self, "VirtualMachine.Inventory.Delete"}}
		case "Folder":
			return []needed{{self, "Folder.Delete"}}
		}
	case *types.CreateFolder:
		return []needed{{self, "Folder.Create"}}
	case *types.CreateSnapshot_Task:
		return []needed{{self, "VirtualMachine.State.CreateSnapshot"}}
	case *types.SetField:
		return []needed{{&req.Entity, "Global.SetCustomField"}}
	case *types.ReconfigureComputeResource_Task:
		return []needed{{self, "Host.Inventory.ModifyCluster"}}
	}
	return nil
}

// strictAuthorize: NoPermission for the first privilege the call needs and the user lacks.
func strictAuthorize(method *Method) types.BaseMethodFault {
	if len(DeniedPrivileges) == 0 {
		return nil
	}
	for _, n := range privilegesFor(method.This, method.Body) {
		if n.ref != nil && privilegeDenied(*n.ref, n.id) {
			return &types.NoPermission{Object: *n.ref, PrivilegeId: n.id}
		}
	}
	return nil
}

// strictNeedsSession: vCenter answers RetrieveProperties(Ex) only within a
// session (the simulator answers them without one).
func strictNeedsSession(ctx *Context, method *Method) types.BaseMethodFault {
	if !Strict.Enabled || ctx.Session != nil {
		return nil
	}
	switch method.Name {
	case "RetrieveProperties", "RetrievePropertiesEx", "ContinueRetrievePropertiesEx":
		return &types.NotAuthenticated{NoPermission: types.NoPermission{Object: method.This, PrivilegeId: "System.View"}}
	}
	return nil
}

// SetDeniedPrivileges fills DeniedPrivileges from -deny-privilege's comma-separated list.
func SetDeniedPrivileges(list string) {
	for _, id := range strings.Split(list, ",") {
		if id = strings.TrimSpace(id); id != "" {
			DeniedPrivileges[id] = true
		}
	}
}

// strictReadDenied: a property of an object the user may not read (System.Read
// denied on it) comes back in missingSet with NoPermission, as vCenter's
// PropertyCollector answers, not as a value.
func strictReadDenied(name string, obj types.ManagedObjectReference) *types.MissingProperty {
	if len(DeniedPrivileges) == 0 || !privilegeDenied(obj, "System.Read") {
		return nil
	}
	return &types.MissingProperty{Path: name, Fault: types.LocalizedMethodFault{
		Fault: &types.NoPermission{Object: obj, PrivilegeId: "System.Read"}, LocalizedMessage: "Permission to perform this operation was denied."}}
}
